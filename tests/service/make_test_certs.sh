#!/usr/bin/env bash
# Writes the certificates the TLS tests use into DIR (fresh each run, valid for a day):
#   ca.pem/ca.key            the test CA
#   server.pem/server.key    CN=localhost, SAN DNS:localhost, IP:127.0.0.1, signed by the CA
#   acme.pem/acme.key        client, CN=acme-service, signed by the CA
#   bob.pem/bob.key          client, CN=bob-service, signed by the CA
#   rogue.pem/rogue.key      client, CN=acme-service, signed by another CA
#   other.key                a key that belongs to no certificate here
set -euo pipefail
dir=${1:?usage: make_test_certs.sh DIR}
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }
ca() {  # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 1 -subj "$2" 2>/dev/null
}
leaf() {  # name subject ca [extensions]
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  if [[ -n ${4:-} ]]; then printf '%s\n' "$4" > "$1.ext"; else : > "$1.ext"; fi
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" \
    -days 1 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "/CN=prefixd test CA"
ca rogue_ca "/CN=someone else's CA"
leaf server "/CN=localhost" ca "subjectAltName=DNS:localhost,IP:127.0.0.1"
leaf acme "/CN=acme-service" ca
leaf bob "/CN=bob-service" ca
leaf rogue "/CN=acme-service" rogue_ca
key other.key

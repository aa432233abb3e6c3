#!/usr/bin/env bash
# Installs the Debian packages prefixd needs to build, test and run — and only those
# that are missing. Idempotent: runs `apt-get update` only when something must be installed.
# Nothing is downloaded from anywhere but Debian's package archive.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git
  # libraries (see README "Dependencies")
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libxxhash-dev nlohmann-json3-dev libopenblas-dev
  libcpp-httplib-dev libpcre2-dev libssl-dev
  libboost-dev  # Boost.Beast/Asio: the OpenAI-compatible HTTP API (service/async_http.cc)
  libspdlog-dev  # the request log (service/request_log.cc)
  libzmq3-dev cppzmq-dev libmsgpack-cxx-dev  # KV events in vLLM's wire format (service/kv_events.cc)
  haproxy curl  # prefix-affine routing over replicas (deploy/haproxy.cfg, deploy/cluster.sh)
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev  # libFuzzer targets and sanitizer runtime
  python3 python3-grpcio python3-protobuf python3-xxhash  # example Python client and its test
  python3-zmq python3-msgpack  # the KV events test decodes them independently of the server
  python3-jinja2  # the Jinja differential test (tests/tokenizer/jinja_differential_test.py)
  prometheus chromium  # metrics and dashboard tests (a real scraper and a headless browser)
  openssl  # the TLS tests make their certificates at test time
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#PACKAGES[@]} Debian packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "setup: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"

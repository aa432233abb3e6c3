#!/usr/bin/env bash
# The run command: installs missing Debian packages, builds prefixd and its clients, and
# starts the server on the embedded test model (no download). Flags are passed to prefixd:
#
#   scripts/run.sh                                  # 127.0.0.1:50051, the test model
#   scripts/run.sh --model=random:llama-3.2-1b      # real shapes, random weights
#   scripts/run.sh --help                           # every flag, explained
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target prefixd prefixctl prefix-bench prefixd_python_client
exec build/service/prefixd "$@"

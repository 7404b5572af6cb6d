#!/usr/bin/env bash
# The whole test suite: unit tests, the storage conformance suite and the HTTP/CLI integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# What ACME adds to a deploy: `mse deploy` to `running` with a certificate
# from a real ACME CA (Debian's Pebble, as in the tests) against the same
# deploy with `--no-acme`, alternating in one run (release build).
#
# Usage: ./scripts/bench-acme.sh [DEPLOYS]   (default 10; needs pebble,
# installed by ./scripts/test.sh). Exit code 2 when it cannot run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v pebble >/dev/null || { echo "pebble is not installed (apt-get install pebble)" >&2; exit 2; }
export MSE_CACHE_DIR="${MSE_CACHE_DIR:-$root/target/test-cache}"
cargo build --quiet --release -p mse-cli -p mse-server -p mse-run || exit 2
cargo run --quiet --release -p mse-cli --example bench_acme -- "${1:-10}"

#!/usr/bin/env bash
# Latency of the control plane's GET /apps with 10,000 apps in the (SQLite)
# store, over HTTP on loopback (release build). Arguments: [APPS [REQUESTS]].
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release -p mse-server --example bench_api -- "$@"

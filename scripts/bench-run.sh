#!/usr/bin/env bash
# Load benchmark of the node runtime: requests/s and p50/p99 latency of
# `GET /` on the scaffolded Flask app served through `mse-run` (RA-TLS mode)
# against the same app served directly by the same hypercorn over TLS, with
# the same client, alternating sides (release build). Targets: mse-run keeps
# >= 90% of the direct throughput, and its p99 is <= 1.2x the direct one.
#
# Arguments go to the benchmark (crates/mse-run/examples/load.rs); see
# `./scripts/bench-run.sh --help`. Exit code 1: a target was missed; 2: the
# benchmark could not run, or a request failed.
# Needs Python 3 (with venv) and Rust; the first run builds the runtime's
# Python environment (Flask, hypercorn from PyPI) under target/test-cache.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

echo "==> building mse-run and its load benchmark (release)" >&2
cargo build --quiet --release -p mse-run --bins --examples
exec "$target/release/examples/load" --mse-run "$target/release/mse-run" "$@"

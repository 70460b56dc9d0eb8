#!/usr/bin/env bash
# What the app sandbox costs at start: `mse-run`'s confinement (Landlock
# ruleset, identity, restrict before exec) around `/bin/true` and around a
# Python that imports Flask and hypercorn, against the same commands
# unconfined, alternating, in one run. Release build; the runtime
# environment of the default image must be built (any test run or
# `mse test` does it).
#
# Usage: ./scripts/bench-sandbox.sh [ROUNDS]   (default 20)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache="${MSE_CACHE_DIR:-$root/target/test-cache}"
python="$(ls -d "$cache"/envs/*/venv/bin/python 2>/dev/null | head -n 1 || true)"
if [ -z "$python" ]; then
    echo "no runtime environment under $cache/envs: run the tests or \`mse test\` once" >&2
    exit 2
fi
cargo build --quiet --release -p mse-run --example sandbox_cost || exit 2
exec "${CARGO_TARGET_DIR:-$root/target}/release/examples/sandbox_cost" "$python" "${1:-20}"

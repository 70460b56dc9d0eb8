#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, then every test of the
# workspace. Needs only the Rust toolchain and Python 3; the tests build the
# shared Python environment they need under target/test-python on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final
else
    cargo test --workspace --no-fail-fast
fi

#!/usr/bin/env bash
# Verification latency per TEE on real public evidence (an SGX quote, TDX
# quotes v4 and v5, an SEV-SNP report), against dcap-qvl's verifier alone
# (SGX, TDX) and the sev crate's chain checks alone (SEV-SNP), in the same
# run. Release build; collateral in memory (cached, or offline). Also the
# MRENCLAVE replay of Gramine-like SGX enclaves of 1 and 4 GiB, made once
# per app and kept by the client.
#
# Usage: ./scripts/bench-verify.sh [ROUNDS]   (default 200)
# Target: every median under 10 ms. Exit code 1 when missed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p mse-attest --example bench_verify -- "${1:-200}"

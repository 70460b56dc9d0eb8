#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, then every test of the
# workspace. Needs only the Rust toolchain and Python 3; the tests build the
# shared Python environment they need under target/test-python on first use;
# PostgreSQL, the resolver module that makes `*.localhost` names resolve,
# iproute2, and the ACME CA and browser of the end-to-end tests are installed
# from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The store's PostgreSQL tests start a throwaway server from the Debian
# package; install it when it is missing and this machine allows it.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing PostgreSQL (for the store tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
    else
        echo "warning: PostgreSQL is not installed; the PostgreSQL store test will fail (apt-get install postgresql)" >&2
    fi
fi

# The URLs of local apps are `*.localhost` names: make every program of this
# machine resolve them, as the tests' Python clients do.
./scripts/localhost-names.sh

# The multi-host tests make hosts of network namespaces with iproute2's `ip`
# (as root).
if ! command -v ip >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing iproute2 (for the multi-host tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
    else
        echo "warning: iproute2 is not installed; the multi-host tests will fail (apt-get install iproute2, as root)" >&2
    fi
fi

# The end-to-end tests obtain certificates from a real ACME CA (Pebble) and
# open the apps in a real browser (headless Chromium, whose trust store is
# made with NSS's certutil). Under CI they fail rather than skip without them.
missing=()
command -v pebble >/dev/null || missing+=(pebble)
command -v chromium >/dev/null || missing+=(chromium)
command -v certutil >/dev/null || missing+=(libnss3-tools)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "==> installing ${missing[*]} (for the end-to-end tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
    else
        echo "warning: ${missing[*]} not installed; the end-to-end tests will skip, or fail under CI (apt-get install ${missing[*]}, as root)" >&2
    fi
fi

echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast --failure-output final
    # nextest does not run doctests (the examples in the crates' docs).
    echo "==> doctests"
    cargo test --workspace --doc --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

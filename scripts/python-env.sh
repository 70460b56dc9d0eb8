#!/usr/bin/env bash
# Prints the path of the project's shared Python interpreter, building the
# virtual environment first if tests/python-requirements.txt changed. The
# same environment (target/test-python/venv) serves the tests, the quick start
# and the benchmarks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
base="${CARGO_TARGET_DIR:-$root/target}/test-python"
venv="$base/venv"
requirements="$root/tests/python-requirements.txt"
mkdir -p "$base"
exec 9>"$base/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$base/requirements.stamp"; then
    rm -f "$base/requirements.stamp"
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$base/requirements.stamp"
fi
echo "$venv/bin/python"

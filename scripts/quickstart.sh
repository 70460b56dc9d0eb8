#!/usr/bin/env bash
# The main job, end to end on this machine: build the `mse` client, scaffold
# an app, check its configuration, and run the app's own tests against it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -t 1 ]; then
    step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
    step() { printf '\n==> %s\n' "$*"; }
fi

step "Building the mse client"
cargo build --quiet -p mse-cli
mse="$root/target/debug/mse"
"$mse" --version

work="$(mktemp -d "${TMPDIR:-/tmp}/mse-quickstart.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export MSE_CONF_PATH="$work/conf"
cd "$work"

step "mse scaffold helloworld"
"$mse" scaffold helloworld
cd helloworld

step "mse validate"
"$mse" validate

step "Python environment for the app (Flask + pytest)"
venv="$root/target/quickstart-venv"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$root/tests/python-requirements.txt" "$venv/requirements.txt"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/tests/python-requirements.txt"
    cp "$root/tests/python-requirements.txt" "$venv/requirements.txt"
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("flask", m.version("flask"), "/ pytest", m.version("pytest"))'

step "pytest tests (the scaffolded app's own tests)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests

step "Done"
echo "The app in $work/helloworld was scaffolded, validated and tested; it is removed on exit."

#!/usr/bin/env bash
# The main job, end to end on this machine: build the `mse` client, scaffold
# an app, check its configuration, encrypt its code, and run its own tests.
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

step "mse package --output build (encrypt the code into a deterministic code.tar)"
"$mse" package --output build
ls -l build

step "Python environment for the app (Flask + pytest)"
python="$("$root/scripts/python-env.sh")"
"$python" -c 'import importlib.metadata as m; print("flask", m.version("flask"), "/ pytest", m.version("pytest"))'

step "pytest tests (the scaffolded app's own tests)"
"$python" -m pytest -q -p no:cacheprovider tests

step "Done"
echo "The app in $work/helloworld was scaffolded, validated, packaged and tested; it is removed on exit."

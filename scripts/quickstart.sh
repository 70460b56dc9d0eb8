#!/usr/bin/env bash
# The main job, end to end on this machine: build the `mse` client, scaffold
# an app, check its configuration, encrypt its code, run its own tests, then
# serve it with `mse test` and run the same tests against it over HTTP.
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

step "mse test (the app served locally by its image's runtime environment)"
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$mse" test --port "$port" &
server=$!
for _ in $(seq 1 300); do
    if curl -sf "http://localhost:$port/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then echo "mse test stopped early" >&2; exit 1; fi
    sleep 1
done
echo "GET /health -> $(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$port/health")"
echo "GET /       -> $(curl -s "http://localhost:$port/")"
MSE_APP_URL="http://localhost:$port" "$python" -m pytest -q -p no:cacheprovider tests
kill -INT "$server"
wait "$server"

step "Done"
echo "The app in $work/helloworld was scaffolded, validated, packaged, tested and served; it is removed on exit."

#!/usr/bin/env bash
# The main job, end to end on this machine: build the platform and the `mse`
# client, start a local platform in a temporary data folder, log in, scaffold
# the helloworld app, deploy it with full verification (remote attestation in
# the simulation TEE, accepted explicitly), call it over TLS with the verified
# certificate, verify it again as an app user would, show `mse status` and
# `mse list`, then stop the app and the platform.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ -t 1 ]; then
    step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
    note() { printf '\033[33m%s\033[0m\n' "$*"; }
else
    step() { printf '\n==> %s\n' "$*"; }
    note() { printf '%s\n' "$*"; }
fi

step "Building the platform (mse-server, mse-run) and the client (mse)"
cargo build --quiet -p mse-cli -p mse-server -p mse-run
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
mse="$bin/mse"
"$mse" --version

step "Making *.localhost names resolve on this machine (for clients other than curl and browsers)"
./scripts/localhost-names.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/mse-quickstart.XXXXXX")"
server=""
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
export MSE_CONF_PATH="$work/conf"
# Runtime environments (Flask, hypercorn) are built once and reused, by the
# platform and by `mse test` alike; uv (from the project's shared Python
# environment) builds them.
export MSE_CACHE_DIR="${MSE_CACHE_DIR:-$HOME/.cache/mse}"
step "Preparing the shared Python environment (uv, for the runtime environments)"
python="$("$root/scripts/python-env.sh")"
MSE_UV="$(dirname "$python")/uv"
export MSE_UV
"$MSE_UV" --version

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
api_port="$(free_port)"
proxy_port="$(free_port)"

# Apps get a uid, a mount namespace and limits of their own only from a
# platform running as root; as another user, say so and opt out explicitly.
sandbox=required
if [ "$(id -u)" != 0 ]; then
    sandbox=best-effort
    echo "note: not root, so apps run as your user, without a uid, a private /tmp or limits of their own (--sandbox best-effort); run as root for the full sandbox" >&2
fi
step "Starting a local platform: mse-server --data-dir $work/data --sandbox $sandbox"
"$bin/mse-server" --data-dir "$work/data" \
    --listen-api "127.0.0.1:$api_port" --listen-proxy "127.0.0.1:$proxy_port" \
    --quote-provider simulation --sandbox "$sandbox" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    if grep -q '^proxy listening' "$work/server.log" 2>/dev/null; then break; fi
    if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log" >&2; echo "mse-server stopped early" >&2; exit 1; fi
    sleep 0.1
done
grep -v '^admin token' "$work/server.log"
note "This machine has no SGX hardware: the platform's nodes run in the SIMULATION TEE. Their quotes"
note "are signed by the platform's own simulation CA, so attestation checks everything (MRSIGNER, the"
note "fingerprint of your code, the binding to the TLS key) except that a real enclave protects the app."

step "mse login --allow-simulation (the admin token was printed once by the platform)"
"$mse" login --url "http://127.0.0.1:$api_port" --token - --allow-simulation <"$work/data/admin.token"

step "mse scaffold helloworld"
cd "$work"
"$mse" scaffold helloworld
cd helloworld

step "mse deploy (check, encrypt, upload, verify the node, send it the key, wait until it runs)"
"$mse" deploy
uuid="$("$mse" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uuid"])')"
url="https://$uuid.localhost:$proxy_port"
cert="$MSE_CONF_PATH/context/$uuid/cert.pem"

step "curl --cacert <the verified RA-TLS certificate> $url/health"
curl -sS --fail --cacert "$cert" -o /dev/null -w 'GET /health -> %{http_code}\n' "$url/health"
curl -sS --fail --cacert "$cert" -w '\n' "$url/"

step "An app user verifies the app: the exported context, the plaintext code and mse verify"
"$mse" context --export "$uuid" --output "$work/helloworld.mse"
# The platform publishes its signer key, simulation CA and the node hosts'
# revoked quote keys to anyone.
curl -sS --fail -o "$work/signer.pub" "http://127.0.0.1:$api_port/signer"
curl -sS --fail -o "$work/simulation-ca.pem" "http://127.0.0.1:$api_port/simulation-ca"
curl -sS --fail -o "$work/simulation-revoked.json" "http://127.0.0.1:$api_port/simulation-revoked"
MSE_CONF_PATH="$work/app-user" "$mse" verify "${url#https://}" \
    --context "$work/helloworld.mse" --code mse_src \
    --signer-key "$work/signer.pub" --simulation-ca "$work/simulation-ca.pem" \
    --simulation-revoked "$work/simulation-revoked.json" \
    --allow-simulation --output "$work/app-user-cert.pem"

step "mse status $uuid"
"$mse" status "$uuid"

step "mse list"
"$mse" list
echo "(the same apps in the web console: http://127.0.0.1:$api_port/console/, signed in with the token of mse login)"

step "mse stop $uuid"
"$mse" stop "$uuid"

step "Stopping the platform"
kill -TERM "$server"
wait "$server" || true
server=""
tail -n 2 "$work/server.log"

step "Done"
echo "A local platform ran helloworld in a verified (simulated) enclave; its data folder $work is removed on exit."

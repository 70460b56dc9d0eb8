#!/usr/bin/env bash
# Node hosts on other machines, measured on one machine with network
# namespaces: hosts `api` (198.18.0.1), `h1` (.2) and `h2` (.3), each with a
# veth link to a bridge in a switch namespace of its own (addresses from
# 198.18.0.0/24, the benchmarking range, only inside the namespaces this
# script creates and removes at exit). Release build, simulation quotes.
#
# 1. `mse deploy` to `running` (the deploy exits once the app runs and is
#    verified), after a warm-up, on the all-in-one local runner (root
#    namespace, loopback) and on a platform whose API and proxy are on host
#    `api` and whose only node is host `h1`, joined with a token, the two
#    in turn; each app is stopped once measured. Median and p90 of each,
#    and their difference.
# 2. The second platform with a second host `h2`: APPS apps under names of
#    their own, one after the other; the wall time until all run, the apps
#    on each host (`GET /nodes`), the RSS of each app's process tree (its
#    `mse-run` and every descendant) per app, and the hosts' own RSS.
#
# Usage (as root, with iproute2): ./scripts/bench-hosts.sh [DEPLOYS [APPS]]
# (default 10 and 50). Target: the remote median at most 50 ms above the
# local one. Exit code 1 when the target is missed, 2 when the benchmark
# cannot run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
deploys="${1:-10}"
apps="${2:-50}"
helper="$root/scripts/bench-hosts.py"

if [ "$(id -u)" != 0 ]; then echo "bench-hosts: needs root (network namespaces)" >&2; exit 2; fi
command -v ip >/dev/null || { echo "bench-hosts: needs iproute2 (ip)" >&2; exit 2; }
command -v curl >/dev/null || { echo "bench-hosts: needs curl" >&2; exit 2; }

echo "==> building mse, mse-server and mse-run (release)" >&2
cargo build --quiet --release -p mse-cli -p mse-server -p mse-run || exit 2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mse="$bin/mse"

work="$(mktemp -d "${TMPDIR:-/tmp}/mse-bench-hosts.XXXXXX")"
prefix="msebh$$"
switch="${prefix}sw"
tag=$(($$ % 100000))
namespaces=()
pids=()
# Stops the processes this script started, one after the other (SIGTERM;
# SIGKILL after 30 s: a platform gives its nodes 20 s), then removes the
# namespaces.
cleanup() {
    local i pid deadline
    # The newest first: the hosts stop their apps while the API still
    # answers them.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid="${pids[$i]}"
        kill -TERM "$pid" 2>/dev/null || continue
        deadline=$((SECONDS + 30))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    ip netns del "$switch" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
export MSE_CACHE_DIR="${MSE_CACHE_DIR:-$root/target/test-cache}"
MSE_UV="$(dirname "$("$root/scripts/python-env.sh")")/uv"
export MSE_UV

# The network: a bridge in the switch namespace, one veth link per host.
ip netns add "$switch" || exit 2
ip -n "$switch" link add br0 type bridge || exit 2
ip -n "$switch" link set br0 up || exit 2
index=0
for host in api h1 h2; do
    index=$((index + 1))
    ns="$prefix$host"
    ip netns add "$ns" || exit 2
    namespaces+=("$ns")
    ip -n "$ns" link set lo up || exit 2
    ip -n "$switch" link add "s${tag}x$index" type veth peer name "h${tag}x$index" netns "$ns" || exit 2
    ip -n "$switch" link set "s${tag}x$index" master br0 || exit 2
    ip -n "$switch" link set "s${tag}x$index" up || exit 2
    ip -n "$ns" addr add "198.18.0.$index/24" dev "h${tag}x$index" || exit 2
    ip -n "$ns" link set "h${tag}x$index" up || exit 2
done
ns_api="${prefix}api"
api_address=198.18.0.1
tls_port=9444

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits (at most 60 s) until LOG has a line starting with PATTERN, while PID
# lives.
wait_line() {
    local log="$1" pattern="$2" pid="$3" deadline=$((SECONDS + 60))
    until grep -q "^$pattern" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "bench-hosts: no \`$pattern\` from the process of $log; its output:" >&2
            cat "$log" >&2
            exit 2
        fi
        sleep 0.1
    done
}
# `GET /nodes` of the platform on host `api`, as its admin.
remote_nodes() {
    ip netns exec "$ns_api" curl -sS --fail --max-time 10 \
        -H "Authorization: Bearer $(cat "$work/remote/data/admin.token")" \
        http://127.0.0.1:9443/nodes
}
# Waits (at most 60 s) until `GET /nodes` satisfies the Python expression
# CHECK on `nodes` (the parsed list).
wait_nodes() {
    local what="$1" check="$2" deadline=$((SECONDS + 60))
    until remote_nodes 2>/dev/null | python3 -c "import json, sys; nodes = json.load(sys.stdin); sys.exit(0 if ($check) else 1)"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "bench-hosts: $what: not within 60 s; GET /nodes:" >&2
            remote_nodes >&2 || true
            exit 2
        fi
        sleep 0.2
    done
}
# Starts the node host HOST (address ADDRESS) with a join token.
start_host() {
    local host="$1" address="$2" token="$3"
    mkdir -p "$work/$host"
    ip netns exec "$prefix$host" "$bin/mse-server" --roles node --node-id "$host" \
        --join "https://$api_address:$tls_port" --node-token "$token" \
        --advertise "$address" --nodes-dir "$work/$host/nodes" --cache-dir "$MSE_CACHE_DIR" \
        --cores 64 --memory-mb 65536 >"$work/$host/host.log" 2>&1 &
    pids+=($!)
    eval "pid_$host=$!"
    wait_nodes "host $host live" "any(n['node'] == '$host' and n.get('live') for n in nodes)"
}
new_token() {
    ip netns exec "$ns_api" curl -sS --fail --max-time 10 -X POST \
        -H "Authorization: Bearer $(cat "$work/remote/data/admin.token")" \
        http://127.0.0.1:9443/nodes/tokens \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

echo "==> local platform (api,proxy,node on loopback)" >&2
mkdir -p "$work/local"
api_port="$(free_port)"
proxy_port="$(free_port)"
"$bin/mse-server" --data-dir "$work/local/data" \
    --listen-api "127.0.0.1:$api_port" --listen-proxy "127.0.0.1:$proxy_port" --cores 64 \
    --cache-dir "$MSE_CACHE_DIR" --quote-provider simulation >"$work/local/server.log" 2>&1 &
pids+=($!)
wait_line "$work/local/server.log" "proxy listening" "$!"
MSE_CONF_PATH="$work/local/conf" "$mse" login --url "http://127.0.0.1:$api_port" --token - \
    --allow-simulation <"$work/local/data/admin.token" >/dev/null 2>&1 || exit 2
(cd "$work/local" && "$mse" scaffold helloworld >/dev/null) || exit 2

echo "==> platform on host api ($api_address: api,proxy) with host h1 (198.18.0.2)" >&2
mkdir -p "$work/remote"
ip netns exec "$ns_api" "$bin/mse-server" --roles api,proxy --data-dir "$work/remote/data" \
    --listen-api 127.0.0.1:9443 --listen-api-tls "$api_address:$tls_port" \
    --listen-proxy 127.0.0.1:8443 --cache-dir "$MSE_CACHE_DIR" --quote-provider simulation \
    >"$work/remote/server.log" 2>&1 &
pids+=($!)
pid_api=$!
wait_line "$work/remote/server.log" "proxy listening" "$pid_api"
token="$(new_token)" || { echo "bench-hosts: POST /nodes/tokens failed" >&2; exit 2; }
start_host h1 198.18.0.2 "$token"
MSE_CONF_PATH="$work/remote/conf" ip netns exec "$ns_api" "$mse" login --url http://127.0.0.1:9443 \
    --token - --allow-simulation <"$work/remote/data/admin.token" >/dev/null 2>&1 || exit 2
(cd "$work/remote" && "$mse" scaffold helloworld >/dev/null) || exit 2

# Both platforms in turn, so that a change of the machine's load weighs on
# both alike.
local_deploy() {
    MSE_CONF_PATH="$work/local/conf" python3 "$helper" deploy "$mse" "$work/local/helloworld" \
        "$work/$1" "$2" || exit 2
}
remote_deploy() {
    MSE_CONF_PATH="$work/remote/conf" ip netns exec "$ns_api" python3 "$helper" deploy "$mse" \
        "$work/remote/helloworld" "$work/$1" "$2" || exit 2
}
echo "==> warm-up deploys (build the runtime environment if it is not cached)" >&2
local_deploy local-warm.json local-warm
remote_deploy remote-warm.json remote-warm
echo "==> $deploys deploys on each platform, in turn" >&2
for i in $(seq 1 "$deploys"); do
    local_deploy local-deploys.json "local-$i"
    remote_deploy remote-deploys.json "remote-$i"
done

echo "==> host h2 (198.18.0.3) joins; $apps apps across h1 and h2" >&2
wait_nodes "h1's stopped apps gone" "all(not n['apps'] for n in nodes)"
token="$(new_token)" || { echo "bench-hosts: POST /nodes/tokens failed" >&2; exit 2; }
start_host h2 198.18.0.3 "$token"
# Room for all of them in the admin's quota (10 live apps by default).
admin_id="$(ip netns exec "$ns_api" curl -sS --fail --max-time 10 \
    -H "Authorization: Bearer $(cat "$work/remote/data/admin.token")" http://127.0.0.1:9443/me \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')" || exit 2
ip netns exec "$ns_api" curl -sS --fail --max-time 10 -X PUT -o /dev/null \
    -H "Authorization: Bearer $(cat "$work/remote/data/admin.token")" \
    -H 'Content-Type: application/json' -d "{\"max_live_apps\": $((apps + 10))}" \
    "http://127.0.0.1:9443/users/$admin_id/quota" || exit 2
MSE_CONF_PATH="$work/remote/conf" ip netns exec "$ns_api" python3 "$helper" many "$mse" \
    "$work/remote/helloworld" "$work/many.json" app "$apps" || exit 2
remote_nodes >"$work/nodes.json" || exit 2
python3 "$helper" rss "$work/rss.json" "$work/many.json" \
    "h1=$pid_h1" "h2=$pid_h2" "api,proxy=$pid_api" || exit 2

python3 "$helper" report "$work"

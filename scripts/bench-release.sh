#!/usr/bin/env bash
# This tree against another revision, in one run: the time of a warm
# `mse deploy` of the scaffolded app (each side's own `mse`, `mse-server`
# and `mse-run`, two local platforms, deploys alternating between them), and
# the requests per second and p99 latency of `GET /` on the app served by
# each side's `mse-run` (RA-TLS mode, 512 MB and 1 core asked), measured by
# this tree's load benchmark against the same hypercorn served directly.
# Release builds; the other revision is built in a worktree under
# target/bench-base (kept for the next run).
#
# Usage: ./scripts/bench-release.sh REV [DEPLOYS]   (default 10 deploys a side)
# Prints both sides and the change; exit code 2 when the benchmark cannot run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rev="${1:?usage: ./scripts/bench-release.sh REV [DEPLOYS]}"
deploys="${2:-10}"
target="${CARGO_TARGET_DIR:-$root/target}"
base_tree="$target/bench-base/tree"
base_target="$target/bench-base/target"

echo "==> building this tree (release)" >&2
cargo build --quiet --release -p mse-cli -p mse-server -p mse-run --bins --examples || exit 2
echo "==> building $rev (release, in $base_tree)" >&2
if [ ! -d "$base_tree" ]; then
    git worktree add --detach "$base_tree" "$rev" >/dev/null 2>&1 || exit 2
fi
git -C "$base_tree" checkout --quiet --detach "$rev" || exit 2
(cd "$base_tree" && CARGO_TARGET_DIR="$base_target" cargo build --quiet --release \
    -p mse-cli -p mse-server -p mse-run --bins) || exit 2

work="$(mktemp -d "${TMPDIR:-/tmp}/mse-bench-release.XXXXXX")"
servers=()
cleanup() {
    for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
export MSE_CACHE_DIR="${MSE_CACHE_DIR:-$root/target/test-cache}"
MSE_UV="$(dirname "$("$root/scripts/python-env.sh")")/uv"
export MSE_UV
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# One platform per side, each with its own client profile and app folder.
start() {
    local side="$1" bin="$2"
    local api proxy
    api="$(free_port)"
    proxy="$(free_port)"
    mkdir -p "$work/$side"
    "$bin/mse-server" --data-dir "$work/$side/data" --mse-run "$bin/mse-run" \
        --listen-api "127.0.0.1:$api" --listen-proxy "127.0.0.1:$proxy" \
        --cache-dir "$MSE_CACHE_DIR" --quote-provider simulation >"$work/$side/server.log" 2>&1 &
    servers+=("$!")
    for _ in $(seq 1 100); do
        grep -q '^proxy listening' "$work/$side/server.log" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^proxy listening' "$work/$side/server.log" || { cat "$work/$side/server.log" >&2; exit 2; }
    MSE_CONF_PATH="$work/$side/conf" "$bin/mse" login --url "http://127.0.0.1:$api" --token - \
        --allow-simulation <"$work/$side/data/admin.token" >/dev/null 2>&1 || exit 2
    (cd "$work/$side" && MSE_CONF_PATH="$work/$side/conf" "$bin/mse" scaffold helloworld >/dev/null)
}
deploy() {
    local side="$1" bin="$2" name="$3"
    cd "$work/$side/helloworld"
    sed -i "s/^name = .*/name = \"$name\"/" mse.toml
    MSE_CONF_PATH="$work/$side/conf" "$bin/mse" deploy --json >"$work/$side/$name.json" \
        2>"$work/$side/$name.log" || { cat "$work/$side/$name.log" >&2; exit 2; }
    local uuid
    uuid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$work/$side/$name.json")"
    MSE_CONF_PATH="$work/$side/conf" "$bin/mse" stop "$uuid" >/dev/null 2>&1 || true
    cd "$root"
}

start base "$base_target/release"
start this "$target/release"
echo "==> warm-up deploys" >&2
deploy base "$base_target/release" warm
deploy this "$target/release" warm
echo "==> $deploys deploys a side, alternating" >&2
for i in $(seq 1 "$deploys"); do
    deploy base "$base_target/release" "bench-$i"
    deploy this "$target/release" "bench-$i"
done

echo "==> requests per second through each side's mse-run" >&2
for side in base this; do
    case "$side" in
        base) runner="$base_target/release/mse-run" ;;
        this) runner="$target/release/mse-run" ;;
    esac
    "$target/release/examples/load" --mse-run "$runner" --memory-mb 512 \
        --cores 1 -d 5 -r 2 >"$work/load-$side.txt" 2>&1 || true
done

python3 - "$work" "$deploys" "$rev" <<'EOF'
import json, re, statistics, sys
work, deploys, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def timings(side):
    return [json.load(open(f"{work}/{side}/bench-{i}.json"))["timings"] for i in range(1, deploys + 1)]
print(f"warm mse deploy, {deploys} runs a side, median seconds ({rev} | this tree | change)")
base, this = timings("base"), timings("this")
for stage in ["running", "total"]:
    b = statistics.median(t[stage] for t in base)
    n = statistics.median(t[stage] for t in this)
    print(f"  {stage:<8} {b:8.3f} | {n:8.3f} | {(n - b) * 1000:+7.1f} ms")
def load(side):
    text = open(f"{work}/load-{side}.txt").read()
    found = {k: v for k, v in re.findall(r"^(direct|mse-run)\s+([\d.]+\s+[\d.]+\s+[\d.]+)$", text, re.M)}
    if "mse-run" not in found or "direct" not in found:
        print(text)
        sys.exit(2)
    rps, _, p99 = map(float, found["mse-run"].split())
    direct = float(found["direct"].split()[0])
    return rps, p99, direct
print("GET / through mse-run (RA-TLS, 512 MB, 1 core asked), load benchmark")
for side, label in [("base", rev), ("this", "this tree")]:
    rps, p99, direct = load(side)
    ratio = f", {rps / direct:.3f}x the direct hypercorn of the same run" if direct else ""
    print(f"  {label:<12} {rps:9.1f} req/s  p99 {p99:7.2f} ms{ratio}")
EOF

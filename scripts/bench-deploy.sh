#!/usr/bin/env bash
# Time of `mse deploy` from start to `running` for the scaffolded app, with a
# warm runtime environment, split by stage, and the time of `mse verify`
# (fetch the certificate, recompute the fingerprint from the exported context
# and the plaintext code, check the quote). Release build, a local platform
# on loopback (simulation quotes: no collateral to fetch).
#
# Usage: ./scripts/bench-deploy.sh [DEPLOYS [VERIFIES]]   (default 10 and 50)
# Targets: median deploy under 3 s, median verify under 100 ms. Exit code 1
# when a target is missed, 2 when the benchmark cannot run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
deploys="${1:-10}"
verifies="${2:-50}"

echo "==> building mse, mse-server and mse-run (release)" >&2
cargo build --quiet --release -p mse-cli -p mse-server -p mse-run || exit 2
bin="${CARGO_TARGET_DIR:-$root/target}/release"
mse="$bin/mse"

work="$(mktemp -d "${TMPDIR:-/tmp}/mse-bench-deploy.XXXXXX")"
server=""
cleanup() {
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
export MSE_CONF_PATH="$work/conf"
export MSE_CACHE_DIR="${MSE_CACHE_DIR:-$root/target/test-cache}"
MSE_UV="$(dirname "$("$root/scripts/python-env.sh")")/uv"
export MSE_UV
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
api_port="$(free_port)"
proxy_port="$(free_port)"
"$bin/mse-server" --data-dir "$work/data" \
    --listen-api "127.0.0.1:$api_port" --listen-proxy "127.0.0.1:$proxy_port" \
    --cache-dir "$MSE_CACHE_DIR" --quote-provider simulation >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    grep -q '^proxy listening' "$work/server.log" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 2; }
    sleep 0.1
done
"$mse" login --url "http://127.0.0.1:$api_port" --token - --allow-simulation \
    <"$work/data/admin.token" >/dev/null 2>&1 || exit 2
curl -sS --fail -o "$work/signer.pub" "http://127.0.0.1:$api_port/signer"
curl -sS --fail -o "$work/simulation-ca.pem" "http://127.0.0.1:$api_port/simulation-ca"
curl -sS --fail -o "$work/simulation-revoked.json" "http://127.0.0.1:$api_port/simulation-revoked"
cd "$work"
"$mse" scaffold helloworld >/dev/null
cd helloworld

echo "==> warm-up deploy (builds the runtime environment if it is not cached)" >&2
"$mse" deploy --json >"$work/warm.json" 2>"$work/warm.log" || { cat "$work/warm.log" >&2; exit 2; }
warm_uuid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$work/warm.json")"

echo "==> $deploys deploys" >&2
for i in $(seq 1 "$deploys"); do
    sed -i "s/^name = .*/name = \"bench-$i\"/" mse.toml
    "$mse" deploy --json >"$work/deploy-$i.json" 2>"$work/deploy-$i.log" \
        || { cat "$work/deploy-$i.log" >&2; exit 2; }
    uuid="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["uuid"])' "$work/deploy-$i.json")"
    "$mse" stop "$uuid" >/dev/null 2>&1 || true
done

echo "==> $verifies verifies of the running app" >&2
url="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/warm.json")"
"$mse" context --export "$warm_uuid" --output "$work/app.mse" >/dev/null 2>&1
python3 - "$mse" "${url#https://}" "$work" "$verifies" <<'EOF' >"$work/verify.txt" || exit 2
import os, subprocess, sys, time
mse, target, work, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
env = dict(os.environ, MSE_CONF_PATH=os.path.join(work, "app-user"))
args = [mse, "verify", target, "--context", f"{work}/app.mse", "--code", "mse_src",
        "--signer-key", f"{work}/signer.pub", "--simulation-ca", f"{work}/simulation-ca.pem",
        "--simulation-revoked", f"{work}/simulation-revoked.json", "--allow-simulation", "--output", f"{work}/cert.pem", "--json"]
for _ in range(count):
    start = time.perf_counter()
    result = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit("mse verify failed")
    print(elapsed)
EOF

python3 - "$work" "$deploys" <<'EOF'
import json, statistics, sys
work, deploys = sys.argv[1], int(sys.argv[2])
runs = [json.load(open(f"{work}/deploy-{i}.json"))["timings"] for i in range(1, deploys + 1)]
stages = [k for k in runs[0] if k != "total"] + ["total"]
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
print(f"mse deploy, warm runtime environment, {deploys} runs (seconds)")
print(f"  {'stage':<10} {'median':>8} {'p90':>8} {'max':>8}")
for stage in stages:
    values = [r[stage] for r in runs]
    print(f"  {stage:<10} {statistics.median(values):8.3f} {pct(values, 0.9):8.3f} {max(values):8.3f}")
verify = [float(line) for line in open(f"{work}/verify.txt")]
print(f"mse verify (whole process: fetch, repackage, fingerprint, quote), {len(verify)} runs (ms)")
print(f"  median {statistics.median(verify) * 1000:.1f}  p90 {pct(verify, 0.9) * 1000:.1f}  max {max(verify) * 1000:.1f}")
deploy_median = statistics.median(r["total"] for r in runs)
verify_median = statistics.median(verify)
ok_deploy = deploy_median < 3.0
ok_verify = verify_median < 0.100
print(f"target deploy < 3 s: {'met' if ok_deploy else 'MISSED'} ({deploy_median:.3f} s)")
print(f"target verify < 100 ms: {'met' if ok_verify else 'MISSED'} ({verify_median * 1000:.1f} ms)")
sys.exit(0 if ok_deploy and ok_verify else 1)
EOF

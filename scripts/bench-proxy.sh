#!/usr/bin/env bash
# Benchmark of TLS passthrough through the SNI proxy (mse_server::roles::proxy)
# against nginx's stream module with ssl_preread, in front of the same TLS
# backend, with the same client, in the same run (release build): req/s and
# p50/p99 latency in keep-alive mode and with a new TLS connection per request,
# plus a direct-to-backend baseline. Targets: our proxy's throughput >= nginx's
# and its p99 <= nginx's, in every mode measured.
#
# Arguments go to the benchmark (crates/mse-server/examples/bench_proxy.rs):
#   -c, --connections N     concurrent client connections/loops (default 16)
#   -d, --duration S        seconds measured per round, side and mode (default 10)
#       --warmup S          seconds of warm-up before each measurement (default 2)
#   -r, --rounds N          rounds per mode; best round per side counts (default 3)
#   -m, --mode M            keep-alive | handshake | both (default both)
#       --proxy-workers N   threads of ours = nginx worker_processes (default 1)
#       --proxy-runtime R   multi-thread (as mse-server runs it; default) | current-thread
#       --judge J           best (each side's best round; default) | pooled (all rounds;
#                           steadier on a shared machine, e.g. with -r 8 -d 4)
#       --backend-threads N, --client-threads N, --body-bytes N, --tolerance PCT, --nginx FILE
# See `./scripts/bench-proxy.sh --help`. Exit code 1: a target was missed;
# 2: the benchmark could not run, or a request failed.
# Installs nginx and its stream module (Debian: nginx libnginx-mod-stream)
# when nginx is missing, and the stream module alone when Debian's nginx
# lacks it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"

for arg in "$@"; do
    case "$arg" in
        -h|--help)
            cargo build --quiet --release -p mse-server --examples
            exec "$target/release/examples/bench_proxy" --help
            ;;
    esac
done

# Installs Debian packages quietly, as root or through sudo; only the
# binaries are wanted: the packages must not start their service.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $* missing and this is not a Debian-like system; install nginx with the stream and ssl_preread modules, or pass --nginx" >&2
        exit 2
    fi
    echo "==> installing $* (apt-get)" >&2
    if ! $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
            apt-get install -y -q "$@" >&2; then
        echo "error: cannot install $* (try: ${sudo:+sudo }apt-get update)" >&2
        exit 2
    fi
}

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx libnginx-mod-stream
else
    nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
    # An nginx built with a dynamic stream module (Debian's) whose module is
    # not installed.
    if "$nginx_bin" -V 2>&1 | grep -q -- '--with-stream=dynamic' \
            && [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
        apt_install libnginx-mod-stream
    fi
fi

echo "==> building the proxy benchmark (release)" >&2
cargo build --quiet --release -p mse-server --examples
exec "$target/release/examples/bench_proxy" "$@"

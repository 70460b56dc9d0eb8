#!/usr/bin/env bash
# Cold build of a runtime environment (the seed image's, by default), with
# pip and with uv, in the same run: each build gets a new virtual
# environment and an empty package cache, and installs the image's lock as
# the platform does (--require-hashes --no-deps; uv also compiles bytecode,
# as pip does). Prints the median of RUNS builds per tool, and the ratio.
#
#   ./scripts/bench-env.sh [IMAGE] [RUNS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
image="${1:-ghcr.io/cosmian/mse-flask:20230124182826}"
runs="${2:-3}"
python="$("$root/scripts/python-env.sh")"
uv="$(dirname "$python")/uv"
interpreter="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/mse-bench-env.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$python" - "$root/crates/mse-runtime/src/default-catalog.toml" "$image" >"$work/lock.txt" <<'PY'
import sys, tomllib
catalog = tomllib.load(open(sys.argv[1], "rb"))
spec = next((i for i in catalog["image"] if i["reference"] == sys.argv[2]), None)
if spec is None:
    sys.exit(f"{sys.argv[2]} is not in the default catalog")
print("\n".join(spec["packages"]))
PY
echo "image: $image ($(wc -l <"$work/lock.txt") packages), interpreter: $("$interpreter" --version), $("$uv" --version)"

# Milliseconds a command takes.
millis() { local start end; start=$(date +%s%N); "$@" >/dev/null 2>&1; end=$(date +%s%N); echo $(((end - start) / 1000000)); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

pip_build() {
    local dir="$1"
    "$interpreter" -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --cache-dir "$dir/cache" --require-hashes --no-deps -r "$work/lock.txt"
}
uv_build() {
    local dir="$1"
    "$interpreter" -m venv --without-pip "$dir/venv"
    UV_CACHE_DIR="$dir/cache" "$uv" pip install --quiet --no-config --python "$dir/venv/bin/python" \
        --require-hashes --no-deps --compile-bytecode -r "$work/lock.txt"
}

declare -A times
for tool in pip uv; do
    for n in $(seq 1 "$runs"); do
        dir="$work/$tool-$n"
        mkdir -p "$dir"
        t="$(millis "${tool}_build" "$dir")"
        "$dir/venv/bin/python" -c 'import flask, hypercorn' 2>/dev/null \
            || { echo "the $tool build does not import flask and hypercorn" >&2; exit 1; }
        times[$tool]+="$t"$'\n'
        rm -rf "$dir"
    done
done
pip_median="$(printf '%s' "${times[pip]}" | median)"
uv_median="$(printf '%s' "${times[uv]}" | median)"
awk -v runs="$runs" -v pip="$pip_median" -v uv="$uv_median" 'BEGIN {
    printf "cold build, median of %d: pip %.2f s, uv %.2f s (uv is %.1fx faster)\n", runs, pip / 1000, uv / 1000, pip / uv
}'

#!/usr/bin/env bash
# Benchmark of `mse package` against its peers, in one run on this machine:
#   - the I/O floor: `tar cf - TREE | cat > /dev/null` of the plaintext;
#   - the Python reference: mse-lib-crypto's encrypt_directory + tarfile;
#   - `mse package` (release build).
# The tree is generated once (about 2,000 files, 200 MB, mixed sizes) under
# target/bench/tree. Each tool runs RUNS times (default 3) after one warm-up;
# the best time counts. Targets: at least 3x faster than the Python peer, and
# within 2x of the tar floor.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
runs="${RUNS:-3}"
bench="$root/target/bench"
tree="$bench/tree"
mkdir -p "$bench"

echo "==> building mse (release)"
cargo build --quiet --release -p mse-cli
mse="$root/target/release/mse"
python="$("$root/scripts/python-env.sh")"

if [ ! -f "$bench/tree.done" ]; then
    echo "==> generating the tree in $tree"
    rm -rf "$tree"
    "$python" - "$tree" <<'PY'
import os, random, sys
from pathlib import Path
root = Path(sys.argv[1])
rng = random.Random(20261129)
sizes = []
sizes += [rng.randint(200, 8_000) for _ in range(1_400)]          # source files
sizes += [rng.randint(8_000, 200_000) for _ in range(560)]        # modules, assets
sizes += [rng.randint(2_000_000, 6_000_000) for _ in range(30)]   # data, models
sizes += [12_000_000] * 4                                         # a few large blobs
target = 200 * 1000 * 1000
scale = target / sum(sizes)
for i, size in enumerate(sizes):
    folder = root / f"pkg{i % 23}" / f"sub{i % 7}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"file{i}.py").write_bytes(os.urandom(max(1, int(size * scale))))
(root / "requirements.txt").write_text("flask\n")
(root / "app.py").write_text("app = None\n")
PY
    touch "$bench/tree.done"
fi
files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb "$tree" | cut -f1)
echo "tree: $files files, $((bytes / 1000000)) MB"

cat > "$bench/mse.toml" <<EOF2
name = "bench"
project = "default"
resource = "free"

[code]
location = "tree"
docker = "ghcr.io/cosmian/mse-flask:20230124182826"
python_application = "app:app"
healthcheck_endpoint = "/"
EOF2

cat > "$bench/peer.py" <<'PY'
import shutil, sys, tarfile
from pathlib import Path
from mse_lib_crypto.xsalsa20_poly1305 import encrypt_directory, random_key
src, out = Path(sys.argv[1]), Path(sys.argv[2])
enc = out / "enc"
encrypt_directory(src, "*", random_key(), None, ["requirements.txt"], [], enc)
with tarfile.open(out / "code.tar", "w") as tar:
    for path in sorted(enc.rglob("*")):
        tar.add(path, arcname=str(path.relative_to(enc)), recursive=False)
shutil.rmtree(enc)
PY

now() { date +%s.%N; }
best() { # best NAME COMMAND...: prints the best wall time of $runs runs
    local name="$1"; shift
    "$@" >/dev/null 2>&1 # warm-up
    local best_time=""
    for _ in $(seq "$runs"); do
        local start end elapsed
        start=$(now); "$@" >/dev/null 2>&1; end=$(now)
        elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }')
        if [ -z "$best_time" ] || awk -v a="$elapsed" -v b="$best_time" 'BEGIN { exit !(a < b) }'; then best_time=$elapsed; fi
    done
    printf '%s\n' "$best_time"
}

floor_cmd() { tar cf - -C "$tree" . | cat > /dev/null; }
mse_cmd() { rm -rf "$bench/mse-out"; "$mse" package --path "$bench/mse.toml" --output "$bench/mse-out"; }
peer_cmd() { rm -rf "$bench/peer-out"; mkdir -p "$bench/peer-out"; "$python" "$bench/peer.py" "$tree" "$bench/peer-out"; }

echo "==> timing ($runs runs each after a warm-up, best kept)"
t_floor=$(best floor floor_cmd)
t_mse=$(best mse mse_cmd)
t_peer=$(best peer peer_cmd)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-44s %8.3f s\n' "tar cf - | cat (I/O floor)" "$t_floor"
printf '%-44s %8.3f s   %5sx the floor\n' "mse package" "$t_mse" "$(ratio "$t_mse" "$t_floor")"
printf '%-44s %8.3f s   %5sx slower than mse package\n' "mse-lib-crypto encrypt_directory + tarfile" "$t_peer" "$(ratio "$t_peer" "$t_mse")"

status=0
if awk -v p="$t_peer" -v m="$t_mse" 'BEGIN { exit !(p >= 3 * m) }'; then echo "target >= 3x faster than the Python peer: met"; else echo "target >= 3x faster than the Python peer: MISSED"; status=1; fi
if awk -v m="$t_mse" -v f="$t_floor" 'BEGIN { exit !(m <= 2 * f) }'; then echo "target within 2x of the tar floor: met"; else echo "target within 2x of the tar floor: MISSED"; status=1; fi
exit $status

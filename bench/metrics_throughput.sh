#!/usr/bin/env bash
# FID/KID speed, CPU: Inception feature extraction over an image folder (decode, resize, network)
# and a full FID between two folders of NUM/2 PNGs each, vagan against clean-fid 0.1.35 (same
# Inception weights, clean mode), alternating, medians over rounds. The images are the 32×32 grey
# Fashion-MNIST subset data/fashion-mnist-1k-32.vds cycled (fakes: plus seeded uniform noise);
# see bench/reference_metrics.py. Needs a quiet machine; clean-fid runs in .venv-fixtures.
#   bash bench/metrics_throughput.sh   # writes bench/results/metrics_*.json and metrics_throughput.md
#   NUM=10000 FEATURES_NUM=500 ROUNDS=3 FID_ROUNDS=3 THREADS=$(nproc) are the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
bash scripts/fixtures/venv.sh
cargo build --release --quiet --example bench_metrics --bin vagan
./target/release/vagan weights fetch inception_fid > /dev/null
NUM=${NUM:-10000}
FEATURES_NUM=${FEATURES_NUM:-500}
ROUNDS=${ROUNDS:-3}
FID_ROUNDS=${FID_ROUNDS:-$ROUNDS}
THREADS=${THREADS:-$(nproc)}
PY=.venv-fixtures/bin/python3
OUT=bench/results
IMAGES=target/bench-metrics
mkdir -p "$OUT"
rm -f "$OUT"/metrics_*.json
prepare() {
  [ -d "$IMAGES/$1/fake" ] || $PY bench/reference_metrics.py prepare data/fashion-mnist-1k-32.vds "$1" "$IMAGES/$1"
}
prepare "$NUM"
prepare "$((2 * FEATURES_NUM))"
# Feature extraction over FEATURES_NUM images.
FOLDER="$IMAGES/$((2 * FEATURES_NUM))/real"
for r in $(seq 1 "$ROUNDS"); do
  ./target/release/examples/bench_metrics "$FOLDER" clean 64 "$THREADS" "$OUT/metrics_features_vagan_$r.json"
  $PY bench/reference_metrics.py features "$FOLDER" clean "$THREADS" "$OUT/metrics_features_cleanfid_$r.json"
done
# A full FID on NUM images: every image decoded, resized and measured, statistics, the distance.
for r in $(seq 1 "$FID_ROUNDS"); do
  ./target/release/vagan metrics fid --real "$IMAGES/$NUM/real" --fake "$IMAGES/$NUM/fake" \
    --device cpu --no-cache --json > "$OUT/metrics_fid_vagan_$r.json"
  $PY bench/reference_metrics.py fid "$IMAGES/$NUM/real" "$IMAGES/$NUM/fake" clean "$THREADS" \
    "$OUT/metrics_fid_cleanfid_$r.json"
done
$PY bench/reference_metrics.py summarize "$OUT" > "$OUT/metrics_throughput.md"
cat "$OUT/metrics_throughput.md"

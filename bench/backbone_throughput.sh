#!/usr/bin/env bash
# Forward + input-gradient throughput per backbone at batch 16 (64×64 generator images resized
# inside; the gradient of the sum of every output the heads and the probe read), vagan against the same network in PyTorch, alternating, ROUNDS rounds. Needs a quiet
# machine. The PyTorch side runs in .venv-fixtures (the pinned reference packages).
#   bash bench/backbone_throughput.sh        # writes bench/results/backbone_*.json
#   NETWORKS="dino_vitb16 swin_t" bash bench/backbone_throughput.sh   # rerun some (default: all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
bash scripts/fixtures/venv.sh
cargo build --release --quiet --example bench_backbone
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-3}
THREADS=${THREADS:-$(nproc)}
OUT=bench/results
NETWORKS=${NETWORKS:-clip_vit_b32 dino_vitb16 swin_t vgg16 vgg16_antialiased efficientnet_lite0}
mkdir -p "$OUT"
for name in $NETWORKS; do
  rm -f "$OUT"/backbone_"${name//_/-}"_*.json
  for r in $(seq 1 "$ROUNDS"); do
    ./target/release/examples/bench_backbone "$name" 16 64 "$STEPS" 1 "$THREADS" "$OUT/backbone_${name//_/-}_vagan_$r.json"
    .venv-fixtures/bin/python3 bench/reference_backbone.py "$name" 16 64 "$STEPS" 1 "$THREADS" \
      "$OUT/backbone_${name//_/-}_pytorch_$r.json"
  done
done
python3 bench/summarize.py "$OUT" backbone > "$OUT/backbone_throughput.md"
cat "$OUT/backbone_throughput.md"

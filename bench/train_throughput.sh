#!/usr/bin/env bash
# Training throughput of vagan against bench/reference_train.py (the same architecture and
# training step in PyTorch), run side by side: the two alternate, one process at a time, for
# ROUNDS rounds per configuration. Needs a quiet machine: nothing else may run meanwhile.
#   bash bench/train_throughput.sh            # writes bench/results/train_throughput.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
cargo build --release --quiet --bin vagan --example bench_train
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-$(nproc)}
OUT=bench/results
mkdir -p "$OUT" data
for res in 32 64; do
  f=data/fashion-mnist-1k-$res.vds
  [ -f "$f" ] || ./target/release/vagan dataset --source /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
      --dest "$f" --resolution $res --transform pad --max-images 1000 --seed 0 >/dev/null
done
# name  resolution  batch  cbase  cmax  z=w  timed-steps  warm-up
CONFIGS=("res32 32 32 4096 128 128 32 4" "res64 64 32 4096 128 128 16 2")
rm -f "$OUT"/train_*.json
for cfg in "${CONFIGS[@]}"; do
  read -r name res batch cbase cmax zdim steps warm <<<"$cfg"
  data=data/fashion-mnist-1k-$res.vds
  for r in $(seq 1 "$ROUNDS"); do
    ./target/release/examples/bench_train "$data" "$batch" "$cbase" "$cmax" "$zdim" "$steps" "$warm" "$THREADS" \
      "$OUT/train_${name}_vagan_$r.json"
    python3 bench/reference_train.py --data "$data" --batch "$batch" --cbase "$cbase" --cmax "$cmax" \
      --z-dim "$zdim" --w-dim "$zdim" --map 2 --steps "$steps" --warmup-steps "$warm" --threads "$THREADS" \
      --quiet --json "$OUT/train_${name}_pytorch_$r.json"
    # The same with vagan's parameter layout (NHWC), for the record.
    python3 bench/reference_train.py --data "$data" --batch "$batch" --cbase "$cbase" --cmax "$cmax" \
      --z-dim "$zdim" --w-dim "$zdim" --map 2 --steps "$steps" --warmup-steps "$warm" --threads "$THREADS" \
      --channels-last --quiet --json "$OUT/train_${name}_pytorchNHWC_$r.json"
  done
done
python3 bench/summarize.py "$OUT" train > "$OUT/train_throughput.md"
cat "$OUT/train_throughput.md"

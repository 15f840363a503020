#!/usr/bin/env bash
# The README's first command: installs everything, builds vagan, and runs the main job on the
# embedded default (a 1,000-image Fashion-MNIST subset at 32×32). Run it again and it only
# checks: an interrupted job resumes, a finished one is reported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
. scripts/env.sh
cargo build --release --quiet
VAGAN=./target/release/vagan

DATA=data/fashion-mnist-1k-32.vds
if [ ! -f "$DATA" ]; then
  "$VAGAN" dataset --source /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
    --dest "$DATA" --resolution 32 --transform pad --max-images 1000 --seed 0
fi

# The main job: the base GAN sized for two CPU cores (see BENCHMARKS.md for its speed).
RUN=runs/fashion-mnist-1k
KIMG=${VAGAN_DEMO_KIMG:-16}
if [ -f "$RUN/training_options.json" ]; then
  # Continues an interrupted job exactly; a finished one is only reported.
  "$VAGAN" train --resume "$RUN" --kimg "$KIMG"
else
  "$VAGAN" train --data "$DATA" --run-dir "$RUN" --kimg "$KIMG" --batch 32 --tick 1 --snap 4 \
    --cbase 4096 --cmax 128 --z-dim 128 --w-dim 128 --map 2
fi
echo "samples: $RUN/fakes*.png   snapshots: $RUN/network-snapshot-*.safetensors   log: $RUN/stats.jsonl"

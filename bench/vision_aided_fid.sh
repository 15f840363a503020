#!/usr/bin/env bash
# The result the method exists for: the same base GAN trained on the 1,000-image Fashion-MNIST
# subset at 32×32 without and with the EfficientNet-Lite0 vision-aided discriminator, the same
# kimg budget, FID (clean-fid recipe, --metrics) at every snapshot, and the cost per kimg.
# Runs go to runs/bench-fid/{baseline,lite0}; the table goes to bench/results/vision_aided_fid.md.
#   bash bench/vision_aided_fid.sh [KIMG] [METRIC]      (defaults: 32 fid1k)
# Run it on a quiet machine: the runs take turns, and sec/kimg is the tick time from stats.jsonl.
set -euo pipefail
KIMG=${1:-32}
METRIC=${2:-fid1k}
. "$(dirname "${BASH_SOURCE[0]}")/fid_common.sh"
COMMON=("${BASE_FLAGS[@]}" --kimg "$KIMG" --metrics "$METRIC")
train() {
  local dir=runs/bench-fid/$1; shift
  if [ -f "$dir/training_options.json" ]; then
    "$VAGAN" train --resume "$dir" --kimg "$KIMG" --metrics "$METRIC" --device cpu
  else
    "$VAGAN" train --run-dir "$dir" "${COMMON[@]}" "$@"
  fi
}
train baseline
train lite0 --cv efficientnet_lite0 --cv-loss sigmoid_s
python3 bench/summarize_fid.py runs/bench-fid "$METRIC" | tee bench/results/vision_aided_fid.md

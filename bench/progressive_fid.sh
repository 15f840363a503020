#!/usr/bin/env bash
# The automatic progressive ensemble on the 1,000-image Fashion-MNIST subset with the offline
# bank (EfficientNet-Lite0, Lite1, Lite2): the base GAN of bench/vision_aided_fid.sh for
# STAGE_KIMG, then three probed stages of STAGE_KIMG each, FID at every stage's end. The table
# sets each stage's probe accuracies and FID beside the runs of bench/vision_aided_fid.sh (the
# base GAN alone and EfficientNet-Lite0 fixed from the start) at the same kimg.
#   bash bench/progressive_fid.sh [STAGE_KIMG] [METRIC]    (defaults: 2.048 fid1k)
# The schedule lives in runs/bench-progressive; rerunning the command continues a killed run.
# 2.048 kimg is 64 batches of 32, so stage ends fall on the fixed runs' snapshots (4.096, 8.192).
set -euo pipefail
STAGE_KIMG=${1:-2.048}
METRIC=${2:-fid1k}
. "$(dirname "${BASH_SOURCE[0]}")/fid_common.sh"
"$VAGAN" train --progressive --run-dir runs/bench-progressive "${BASE_FLAGS[@]}" \
  --metrics "$METRIC" --bank efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 \
  --stages 3 --stage-kimg "$STAGE_KIMG,$STAGE_KIMG,$STAGE_KIMG" --baseline-kimg "$STAGE_KIMG" \
  --probe-images 1000
python3 bench/summarize_progressive.py runs/bench-progressive runs/bench-fid "$METRIC" \
  | tee bench/results/progressive_fid.md

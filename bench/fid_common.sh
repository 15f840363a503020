# Sourced by the FID benchmarks (vision_aided_fid.sh, progressive_fid.sh): builds the release
# binary, makes the 1,000-image Fashion-MNIST subset, fetches the weights they use, and sets
# VAGAN, DATA and BASE_FLAGS (the base GAN both benchmarks train, without a length).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
cargo build --release --quiet
VAGAN=./target/release/vagan
DATA=$(bash scripts/demo_data.sh "$VAGAN")
for net in efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 inception_fid; do
  "$VAGAN" weights fetch "$net" > /dev/null
done
BASE_FLAGS=(--data "$DATA" --batch 32 --tick 1 --snap 4 --cbase 4096 --cmax 128
  --z-dim 128 --w-dim 128 --map 2 --seed 0 --device cpu)

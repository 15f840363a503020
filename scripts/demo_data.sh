#!/usr/bin/env bash
# Makes the embedded default dataset if it is missing: a seeded 1,000-image subset of the
# Fashion-MNIST training images, padded to 32×32. Usage: bash scripts/demo_data.sh VAGAN_BINARY;
# prints the dataset path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=data/fashion-mnist-1k-32.vds
if [ ! -f "$DATA" ]; then
  "$1" dataset --source /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
    --dest "$DATA" --resolution 32 --transform pad --max-images 1000 --seed 0 >&2
fi
echo "$DATA"

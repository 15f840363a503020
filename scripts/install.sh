#!/usr/bin/env bash
# Installs what vagan needs on a Debian machine with Rust, Python 3 and apt. Idempotent: a second
# run checks each piece and changes nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$VAGAN_ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Fashion-MNIST, the embedded default data set.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "install: Fashion-MNIST (Debian package dataset-fashion-mnist)"
  as_root apt-get update -qq
  as_root apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# libtorch comes from the pinned PyPI torch wheel, in a project-local virtual environment.
if [ ! -x .venv/bin/python3 ]; then
  echo "install: virtual environment .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python3 -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  echo "install: torch==$TORCH_VERSION into .venv (a few GB, once)"
  .venv/bin/pip install -q "torch==$TORCH_VERSION"
fi

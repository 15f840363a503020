#!/usr/bin/env bash
# Real photos for the pretrained-weights tests: three images from the scikit-image wheel
# (BSD-3), taken out into target/test-photos. Idempotent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest=target/test-photos
photos=(chelsea.png coffee.png motorcycle_left.png)
missing=0
for p in "${photos[@]}"; do [ -f "$dest/$p" ] || missing=1; done
[ "$missing" = 0 ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --disable-pip-version-check -d "$tmp" scikit-image==0.25.2
mkdir -p "$dest"
python3 - "$tmp" "$dest" "${photos[@]}" <<'PY'
import glob, sys, zipfile
tmp, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
for n in names:
    with open(f"{dest}/{n}", "wb") as f:
        f.write(wheel.read(f"skimage/data/{n}"))
PY

#!/usr/bin/env bash
# The README's second command: installs what the tests need, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
. scripts/env.sh
# Headless Chromium renders the run report in its test (Debian package chromium).
if ! command -v chromium >/dev/null; then
  echo "install: chromium (Debian package, for the report test)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
# Real data for the pretrained-network tests: photos, and the weights through vagan's own fetch.
bash scripts/test_photos.sh
# EfficientNet-Lite0/1 train the vision-aided tests, the Inception measures FID.
for net in efficientnet_lite0 efficientnet_lite1 inception_fid; do
  cargo run --quiet -- weights fetch "$net"
done
cargo test 2>&1 | tee target/test.log
# One closing line for the whole suite (unit, integration and doc tests).
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' target/test.log

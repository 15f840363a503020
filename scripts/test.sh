#!/usr/bin/env bash
# The README's second command: installs what the tests need, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
. scripts/env.sh
cargo test

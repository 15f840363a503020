# Sourced by the other scripts: puts the project's virtual environment first on PATH so that
# torch-sys (LIBTORCH_USE_PYTORCH=1) and build.rs both find the pinned torch wheel.
VAGAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$VAGAN_ROOT/scripts/versions.sh"
export PATH="$VAGAN_ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$VAGAN_ROOT/.venv"
export LIBTORCH_USE_PYTORCH=1

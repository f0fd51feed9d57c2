#!/usr/bin/env bash
# Install swapformer for development: the CPU build of PyTorch first (when no torch is installed: a bare
# `pip install torch` would pull several GB of CUDA wheels), then the package with its dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    "$PYTHON" -m pip install "torch==2.13.0" || "$PYTHON" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
fi
"$PYTHON" -m pip install -q -e ".[dev]"

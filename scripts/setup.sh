#!/usr/bin/env bash
# Create .venv and install SignLens into it (idempotent: a second run is quick).
# torch==2.14.1 + torchvision==0.29.1 are pinned together: InternVL's processor imports
# torchvision, and these are the wheels this project is tested with. TORCH_INDEX (e.g.
# https://download.pytorch.org/whl/cpu) installs them from that index first: the CPU-only
# build, far smaller than PyPI's CUDA one (README, "The two commands").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.signlens-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -U pip
  if [ -n "${TORCH_INDEX:-}" ]; then
    .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1 --index-url "$TORCH_INDEX"
  fi
  .venv/bin/pip install -q -e ".[${EXTRAS:-test}]"
  touch "$stamp"
fi

#!/usr/bin/env bash
# Create .venv and install SignLens into it (idempotent: a second run is quick).
# torch==2.14.1 + torchvision==0.29.1 are pinned together: InternVL's processor imports
# torchvision, and these are the wheels this project is tested with (README, "Install").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.signlens-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -U pip
  .venv/bin/pip install -q -e ".[${EXTRAS:-test}]"
  touch "$stamp"
fi

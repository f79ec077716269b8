#!/usr/bin/env bash
# Install (first run only) and start the app: `bash scripts/run.sh [--host 0.0.0.0] [--port 7860]`.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${EXTRAS:-test} bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"

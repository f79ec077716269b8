#!/usr/bin/env bash
# The CUDA check of the full-size model, in one table, in under 8 minutes on one GPU:
# InternVL3-2B's architecture with random weights (built from its real configuration,
# ~1 min on first run, then reused from .cache/), loaded through the engine in NF4 (the
# CUDA default) and in bf16; seconds per clip and peak VRAM at the quality and fast
# profiles; one QLoRA step (NF4 base, the shipped LoRA settings) at each profile.
#
#     bash benchmarks/gpu_check.sh             # from the repository root
#     PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#
# It has not run yet: no GPU was lent to the sessions that wrote it (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1

if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "gpu_check: $PYTHON cannot import torch; install the project first (bash scripts/test.sh) or set PYTHON." >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU is visible to $PYTHON (torch.cuda.is_available() is False), so there is nothing to measure; run it on a machine with an NVIDIA GPU." >&2
    exit 2
fi
"$PYTHON" -c 'import torch; print("GPU:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")'

# 480 s in all; a row that hangs is cut at 150 s and reported as failed, the table still prints.
timeout 480 "$PYTHON" benchmarks/bench_fullsize.py --device cuda --threads 8 --repeats 3 --timeout 150 --rows \
    2b:quality:nf4 2b:fast:nf4 2b:quality:bf16 2b:fast:bf16 2b:quality:nf4:train 2b:fast:nf4:train

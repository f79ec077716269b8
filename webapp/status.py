"""The model status panel and /model_info: what runs where, and whether it is ready, in plain words.

Both show names, never server paths: a local model folder shows as its folder name, an
adapter as its run's name, so nothing in a response tells a caller how the disk is laid out.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from engine import EngineStatus

# An absolute POSIX or Windows path inside a text (error messages carry them too).
_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:\\|/)[^\s'\"`,;()]*")

# A model this small (in memory) is a test model with random weights, such as
# `python -m engine make-tiny` builds: a real vision-language model is hundreds of MB at least.
TOY_MODEL_MB = 100

HEADLINES = {
    # The page is served before the model starts loading (a cold start imports torch
    # first): "idle" would read as "nothing will happen".
    "idle": ("🟡", "starting", "the model starts loading in a moment; the page already works"),
    "loading": ("🟡", "loading the model", "recognition starts when it is ready; everything else already works"),
    "ready": ("🟢", "ready", ""),
    "failed": ("🔴", "the model could not be loaded", ""),
    "closed": ("⚪", "stopped", "the server is shutting down"),
}


def public_text(text: str) -> str:
    """`text` with every absolute path replaced by its last part (an adapter by its run's name)."""
    def short(match: re.Match) -> str:
        raw = match.group(0).rstrip("/\\.")
        path = PureWindowsPath(raw) if raw[1:2] == ":" else PurePosixPath(raw)
        return path.parent.name if path.name == "adapter" and path.parent.name else path.name

    return _PATH.sub(short, text or "")


def public_status(status: EngineStatus) -> dict[str, Any]:
    """What /model_info returns: the engine's status with names instead of paths."""
    return {key: public_text(value) if isinstance(value, str) else value
            for key, value in dataclasses.asdict(status).items()}


def toy_model_warning(status: EngineStatus) -> str:
    """A warning when the loaded model is a tiny random-weight test model, else ""."""
    if status.state == "ready" and 0 < status.memory_mb < TOY_MODEL_MB:
        return ("This is a tiny test model with random weights: its signs and sentences are random "
                "until you fine-tune it (or set SIGNLENS_MODEL to a real model).")
    return ""


def status_markdown(status: EngineStatus) -> str:
    """Readable status for the page header; the same facts as the /model_info endpoint."""
    shown = public_status(status)
    icon, headline, explanation = HEADLINES.get(status.state, ("⚪", status.state, ""))
    lines = [f"{icon} **{headline}** — `{shown['model_id']}`" + (f": {explanation}" if explanation else "")]
    if status.state == "failed" and status.detail:
        lines.append(shown["detail"])
    if status.device:
        precision = {"float32": "full precision", "bfloat16": "half precision (bf16)",
                     "float16": "half precision (fp16)"}.get(status.dtype, status.dtype)
        quantized = "" if status.quantization in ("", "none") else f", {status.quantization} quantized"
        lines.append(f"runs on **{status.device.upper()}** in {precision}{quantized} · "
                     f"{status.memory_mb:,.0f} MB · loaded in {status.load_seconds:.1f} s")
    warning = toy_model_warning(status)
    if warning:
        lines.append(f"⚠️ {warning}")
    size = f", {status.tile_px} px" if status.tile_px else ""
    pace = f", ~{status.expected_seconds:.1f} s per sign" if status.expected_seconds else ""
    lines.append(f"vocabulary: {status.vocabulary_size} glosses · profile {shown['profile']} ({status.frames_per_clip} frames{size}{pace})"
                 + (f" · adapter: `{shown['adapter']}`" if status.adapter else ""))
    text = "  \n".join(lines)
    if status.state != "failed" and status.detail:
        # Why this device and precision: for whoever tunes the setup, not for every visitor.
        text += f"\n\n<details><summary>Why these settings</summary>{shown['detail']}</details>"
    return text

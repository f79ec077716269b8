"""The model status panel: what runs where, and whether it is ready, in plain words."""

from __future__ import annotations

from engine import EngineStatus

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


def toy_model_warning(status: EngineStatus) -> str:
    """A warning when the loaded model is a tiny random-weight test model, else ""."""
    if status.state == "ready" and 0 < status.memory_mb < TOY_MODEL_MB:
        return ("This is a tiny test model with random weights: its signs and sentences are random "
                "until you fine-tune it (or set SIGNLENS_MODEL to a real model).")
    return ""


def status_markdown(status: EngineStatus) -> str:
    """Readable status for the page header; the same facts as the /model_info endpoint."""
    icon, headline, explanation = HEADLINES.get(status.state, ("⚪", status.state, ""))
    lines = [f"{icon} **{headline}** — `{status.model_id}`" + (f": {explanation}" if explanation else "")]
    if status.state == "failed" and status.detail:
        lines.append(status.detail)
    if status.device:
        precision = {"float32": "full precision", "bfloat16": "half precision (bf16)",
                     "float16": "half precision (fp16)"}.get(status.dtype, status.dtype)
        quantized = "" if status.quantization in ("", "none") else f", {status.quantization} quantized"
        lines.append(f"runs on **{status.device.upper()}** in {precision}{quantized} · "
                     f"{status.memory_mb:,.0f} MB · loaded in {status.load_seconds:.1f} s")
    warning = toy_model_warning(status)
    if warning:
        lines.append(f"⚠️ {warning}")
    lines.append(f"vocabulary: {status.vocabulary_size} glosses" + (f" · adapter: `{status.adapter}`" if status.adapter else ""))
    text = "  \n".join(lines)
    if status.state != "failed" and status.detail:
        # Why this device and precision: for whoever tunes the setup, not for every visitor.
        text += f"\n\n<details><summary>Why these settings</summary>{status.detail}</details>"
    return text

"""The model status panel: what runs where, and whether it is ready."""

from __future__ import annotations

from engine import EngineStatus


def status_markdown(status: EngineStatus) -> str:
    """Readable status for the page header; the same facts as the /model_info endpoint."""
    icon = {"ready": "🟢", "loading": "🟡", "failed": "🔴"}.get(status.state, "⚪")
    lines = [f"{icon} **{status.state}** — `{status.model_id}`"]
    if status.device:
        lines.append(
            f"device **{status.device}**, dtype **{status.dtype}**, quantization **{status.quantization}**, "
            f"{status.memory_mb:,.0f} MB, loaded in {status.load_seconds:.1f} s"
        )
    if status.detail:
        lines.append(status.detail)
    lines.append(f"vocabulary: {status.vocabulary_size} glosses" + (f" · adapter: `{status.adapter}`" if status.adapter else ""))
    return "  \n".join(lines)

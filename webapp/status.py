"""The model status panel and /model_info: what runs where, and whether it is ready.

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


def status_markdown(status: EngineStatus) -> str:
    """Readable status for the page header; the same facts as the /model_info endpoint."""
    shown = public_status(status)
    icon = {"ready": "🟢", "loading": "🟡", "failed": "🔴"}.get(status.state, "⚪")
    lines = [f"{icon} **{status.state}** — `{shown['model_id']}`"]
    if status.device:
        lines.append(
            f"device **{status.device}**, dtype **{status.dtype}**, quantization **{status.quantization}**, "
            f"{status.memory_mb:,.0f} MB, loaded in {status.load_seconds:.1f} s"
        )
    if status.detail:
        lines.append(shown["detail"])
    lines.append(f"vocabulary: {status.vocabulary_size} glosses" + (f" · adapter: `{shown['adapter']}`" if status.adapter else ""))
    return "  \n".join(lines)

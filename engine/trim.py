"""Trim in seconds: turn a start/end time into the 1-based frame span `Engine.recognize` takes.

People trim a clip by time ("the sign is from 1.5 s to 3 s"); the engine, like WLASL's
metadata, works in frames. The frame rate comes from the container header (PyAV opens
the file without decoding anything). Bad files are left for `Engine.recognize` to
refuse with its own sentence.
"""

from __future__ import annotations

from pathlib import Path

import av

from engine.errors import ClipError
from engine.video import IMAGE_SUFFIXES


def frame_span(path: str | Path, start_s: float | None = None, end_s: float | None = None) -> tuple[int, int]:
    """(frame_start, frame_end) for `recognize`: 1-based, -1 for "to the end".

    Empty or zero times mean "from the start" and "to the end"; images ignore trimming.
    """
    start_s, end_s = float(start_s or 0), float(end_s or 0)
    if start_s < 0 or end_s < 0:
        raise ClipError("Trim times cannot be negative.")
    if end_s and end_s <= start_s:
        raise ClipError(f"The trim end ({end_s:g} s) must come after its start ({start_s:g} s).")
    if (not start_s and not end_s) or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return 1, -1
    fps = _frame_rate(Path(path))
    if not fps:
        return 1, -1  # not a readable video: recognize() says why
    first = int(round(start_s * fps)) + 1
    last = max(first, int(round(end_s * fps))) if end_s else -1
    return first, last


def _frame_rate(path: Path) -> float:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0.0
            stream = container.streams.video[0]
            return float(stream.average_rate or stream.guessed_rate or 0)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return 0.0

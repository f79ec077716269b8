"""Trim a source video to its sign, crop and shrink it as the engine would, and cache it.

A dataset clip holds *every* frame of the sign's span (WLASL ``frame_start``/``frame_end``),
cropped to the signer's box with the engine's own ``crop_square`` and decoded with the
engine's own ``load_clip``: training later samples ``frames_per_clip`` frames from the
stored clip with that same ``load_clip``, so the frames it sees are the frames inference
would take from the original (``sample_indices`` over the same span), not a copy of the
logic that could drift.

Stored size: the long side is capped at ``max_side`` (448 by default, the model's tile).
WLASL's signer boxes have a median side of ~360 px; 68% are larger than 256 px and 37%
larger than 448 px (measured on v0.3's 21,083 boxes). A 256 px cap would shrink two
thirds of the clips below what the vision tower sees at inference, where the processor
scales the full-resolution crop to 448; at 448 nothing the model could see is lost.

Clips are cached under ``<data>/cache/clips/`` keyed by the source file (path, size,
mtime) and every parameter, so a rebuild with another glossary or split re-encodes
nothing; datasets hard-link the cached files (copying where links are impossible).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np

from training.atomic import atomic_path, write_json

# Bump when the encoding below changes, so old cache entries are not reused.
CACHE_VERSION = 1
# Frames decoded per load_clip call: bounds memory on long, high-resolution sources
# (32 frames of 1080p are ~200 MB) while costing one extra demux pass per chunk.
_CHUNK = 32
# x264 quality for stored clips: visually lossless, and the clips are re-scaled anyway.
_ENCODE_OPTIONS = {"crf": "17", "preset": "veryfast", "bf": "0"}


@dataclass(frozen=True)
class ClipInfo:
    """What was written: the span's frame count, its rate and the stored size."""

    frames: int
    fps: float
    width: int
    height: int


def source_limits():
    """Limits for trusted downloaded sources: YouTube videos are longer than user clips."""
    from engine import LimitsConfig

    return LimitsConfig(max_file_mb=1024.0, max_clip_seconds=3600.0, max_resolution=4096)


def prepare_clip(
    source: Path,
    target: Path,
    *,
    frame_start: int = 1,
    frame_end: int = -1,
    bbox: Sequence[int] | None = None,
    max_side: int = 448,
    limits=None,
) -> ClipInfo:
    """Write the span ``frame_start..frame_end`` of ``source`` (cropped, shrunk) to ``target``.

    Raises ``engine.errors.ClipError`` (one sentence) for a source that cannot be used;
    ``target`` appears, atomically, only when the whole span was written.
    """
    from engine import ClipError, load_clip

    limits = limits or source_limits()
    probe = load_clip(source, num_frames=1, limits=limits, frame_start=frame_start, frame_end=frame_end)
    start = frame_start - 1
    end = probe.total_frames - 1 if frame_end == -1 else min(frame_end, probe.total_frames) - 1
    fps = Fraction(probe.fps).limit_denominator(1001) if probe.fps > 0 else Fraction(25)
    fps = min(max(fps, Fraction(1)), Fraction(240))
    written, size = 0, None
    with atomic_path(target) as temp:
        with av.open(str(temp), "w", format="mp4") as out:
            stream = None
            for first in range(start, end + 1, _CHUNK):
                count = min(_CHUNK, end + 1 - first)
                chunk = load_clip(source, num_frames=count, limits=limits, frame_start=first + 1,
                                  frame_end=first + count, bbox=bbox)
                if chunk.indices != tuple(range(first, first + count)):
                    raise ClipError(f"The video {source.name} did not give back frames {first + 1}..{first + count} in order.")
                for frame in chunk.frames:
                    frame = _fit(frame, max_side, size)
                    if stream is None:
                        size = (frame.shape[1], frame.shape[0])
                        stream = out.add_stream("libx264", rate=fps, options=dict(_ENCODE_OPTIONS))
                        stream.width, stream.height = size
                        stream.pix_fmt = "yuv420p"
                    image = av.VideoFrame.from_ndarray(frame, format="rgb24")
                    image.pts, image.time_base = written, 1 / fps
                    out.mux(stream.encode(image))
                    written += 1
            if stream is not None:
                out.mux(stream.encode(None))
        if written != end - start + 1:
            raise ClipError(f"The video {source.name} gave {written} of its {end - start + 1} span frames.")
    return ClipInfo(frames=written, fps=float(fps), width=size[0], height=size[1])


def _fit(frame: np.ndarray, max_side: int, size: tuple[int, int] | None) -> np.ndarray:
    """Shrink so the long side is <= max_side, with even sides (yuv420p needs them).

    Every frame gets the first frame's size: a stream has one size, and the crop of a
    frame is always the same size within one clip anyway.
    """
    height, width = frame.shape[:2]
    if size is None:
        scale = min(1.0, max_side / max(width, height))
        size = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
    if (width, height) == size:
        return frame
    if width - size[0] in (0, 1) and height - size[1] in (0, 1):
        return np.ascontiguousarray(frame[: size[1], : size[0]])  # odd side: drop a pixel, no resampling
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def cache_key(source: Path, *, frame_start: int, frame_end: int, bbox: Sequence[int] | None, max_side: int) -> str:
    stat = source.stat()
    identity = {"source": str(source.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "frame_start": frame_start, "frame_end": frame_end,
                "bbox": list(bbox) if bbox is not None else None, "max_side": max_side, "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def cached_clip(
    cache_dir: Path,
    source: Path,
    *,
    frame_start: int = 1,
    frame_end: int = -1,
    bbox: Sequence[int] | None = None,
    max_side: int = 448,
) -> tuple[Path, ClipInfo, bool]:
    """The prepared clip for these parameters, from the cache or made now: (path, info, hit)."""
    key = cache_key(source, frame_start=frame_start, frame_end=frame_end, bbox=bbox, max_side=max_side)
    folder = Path(cache_dir) / key[:2]
    clip, meta = folder / f"{key}.mp4", folder / f"{key}.json"
    if clip.is_file() and meta.is_file():
        try:
            return clip, ClipInfo(**json.loads(meta.read_text())), True
        except (ValueError, TypeError):
            pass  # a damaged sidecar: make the clip again
    info = prepare_clip(source, clip, frame_start=frame_start, frame_end=frame_end, bbox=bbox, max_side=max_side)
    write_json(meta, asdict(info))
    return clip, info, False


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (free, and the cache stays the only copy) or copy across devices."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

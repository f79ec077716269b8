"""Clips in, evenly sampled RGB frames out: PyAV decoding that seeks instead of decoding all.

A sign lasts one to three seconds inside clips that are often much longer (WLASL's
sources hold whole sentences or several signs). Decoding every frame to keep eight is
the naive cost; here one cheap demux pass (packets only, no decoding) gives every
frame's timestamp and every keyframe, then each wanted frame is decoded from the
nearest keyframe at or before it, never twice, and without the frames nothing refers to
(most B-frames) on the way. Frames are bit-identical to a full decode because decoding
always starts at a keyframe and only non-reference frames are left out.

Everything a user can hand us is accepted here and turned into one `Clip`: a video file,
an image (a 1-frame clip) or the webcam's list of numpy frames. Anything unusable raises
`ClipError` with one sentence.
"""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.config import LimitsConfig
from engine.errors import ClipError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".gif", ".y4m", ".swf"}


@dataclass(frozen=True)
class Clip:
    """The frames the model will see, and where they came from."""

    # Sampled frames, RGB uint8 HxWx3, in time order (cropped when a bbox was given).
    frames: tuple[np.ndarray, ...]
    # 0-based index in the source of each sampled frame (for display and tests).
    indices: tuple[int, ...]
    # Frames in the source (whole file, not just the span).
    total_frames: int
    # Frames per second of the source; 0 for images.
    fps: float
    # Milliseconds spent opening, demuxing and decoding.
    decode_ms: float


def sample_indices(start: int, end: int, count: int) -> list[int]:
    """`count` indices spread evenly over [start, end] (inclusive), one per equal segment.

    Taking each segment's middle (as InternVL's own video loader does) avoids always
    showing the first and last frame, which are usually the signer at rest. When the span
    is shorter than `count`, frames repeat so the model always gets the same layout.
    """
    length = end - start + 1
    if length <= 0 or count <= 0:
        raise ValueError(f"empty span [{start}, {end}] or count {count}")
    segment = length / count
    return [start + min(int(segment * (i + 0.5)), length - 1) for i in range(count)]


def load_clip(
    source: str | Path | np.ndarray | Sequence[np.ndarray],
    *,
    num_frames: int,
    limits: LimitsConfig,
    frame_start: int = 1,
    frame_end: int = -1,
    start_s: float | None = None,
    end_s: float | None = None,
    bbox: Sequence[int] | None = None,
) -> Clip:
    """Sample `num_frames` frames from a file path, an image, or an array of frames.

    The sign's span is given in frames, as in WLASL's metadata (`frame_start` 1-based,
    `frame_end` -1 for "to the end"), or in seconds as people trim (`start_s`, `end_s`;
    None or 0 for the whole clip). Seconds are matched against the frames' own
    timestamps, found while indexing the file, so variable frame rates and files that
    declare no rate trim right. Images ignore trimming. `bbox` is [x1, y1, x2, y2] in
    source pixels; frames are cropped to a square around it so the tile the model sees
    is not stretched.
    """
    started = time.perf_counter()
    if frame_start < 1 or (frame_end != -1 and frame_end < frame_start):
        raise ClipError(f"The sign span {frame_start}..{frame_end} is invalid: frame_start is 1-based and frame_end is -1 or not before it.")
    seconds = _trim_seconds(start_s, end_s)
    if seconds is not None and (frame_start, frame_end) != (1, -1):
        raise ClipError("Give the sign's span in frames or in seconds, not both.")
    if isinstance(source, (str, Path)):
        path = Path(source)
        _check_file(path, limits)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            frames, indices, total, fps = _load_image(path, limits), [0], 1, 0.0
        else:
            frames, indices, total, fps = _decode_video(path, num_frames, frame_start, frame_end, seconds, limits)
    else:
        array_frames = _as_frames(source, limits)
        total = len(array_frames)
        indices = sample_indices(*_span(frame_start, frame_end, total), num_frames)
        frames, fps = [array_frames[i] for i in indices], 0.0
    if bbox is not None:
        frames = [crop_square(frame, bbox) for frame in frames]
    return Clip(tuple(frames), tuple(indices), total, float(fps), (time.perf_counter() - started) * 1000)


def crop_square(frame: np.ndarray, bbox: Sequence[int]) -> np.ndarray:
    """Crop to the smallest square holding `bbox`, centred on it, clamped to the frame."""
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in bbox)
    x1, x2 = sorted((max(0, min(x1, width)), max(0, min(x2, width))))
    y1, y2 = sorted((max(0, min(y1, height)), max(0, min(y2, height))))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return frame  # a degenerate box says nothing about where the signer is
    side = min(max(x2 - x1, y2 - y1), width, height)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    left = min(max(0, cx - side // 2), width - side)
    top = min(max(0, cy - side // 2), height - side)
    return np.ascontiguousarray(frame[top : top + side, left : left + side])


def _check_file(path: Path, limits: LimitsConfig) -> None:
    if not path.is_file():
        raise ClipError(f"The file {path.name} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise ClipError(f"The file {path.name} is empty.")
    if size > limits.max_file_mb * 1024 * 1024:
        raise ClipError(f"The file {path.name} is {size / 2**20:.0f} MB; the limit is {limits.max_file_mb:.0f} MB.")


def _trim_seconds(start_s: float | None, end_s: float | None) -> tuple[float, float] | None:
    """(start, end) in seconds with end 0 for "to the end", or None for no trim; bad values get a sentence."""
    values = []
    for name, value in (("start", start_s), ("end", end_s)):
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str, type(None))):
                raise TypeError  # a list, an object, True: not a time
            number = float(value) if value not in (None, "") else 0.0  # empty: from the start / to the end
        except (TypeError, ValueError):
            raise ClipError(f"The trim {name} must be a number of seconds, not {str(value)[:40]!r}.") from None
        if not math.isfinite(number) or number < 0:
            raise ClipError(f"The trim {name} must be zero or a positive number of seconds, not {value}.")
        values.append(number)
    start, end = values
    if end and end <= start:
        raise ClipError(f"The trim end ({end:g} s) must come after its start ({start:g} s).")
    return (start, end) if (start or end) else None


def _seconds_span(frame_pts: list[int], time_base: float, seconds: tuple[float, float], path: Path) -> tuple[int, int]:
    """The 1-based frame span of the frames shown from `start` up to (not including) `end` seconds."""
    start, end = seconds
    times = [(pts - frame_pts[0]) * time_base for pts in frame_pts]
    # A frame counts from the moment it is shown; half a millisecond absorbs rounding.
    first = bisect.bisect_left(times, start - 5e-4)
    if first >= len(times):
        length = times[-1] * len(times) / max(1, len(times) - 1)  # the last frame is shown for one interval too
        raise ClipError(f"The trim starts at {start:g} s, but {path.name} is only {length:.1f} s long.")
    last = bisect.bisect_left(times, end - 5e-4) - 1 if end else len(times) - 1
    return first + 1, max(first, last) + 1


def _span(frame_start: int, frame_end: int, total: int) -> tuple[int, int]:
    start = frame_start - 1
    end = total - 1 if frame_end == -1 else min(frame_end - 1, total - 1)
    if start > end:
        raise ClipError(f"The sign starts at frame {frame_start} but the clip has only {total} frames.")
    return start, end


def _load_image(path: Path, limits: LimitsConfig) -> list[np.ndarray]:
    try:
        with Image.open(path) as image:
            _check_resolution(image.width, image.height, path.name, limits)
            return [np.asarray(image.convert("RGB"))]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise ClipError(f"The file {path.name} is not an image we can read.") from None


def _as_frames(source: np.ndarray | Sequence[np.ndarray], limits: LimitsConfig) -> list[np.ndarray]:
    frames = list(source) if source is not None else []
    if not frames:
        raise ClipError("No frames were received: the camera sent nothing.")
    out = []
    for frame in frames:
        array = None if frame is None else np.asarray(frame)
        if array is None or array.ndim != 3 or array.shape[2] not in (3, 4) or array.size == 0:
            raise ClipError("A camera frame was empty or not an RGB image.")
        _check_resolution(array.shape[1], array.shape[0], "The camera frame", limits)
        out.append(np.ascontiguousarray(array[..., :3].astype(np.uint8, copy=False)))
    return out


def _check_resolution(width: int, height: int, name: str, limits: LimitsConfig) -> None:
    if max(width, height) > limits.max_resolution:
        raise ClipError(f"{name} is {width}x{height}; the largest side may be {limits.max_resolution} pixels.")


def _decode_video(path: Path, num_frames: int, frame_start: int, frame_end: int,
                  seconds: tuple[float, float] | None, limits: LimitsConfig):
    try:
        # Tags are only read, never needed: some real files carry non-UTF-8 ones
        # (a WLASL clip's title), which must not make the video unreadable.
        container = av.open(str(path), metadata_errors="replace")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError):
        raise ClipError(f"The file {path.name} is not a video we can read.") from None
    with container:
        if not container.streams.video:
            raise ClipError(f"The file {path.name} has no video track.")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a format FFmpeg can name but not decode (an SVG, say)
            raise ClipError(f"The file {path.name} is not a video we can read.")
        _check_resolution(stream.codec_context.width, stream.codec_context.height, f"The video {path.name}", limits)
        if container.duration and container.duration / av.time_base > limits.max_clip_seconds:
            raise ClipError(_too_long(path, container.duration / av.time_base, limits))
        frame_pts, keyframes, keyframe_dts, packets = _index_packets(container, stream, path, limits)
        fps = float(stream.average_rate or stream.guessed_rate or 0) or _fps_from_pts(frame_pts, stream)
        _check_complete(container, stream, frame_pts, packets, fps, path)
        if seconds is not None:
            frame_start, frame_end = _seconds_span(frame_pts, float(stream.time_base), seconds, path)
        indices = sample_indices(*_span(frame_start, frame_end, len(frame_pts)), num_frames)
        targets = [frame_pts[i] for i in sorted(set(indices))]
        decoded = _decode_at(container, stream, path, frame_pts, targets, keyframes, keyframe_dts)
        frames = [decoded[frame_pts[i]] for i in indices]
    return frames, indices, len(frame_pts), fps


def _index_packets(container, stream, path: Path, limits: LimitsConfig) -> tuple[list[int], list[int], dict[int, int], int]:
    """Every shown frame's pts in presentation order, the keyframes' pts and dts, and the packet count; no decoding.

    An MP4 edit list can end the presentation before the stream does: the packets past
    it are in the file (and in the header's frame count) but flagged discard, and the
    decoder never outputs them. Many real WLASL files are like that (41 frames declared,
    38 shown), so only shown frames are sampled, while a discarded keyframe still serves
    as a place to start decoding from.
    """
    frame_pts, keyframes, keyframe_dts = [], [], {}
    first_dts, packets = None, 0
    # Plain floats: Fraction arithmetic per packet was a fifth of the sampling time.
    time_base = float(stream.time_base)
    try:
        for packet in container.demux(stream):
            pts = packet.pts
            if pts is None:
                continue  # the flush packet at the end, or a container without timestamps
            dts = pts if packet.dts is None else packet.dts
            first_dts = dts if first_dts is None else min(first_dts, dts)
            packets += 1
            if packet.is_keyframe:
                keyframes.append(pts)
                keyframe_dts[pts] = dts
            if packet.is_discard:
                continue
            frame_pts.append(pts)
            seconds = (pts - frame_pts[0]) * time_base
            if seconds > limits.max_clip_seconds:
                raise ClipError(_too_long(path, seconds, limits, at_least=True))
    except av.error.FFmpegError:
        raise ClipError(f"The video {path.name} is damaged: its data could not be read.") from None
    if not frame_pts:
        raise ClipError(f"The video {path.name} contains no frames.")
    frame_pts.sort()
    keyframes.sort()
    if not keyframes or keyframes[0] > frame_pts[0]:
        keyframes.insert(0, frame_pts[0])  # decoding from the start is always possible
        keyframe_dts[frame_pts[0]] = first_dts
    return frame_pts, keyframes, keyframe_dts, packets


def _check_complete(container, stream, frame_pts: list[int], packets: int, fps: float, path: Path) -> None:
    """A file cut short (an interrupted download) still demuxes; its header tells.

    Sampling the part that is there would silently show the model half a sign. The
    header counts discarded packets too, so they are compared with all packets.
    """
    declared_frames = stream.frames
    if declared_frames and packets < declared_frames:
        raise ClipError(f"The video {path.name} is cut short: it holds {packets} of its {declared_frames} frames.")
    if container.duration and fps:
        declared = container.duration / av.time_base
        present = float((frame_pts[-1] - frame_pts[0]) * stream.time_base) + 1 / fps
        if declared - present > max(0.5, 3 / fps):
            raise ClipError(f"The video {path.name} is cut short: it declares {declared:.1f} s but holds {present:.1f} s.")


# Seeking costs about as much as decoding ~10 frames (demuxer reset, decoder flush and
# B-frame pipeline refill, measured with benchmarks/bench_sampling.py); a seek that
# skips fewer frames than this is slower than decoding on.
SEEK_MIN_SKIP = 12


def _decode_at(
    container, stream, path: Path, frame_pts: list[int], targets: list[int], keyframes: list[int], keyframe_dts: dict[int, int]
) -> dict[int, np.ndarray]:
    """Decode the frames with these pts, seeking to a keyframe only when it skips work."""
    found: dict[int, np.ndarray] = {}
    wanted = set(targets)
    frames = None
    position = -1  # index (in frame_pts) of the last frame the current decoder produced
    for target in targets:
        keyframe = keyframes[bisect.bisect_right(keyframes, target) - 1]
        skipped = bisect.bisect_left(frame_pts, keyframe) - position - 1
        if frames is None or skipped > SEEK_MIN_SKIP:
            frames = _decode_from(container, stream, keyframe, keyframe_dts, skip_unless=wanted)
        position = _decode_until(frames, target, frame_pts, found)
        if target not in found:
            # Packet timestamps that differ from their frame's (some AVI files) can make
            # skipping drop the very frame wanted: decode everything from the keyframe.
            frames = _decode_from(container, stream, keyframe, keyframe_dts, skip_unless=None)
            position = _decode_until(frames, target, frame_pts, found)
        if target not in found:
            raise ClipError(f"The video {path.name} is damaged or cut short: only {len(found)} of {len(targets)} sampled frames could be decoded.")
    return found


def _decode_from(container, stream, keyframe: int, keyframe_dts: dict[int, int], skip_unless: set[int] | None):
    """Frames from the keyframe with pts `keyframe` (or an earlier one), skipping what nobody needs.

    Reaching a frame means decoding from its keyframe, but frames no other frame refers
    to (most B-frames) can be dropped on the way unless their pts is in `skip_unless`;
    what is decoded stays bit-identical.
    """
    codec = stream.codec_context
    for packet in _demux_from(container, stream, keyframe, keyframe_dts):
        skip = skip_unless is not None and packet.pts is not None and packet.pts not in skip_unless
        codec.skip_frame = "NONREF" if skip else "DEFAULT"
        yield from codec.decode(packet)


def _demux_from(container, stream, keyframe: int, keyframe_dts: dict[int, int]):
    """Packets from the keyframe with pts `keyframe`, or from an earlier point.

    Demuxers differ in what they seek by: MP4 by presentation time, AVI by decode time,
    where seeking to a keyframe's pts can land on a later keyframe whose dts is already
    past it (B-frames, keyframes a few frames apart). A landing after the keyframe is
    retried at its dts, then at the start of the file.
    """
    for timestamp in (keyframe, keyframe_dts[keyframe], keyframe_dts[min(keyframe_dts)]):
        container.seek(timestamp, stream=stream, backward=True, any_frame=False)
        packets = container.demux(stream)
        first = next(packets, None)
        if first is None or first.pts is None or first.pts <= keyframe:
            break
    if first is not None:
        yield first
        yield from packets


def _decode_until(frames, target: int, frame_pts: list[int], found: dict[int, np.ndarray]) -> int:
    """Decode on until `target` (stored in `found`) or past it; returns where decoding stopped."""
    position = -1
    try:
        for frame in frames:
            if frame.pts is None:
                continue
            position = bisect.bisect_left(frame_pts, frame.pts)
            if frame.pts == target:
                found[target] = frame.to_ndarray(format="rgb24")
                break
            if frame.pts > target:
                break
    except av.error.FFmpegError:
        pass  # the caller reports the missing frame
    return position


def _fps_from_pts(frame_pts: list[int], stream) -> float:
    if len(frame_pts) < 2:
        return 0.0
    return float((len(frame_pts) - 1) / ((frame_pts[-1] - frame_pts[0]) * stream.time_base))


def _too_long(path: Path, seconds: float, limits: LimitsConfig, at_least: bool = False) -> str:
    length = f"over {limits.max_clip_seconds:.0f} s" if at_least else f"{seconds:.0f} s"
    return f"The video {path.name} is {length} long; clips may be at most {limits.max_clip_seconds:.0f} s."

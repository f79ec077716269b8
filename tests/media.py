"""Real media files for tests, written with PyAV: frames that carry their own index.

Each frame shows its index as 10 black/white bars (bit 9 on the left), large enough
to survive lossy compression, so a test can read back exactly which source frame the
engine sampled.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

BITS = 10


def index_frame(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    bar = width // BITS
    for bit in range(BITS):
        if index >> (BITS - 1 - bit) & 1:
            frame[:, bit * bar : (bit + 1) * bar] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    width = frame.shape[1]
    bar = width // BITS
    value = 0
    for bit in range(BITS):
        column = frame[:, bit * bar + bar // 4 : (bit + 1) * bar - bar // 4]
        value = value << 1 | int(column.mean() > 127)
    return value


def write_video(
    path: Path,
    frames: list[np.ndarray] | int,
    *,
    fps: int = 30,
    codec: str = "libx264",
    gop: int = 30,
    width: int = 64,
    height: int = 48,
) -> Path:
    """Encode frames (or `frames` index frames) into `path`; the container follows the suffix."""
    if isinstance(frames, int):
        frames = [index_frame(i, width, height) for i in range(frames)]
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "10", "preset": "ultrafast", "bf": "0"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

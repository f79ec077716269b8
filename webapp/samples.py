"""Generated example clips: a cartoon signer who rests, moves a hand, and rests again.

These are *not* sign language: they are synthetic clips with the still–move–still
rhythm of one sign, for the Upload tab's examples, the Live tab's fake-webcam test and
the benchmarks. The dominant (right) hand moves on the image's left, as a camera (not a
mirror) shows a right-handed signer. Regenerate the shipped ones with

    .venv/bin/python -m webapp.samples assets/samples
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np

SKIN = (224, 172, 140)
SHIRT = (40, 60, 110)
BACKGROUND = (150, 160, 150)


def signer_frames(
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 10,
    still_s: float = 1.0,
    move_s: float = 1.2,
    path: str = "circle",
    noise: int = 4,
    seed: int = 0,
) -> list[np.ndarray]:
    """Frames of rest (`still_s`), one movement of the right hand (`move_s`), rest again.

    `path` is "circle" (the hand circles in front of the chest) or "wave" (side to side
    at head height). `noise` adds camera-like per-frame noise (gray levels) so motion
    detection sees what a real camera gives it.
    """
    rng = np.random.default_rng(seed)
    scene = _scene(width, height)
    rest = np.array([0.32 * width, 0.92 * height])  # the right hand at rest, low on the image's left
    still, moving = round(still_s * fps), round(move_s * fps)
    positions = [rest] * still
    for i in range(moving):
        phase = (i + 1) / moving
        if path == "circle":
            centre, radius = np.array([0.36 * width, 0.55 * height]), 0.13 * height
            angle = 2 * np.pi * phase
            target = centre + radius * np.array([np.cos(angle), np.sin(angle)])
        else:
            target = np.array([(0.22 + 0.2 * np.sin(2 * np.pi * phase)) * width, 0.3 * height])
        # ease in from and out to the rest position
        blend = min(1.0, 3 * phase, 3 * (1 - phase))
        positions.append(rest * (1 - blend) + target * blend)
    positions += [rest] * still
    frames = []
    for x, y in positions:
        frame = scene.copy()
        _limb(frame, (0.3 * width, 0.5 * height), (x, y), 0.05 * height, SHIRT)  # right arm
        _disk(frame, x, y, 0.08 * height, SKIN)  # right hand
        _disk(frame, 0.68 * width, 0.92 * height, 0.08 * height, SKIN)  # left hand, at rest
        if noise:
            shaken = frame.astype(np.int16)
            shaken += rng.integers(-noise, noise + 1, frame.shape, dtype=np.int16)
            frame = np.clip(shaken, 0, 255, out=shaken).astype(np.uint8)
        frames.append(frame)
    return frames


def _scene(width: int, height: int) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    frame[int(0.45 * height) :, int(0.3 * width) : int(0.7 * width)] = SHIRT  # torso
    _disk(frame, 0.5 * width, 0.27 * height, 0.13 * height, SKIN)  # head
    return frame


def _limb(frame: np.ndarray, start: tuple[float, float], end: tuple[float, float], radius: float, colour: tuple[int, int, int]) -> None:
    """A thick segment from `start` to `end` (x, y), drawn inside its bounding box only."""
    (x1, y1), (x2, y2) = start, end
    box, ys, xs = _box(frame, min(x1, x2) - radius, min(y1, y2) - radius, max(x1, x2) + radius, max(y1, y2) + radius)
    dx, dy = x2 - x1, y2 - y1
    t = np.clip(((xs - x1) * dx + (ys - y1) * dy) / max(dx * dx + dy * dy, 1e-6), 0, 1)
    box[(xs - x1 - t * dx) ** 2 + (ys - y1 - t * dy) ** 2 <= radius**2] = colour


def _disk(frame: np.ndarray, x: float, y: float, radius: float, colour: tuple[int, int, int]) -> None:
    box, ys, xs = _box(frame, x - radius, y - radius, x + radius, y + radius)
    box[(xs - x) ** 2 + (ys - y) ** 2 <= radius**2] = colour


def _box(frame: np.ndarray, left: float, top: float, right: float, bottom: float):
    """A view of the frame's pixels in a box, with their row and column coordinates."""
    height, width = frame.shape[:2]
    x0, y0 = max(0, int(left)), max(0, int(top))
    x1, y1 = min(width, int(right) + 2), min(height, int(bottom) + 2)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    return frame[y0:y1, x0:x1], ys.astype(np.float32), xs.astype(np.float32)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Encode with PyAV: H.264 for .mp4/.mov/.avi (mpeg4 for .avi), VP9 for .webm.

    yuv420p needs even sides, and a webcam may send odd ones: an odd last row or column
    is dropped rather than failing the encoder.
    """
    path = Path(path)
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(path.suffix.lower(), "libx264")
    height, width = (side // 2 * 2 for side in frames[0].shape[:2])
    frames = [np.ascontiguousarray(frame[:height, :width]) for frame in frames]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "23", "preset": "veryfast"}
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Raw YUV 4:2:0 in a Y4M file: what Chromium's `--use-file-for-fake-video-capture` plays."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            rgb = frame.astype(np.float32)
            y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
            u = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
            v = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]
            handle.write(b"FRAME\n")
            handle.write(np.clip(y, 0, 255).astype(np.uint8).tobytes())
            for plane in (u, v):
                half = plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
                handle.write(np.clip(half, 0, 255).astype(np.uint8).tobytes())
    return Path(path)


def write_samples(folder: Path) -> list[Path]:
    """The Upload tab's examples (all generated, and named so)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    circle = signer_frames(path="circle", seed=1)
    wave = signer_frames(path="wave", seed=2)
    written = [
        write_video(folder / "generated-circle.mp4", circle),
        write_video(folder / "generated-wave.webm", wave),
    ]
    from PIL import Image

    image = folder / "generated-hand-up.png"
    Image.fromarray(wave[len(wave) // 2]).save(image)
    return written + [image]


if __name__ == "__main__":
    for written in write_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "assets/samples")):
        print(written, written.stat().st_size, "bytes")

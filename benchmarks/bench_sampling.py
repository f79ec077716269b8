"""Frame sampling: ours (demux index + seek to keyframes) vs decode-all vs the keyframe bound.

Clips are 640x480, 30 fps, H.264 with B-frames, 3 s and 20 s long, made here with PyAV.
Two kinds of picture:

- camera: a signer (head, body, two moving hands) in front of a smooth background, with
  camera sensor noise. Keyframes come out ~28x the size of other frames, as in webcam
  and WLASL footage.
- noise: a scrolling texture of random pixels, the worst case for seeking: every
  keyframe is incompressible (~75x the other frames), so decoding keyframes dominates.

Two keyframe intervals: 1 s (phones, webcams and streaming encoders) and x264's default
250 frames (8.3 s).

- decode-all: decode every frame, keep and convert only the sampled ones to RGB.
- ours: engine.video.load_clip.
- keyframe bound: seek to each distinct keyframe that precedes a sampled frame and decode
  that keyframe only; any method must at least do this (it cannot start decoding elsewhere).
Frames from ours are checked bit-identical to decode-all's before timing.

    .venv/bin/python benchmarks/bench_sampling.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.config import LimitsConfig  # noqa: E402
from engine.video import load_clip, sample_indices  # noqa: E402


def make_clip(path: Path, seconds: int, gop: int, picture: str) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    draw = camera_frames() if picture == "camera" else noise_frames()
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.options = {"g": str(gop), "bf": "2", "preset": "veryfast", "crf": "23"}
        for i in range(seconds * 30):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(draw(i), format="rgb24")))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def camera_frames():
    """A signer in front of a smooth wall, hands circling, with sensor noise."""
    rng = np.random.default_rng(0)
    wall = np.asarray(Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.BILINEAR), np.float32)
    yy, xx = np.mgrid[0:480, 0:640]

    def ellipse(cx, cy, rx, ry):
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1

    still = wall.copy()
    still[ellipse(320, 330, 90, 150)] = (40, 40, 90)
    still[ellipse(320, 150, 45, 55)] = (200, 160, 130)

    def draw(i: int) -> np.ndarray:
        frame = still.copy()
        for side in (-1, 1):
            angle = side * i / 30 * 2 * np.pi * 0.7
            frame[ellipse(320 + side * 120 + 60 * np.cos(angle), 260 + 70 * np.sin(angle), 30, 35)] = (210, 170, 140)
        return np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)

    return draw


def noise_frames():
    """Random pixels scrolling sideways, a moving block on top: incompressible keyframes."""
    texture = np.random.default_rng(0).integers(0, 255, (480, 1280, 3), dtype=np.uint8)

    def draw(i: int) -> np.ndarray:
        frame = np.roll(texture, -4 * i, axis=1)[:, :640].copy()
        frame[200:280, (i * 7) % 560 : (i * 7) % 560 + 80] = (255, 64, 0)
        return frame

    return draw


def decode_all(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        wanted = sample_indices(0, container.streams.video[0].frames - 1, count)
        kept = {}
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                kept[index] = frame.to_ndarray(format="rgb24")
    return [kept[i] for i in wanted]


def keyframe_bound(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
        pts = sorted(p for p, _ in packets)
        keys = sorted(p for p, k in packets if k)
        needed = sorted({max(k for k in keys if k <= pts[i]) for i in sample_indices(0, len(pts) - 1, count)})
        out = []
        for key in needed:
            container.seek(key, stream=stream, backward=True, any_frame=False)
            out.append(next(container.decode(stream)).to_ndarray(format="rgb24"))
        return out


def interleaved_medians_ms(functions: list, repeats: int) -> list[float]:
    """CPU time of each function, run in turns so that all see the same machine load.

    Process CPU time, not wall time: the machines this runs on are shared, and CPU time
    counts the work a method does rather than how long it waited for a core.
    """
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            started = time.process_time()
            function()
            times[index].append((time.process_time() - started) * 1000)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    limits = LimitsConfig()
    cache = ROOT / ".cache" / "bench-media"
    print("| picture | clip | keyframe every | frames | decode-all CPU ms | ours CPU ms | keyframe bound CPU ms | decode-all / ours | ours / bound |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [("camera", gop, seconds) for gop in (30, 250) for seconds in (3, 20)] + [("noise", 30, 20)]
    for picture, gop, seconds in cases:
        path = make_clip(cache / f"{picture}_{seconds}s_g{gop}.mp4", seconds, gop, picture)
        for count in (8, 16):
            ours = load_clip(path, num_frames=count, limits=limits)
            assert all(np.array_equal(a, b) for a, b in zip(ours.frames, decode_all(path, count))), "frames differ"
            naive, fast, bound = interleaved_medians_ms(
                [lambda: decode_all(path, count), lambda: load_clip(path, num_frames=count, limits=limits),
                 lambda: keyframe_bound(path, count)],
                args.repeats,
            )
            print(f"| {picture} | {seconds} s | {gop / 30:.1f} s | {count} | {naive:.0f} | {fast:.0f} | {bound:.0f} | {naive / fast:.1f}x | {fast / bound:.1f}x |", flush=True)
    print(f"\nmedians of {args.repeats} interleaved runs (process CPU time); frames of ours checked bit-identical to decode-all")


if __name__ == "__main__":
    main()

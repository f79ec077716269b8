"""Live segmentation on real signing: are the signs the Live tab cuts the signs that were signed?

The Live tab's segmenter (`engine.segmentation.Segmenter` with `assets/config/live.yml`)
is fed real recordings the way the browser feeds it:

- frames at the browser's rate (`--fps`, the Live tab's `stream_every`), each the video
  frame showing at that moment, with its time as the frame's clock;
- each frame goes through the browser's JPEG (quality 0.92) and gets camera sensor noise
  (+-6 gray levels); mirroring is left out, since the browser mirrors and `on_frame`
  flips back before the segmenter;
- at the clip's own size (a camera giving 480x320 or 640x480 is alike to the segmenter,
  which shrinks every frame to ~80 px wide).

Two measures:

- continuous: one signer signs dictionary signs back to back; a detected segment
  matches the annotated sign holding its midpoint, each sign at most once. Precision,
  recall and F1 of detected signs.
- isolated: every clip holds one sign. A Live user holds still between signs, so each
  clip is framed by `--rest` seconds of its own first and last frame (still, noisy);
  the share of clips that give exactly one segment. The camera stopping at the end
  flushes a sign still in progress, as the Live tab does.

    .venv/bin/python benchmarks/bench_segmentation.py [--fps 10] [--config assets/config/live.yml]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.segmentation import DEFAULT_LIVE_CONFIG, Segmenter, load_live_config  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real_clips"


def decode(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path), metadata_errors="replace") as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate)


def as_browser_sends(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera noise, then the browser's JPEG round trip."""
    noisy = frame.astype(np.int16) + rng.integers(-6, 7, frame.shape, dtype=np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
    return np.asarray(Image.open(buffer).convert("RGB"))


def at_rate(frames: list[np.ndarray], source_fps: float, fps: float, rest: float = 0.0) -> list[tuple[float, int]]:
    """(time, source index) of the frames the browser sends, with `rest` s held before and after."""
    duration = len(frames) / source_fps
    times = np.arange(0, duration + 2 * rest, 1 / fps)
    return [(t, int(np.clip((t - rest) * source_fps, 0, len(frames) - 1))) for t in times]


def segment(config, frames: list[np.ndarray], timeline: list[tuple[float, int]], seed: int = 0) -> list[tuple[float, float]]:
    """(first, last) source frame time of every segment the Live segmenter closes."""
    segmenter, rng = Segmenter(config), np.random.default_rng(seed)
    source_time: dict[int, float] = {}
    found = []

    def span(segment_frames) -> tuple[float, float]:
        return source_time[id(segment_frames[0])], source_time[id(segment_frames[-1])]

    sent = []  # keeps the frames alive, so their ids stay theirs
    for t, index in timeline:
        frame = as_browser_sends(frames[index], rng)
        sent.append(frame)
        source_time[id(frame)] = t
        closed = segmenter.feed(frame, t)
        if closed is not None:
            found.append(span(closed))
    last = segmenter.flush()
    if last is not None:
        found.append(span(last))
    return found


def match(found: list[tuple[float, float]], signs: list[dict]) -> list[int | None]:
    """Each detected segment's sign (index in `signs`), or None: the sign holding its midpoint, once."""
    taken, matches = set(), []
    for start, end in found:
        middle = (start + end) / 2
        sign = next((i for i, s in enumerate(signs) if s["start_s"] <= middle < s["end_s"]), None)
        matches.append(None if sign is None or sign in taken else sign)
        taken.add(sign)
    return matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--continuous", type=Path, default=REAL / "continuous" / "asl5200_signer9_part1.mp4")
    parser.add_argument("--segments", type=Path, default=None, help="default: the clip's .segments.tsv")
    parser.add_argument("--isolated", type=Path, nargs="+", default=[REAL / "wlasl", REAL / "other"])
    parser.add_argument("--fps", type=float, default=10, help="frames per second the browser sends (10: stream_every 0.1)")
    parser.add_argument("--rest", type=float, default=1.0, help="seconds of stillness around each isolated clip")
    parser.add_argument("--config", type=Path, default=DEFAULT_LIVE_CONFIG, help="live.yml with the segmenter settings")
    args = parser.parse_args()
    config = load_live_config(args.config).segmenter
    segments_tsv = args.segments or args.continuous.with_name(args.continuous.stem + ".segments.tsv")

    # ---------------------------------------------------------------- continuous signing
    with open(segments_tsv, newline="", encoding="utf-8") as handle:
        signs = [{**row, "start_s": float(row["start_s"]), "end_s": float(row["end_s"])} for row in csv.DictReader(handle, delimiter="\t")]
    frames, source_fps = decode(args.continuous)
    found = segment(config, frames, at_rate(frames, source_fps, args.fps))
    matches = match(found, signs)
    hits = sum(m is not None for m in matches)
    extra = len(found) - hits
    precision, recall = hits / max(1, len(found)), hits / len(signs)
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    matched = {m: found[i] for i, m in enumerate(matches) if m is not None}
    print(f"{args.continuous.name}: {len(signs)} signs, {len(frames)} frames at {source_fps:g} fps, fed at {args.fps:g} fps")
    print("| sign | annotated s | detected s |")
    print("| --- | --- | --- |")
    for i, sign in enumerate(signs):
        seen = matched.get(i)
        print(f"| {sign['gloss']} | {sign['start_s']:.2f}-{sign['end_s']:.2f} | {f'{seen[0]:.2f}-{seen[1]:.2f}' if seen else 'missed'} |")
    for (start, end), m in zip(found, matches):
        if m is None:
            print(f"| (extra) | | {start:.2f}-{end:.2f} |")

    # ---------------------------------------------------------------- isolated signs
    counts: dict[int, list[str]] = {}
    clips = sorted(path for folder in args.isolated for path in folder.glob("*/*.mp4"))
    for path in clips:
        clip_frames, clip_fps = decode(path)
        n = len(segment(config, clip_frames, at_rate(clip_frames, clip_fps, args.fps, rest=args.rest)))
        counts.setdefault(n, []).append(f"{path.parent.name}/{path.name}")
    one = len(counts.get(1, [])) / max(1, len(clips))
    print()
    print("| segments per isolated clip | clips | e.g. |")
    print("| ---: | ---: | --- |")
    for n in sorted(counts):
        print(f"| {n} | {len(counts[n])} | {', '.join(counts[n][:3])} |")
    print(f"continuous: precision {precision:.2f} recall {recall:.2f}")
    print(f"segmentation: F1 {f1:.2f} (found {hits} of {len(signs)}, {extra} extra) one-segment {100 * one:.1f}% of {len(clips)} clips")


if __name__ == "__main__":
    main()

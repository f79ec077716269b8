"""Live: the wait from the end of a sign to its result, with and without early encoding.

`live.encode_early` runs the vision tower on a sign's frames while it is being signed,
so that when the sign ends only the language model is left (issue 11, part 5). Side by
side, same frames, same model: a synthetic signer (still, one movement, still, repeated)
is fed to a `LiveRecognizer` at the webcam's pace (10 fps, real time, so the worker has
the time a real signer gives it), and each sign's `latency_ms` (the segmenter closing
the sign to the result landing) is collected. Medians over `--signs` signs per variant.

    .venv/bin/python benchmarks/bench_early_vision.py [--signs 8] [--model /path/to/model]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FPS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signs", type=int, default=8, help="signs per variant (each ~2.2 s of webcam)")
    parser.add_argument("--model", default=None, help="model folder (default: the tests' tiny model)")
    parser.add_argument("--profile", default="quality", help="input profile (quality, fast, ...)")
    parser.add_argument("--quantization", default="none", help="none, 8bit (CPU int8)")
    args = parser.parse_args()

    from conftest import tiny_config, tiny_model_folder
    from engine import Engine
    from engine.live import LiveRecognizer
    from engine.segmentation import LiveConfig
    from webapp.samples import signer_frames

    folder = Path(args.model) if args.model else tiny_model_folder()
    engine = Engine(tiny_config(folder, video={"profile": args.profile},
                                model={"quantization": args.quantization})).start()
    sign = signer_frames(width=640, height=480, still_s=1.0, move_s=1.2, noise=6)
    engine.recognize(sign[::4])  # warm-up: first-call costs belong to neither variant

    rows = []
    for name, early in (("at the end (encode_early: false)", False), ("early (encode_early: true)", True)):
        live = LiveRecognizer(engine, LiveConfig(encode_early=early))
        due = start = time.perf_counter()
        frame_index = 0
        while len(live.transcript) + live.pending < args.signs:
            live.feed(sign[frame_index % len(sign)], time.perf_counter() - start)
            frame_index += 1
            due += 1 / FPS
            time.sleep(max(0.0, due - time.perf_counter()))
        deadline = time.monotonic() + 120
        while live.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        entries = live.transcript[: args.signs]
        live.close()
        rows.append((name, [e.latency_ms for e in entries], [e.timings.model_ms for e in entries], [e.gloss for e in entries]))

    status = engine.status()
    print(f"model: {status.model_id}; profile {status.profile} ({status.frames_per_clip} frames, {status.tile_px} px); "
          f"{sys.platform}, {__import__('os').cpu_count()} cores; {args.signs} signs per variant at {FPS} fps")
    print("| vision tower runs | median end-of-sign to result, ms | min ms | max ms | median model ms | vs at the end |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base = statistics.median(rows[0][1])
    for name, latencies, model_ms, _ in rows:
        median = statistics.median(latencies)
        print(f"| {name} | {median:.1f} | {min(latencies):.1f} | {max(latencies):.1f} | {statistics.median(model_ms):.1f} | {median / base:.2f}x |")
    print(f"same glosses in both variants: {rows[0][3] == rows[1][3]}")
    engine.close()


if __name__ == "__main__":
    main()

"""Live tab: server-side cost of one webcam frame, while recognitions run in the background.

The stream handler of the Live tab (`webapp/live.py: on_frame`, taken from the built app)
gets 640x480 RGB frames of a synthetic signer (still, one movement, still, repeated) as a
browser would send them (mirrored). Meanwhile the model is kept busy: each finished
sign goes to the session's worker, and another thread recognizes clips back to back (other
users). Side by side, same frames, same background load:

    lower bound   a handler that only returns "nothing changed" (gr.skip() x 9)
    ours          on_frame: un-mirror, motion segmentation, hand-off, redraw only on change
    naive         the same segmentation, but a finished sign is recognized inside the handler

"waited" counts frames whose handler ran the model. For context, Gradio's own work per
frame before the handler runs (base64 + JPEG decode of a 640x480 frame, quality 0.92 as
the browser's canvas sends it) is timed too.

    .venv/bin/python benchmarks/bench_live.py [--frames 600] [--model /path/to/model]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FPS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per variant, sent at 10 fps (300: 30 s of webcam)")
    parser.add_argument("--model", default=None, help="model folder (default: the tests' tiny model)")
    args = parser.parse_args()

    import gradio as gr
    import numpy as np
    from PIL import Image

    from conftest import tiny_config, tiny_model_folder
    from engine import Engine
    from engine.segmentation import LiveConfig, Segmenter
    from training.layout import DataLayout
    from webapp.app import build_app
    from webapp.live import LiveSession
    from webapp.samples import signer_frames

    engine = Engine(tiny_config(Path(args.model) if args.model else tiny_model_folder())).start()
    config = LiveConfig()
    app = build_app(engine, layout=DataLayout.at(tempfile.mkdtemp()), live_config=config)
    on_frame = next(f.fn for f in app.fns.values() if f.api_name == "live_frame")

    sign = signer_frames(width=640, height=480, still_s=1.0, move_s=1.2, noise=6)
    camera = [np.ascontiguousarray(f[:, ::-1]) for f in sign]  # as the browser sends them: mirrored
    stream = [camera[i % len(camera)] for i in range(args.frames)]

    # Other users keep the model busy the whole time.
    stop = threading.Event()
    background_calls = [0]

    def other_users() -> None:
        while not stop.is_set():
            engine.recognize(sign[::4])
            background_calls[0] += 1

    skips = tuple(gr.skip() for _ in range(9))

    def lower_bound(session, frame):
        return skips

    def naive_handler(state, frame):
        segment = state["segmenter"].feed(frame[:, ::-1], state["clock"]())
        if segment is not None:
            state["waited"] += 1
            engine.recognize(segment)  # the frame waits for the model
        return skips

    def timed(handler, state) -> list[float]:
        """Frames at the webcam's pace (10 fps, as stream_every sends them); handler time only."""
        costs = []
        due = time.perf_counter()
        for frame in stream:
            due += 1 / FPS
            started = time.perf_counter()
            handler(state, frame)
            costs.append((time.perf_counter() - started) * 1000)
            time.sleep(max(0.0, due - time.perf_counter()))
        return costs

    worker = threading.Thread(target=other_users, daemon=True)
    worker.start()
    time.sleep(0.5)
    rows = []
    busy_before = background_calls[0]
    rows.append(("lower bound (return skips)", timed(lower_bound, None), 0))
    session = LiveSession(engine, config)
    ours = timed(on_frame, session)
    deadline = time.monotonic() + 60
    while session.recognizer.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    rows.append(("ours (on_frame)", ours, 0))
    naive_state = {"segmenter": Segmenter(config.segmenter), "clock": time.monotonic, "waited": 0}
    rows.append(("naive (recognize in handler)", timed(naive_handler, naive_state), naive_state["waited"]))
    stop.set()
    worker.join()
    signs = len(session.recognizer.transcript)

    # Gradio's own per-frame decoding, for scale.
    buffer = io.BytesIO()
    Image.fromarray(camera[15]).save(buffer, format="JPEG", quality=92)
    data_url = base64.b64encode(buffer.getvalue())
    decode = []
    for _ in range(100):
        started = time.perf_counter()
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url))).convert("RGB"))
        decode.append((time.perf_counter() - started) * 1000)

    base = statistics.median(rows[1][1])
    print(f"model: {engine.status().model_id}; {sys.platform}, {__import__('os').cpu_count()} cores")
    print(f"Live handler, {args.frames} frames of 640x480 per variant; background recognitions: {background_calls[0] - busy_before}; "
          f"signs recognized by ours: {signs}")
    print("| variant | median ms | p95 ms | max ms | frames that waited for the model | median vs ours |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, costs, waited in rows:
        median = statistics.median(costs)
        print(f"| {name} | {median:.4f} | {percentile(costs, 0.95):.3f} | {max(costs):.1f} | {waited} | {median / base:.3f}x |")
    print(f"| (Gradio: base64 + JPEG decode of one frame) | {statistics.median(decode):.3f} | {percentile(decode, 0.95):.3f} | {max(decode):.1f} | - | {statistics.median(decode) / base:.2f}x |")
    engine.close()


if __name__ == "__main__":
    main()

"""Cold start: seconds from `python app.py` to the first HTTP 200, and to "model ready".

Each variant is a fresh process (no warm imports), polled every 20 ms on 127.0.0.1:

    lower bound   a one-Markdown Gradio app: python + `import gradio` + launch
    ours          `python app.py`: the model loads in a background thread while the page is served
    naive         the same app, but the model is loaded before `launch` (the page waits for it)

The model is the tests' tiny one unless --model names another folder; with a real
model only "naive" and "ready" grow (by its load time), "first 200" does not.

    .venv/bin/python benchmarks/bench_coldstart.py [--repeats 3] [--model /models/InternVL3-2B-hf]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

LOWER_BOUND = """
import sys, gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]))
"""

NAIVE = """
import sys
from engine import load_engine
from training.layout import DataLayout
from webapp.app import build_app, serve
engine = load_engine(background=False)
serve(build_app(engine, layout=DataLayout.at()), engine, port=int(sys.argv[1]))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_200(url: str, started: float, timeout: float = 300) -> float:
    while time.perf_counter() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def model_ready(url: str, started: float, timeout: float = 300) -> float:
    """Poll /model_info (Gradio's call API) until the state is "ready"."""
    while time.perf_counter() - started < timeout:
        request = urllib.request.Request(f"{url}/gradio_api/call/model_info", data=b'{"data": []}', headers={"Content-Type": "application/json"})
        event_id = json.loads(urllib.request.urlopen(request, timeout=5).read())["event_id"]
        stream = urllib.request.urlopen(f"{url}/gradio_api/call/model_info/{event_id}", timeout=10).read().decode()
        if '"state": "ready"' in stream:
            return time.perf_counter() - started
        if '"state": "failed"' in stream:
            raise RuntimeError(stream)
        time.sleep(0.05)
    raise TimeoutError(url)


def run(argv: list[str], env: dict[str, str], with_model: bool) -> tuple[float, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen([*argv, str(port)] if argv[1] == "-c" else [*argv, "--port", str(port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = first_200(url, started)
        ready = model_ready(url, started) if with_model else page
    finally:
        process.terminate()
        process.wait(30)
    return page, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="model folder (default: the tests' tiny model)")
    args = parser.parse_args()
    if args.model:
        model = args.model
    else:
        from conftest import tiny_model_folder

        model = str(tiny_model_folder())
    env = {
        **os.environ,
        "SIGNLENS_MODEL": model,
        "SIGNLENS_DEVICE": os.environ.get("SIGNLENS_DEVICE", "cpu"),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    if not args.model:
        env.update(SIGNLENS_DTYPE="float32", SIGNLENS_QUANTIZATION="none")
    python = sys.executable
    variants = [
        ("lower bound (hello-world Gradio app)", [python, "-c", LOWER_BOUND], False),
        ("ours (python app.py, model in background)", [python, "app.py"], True),
        ("naive (model loaded before launch)", [python, "-c", NAIVE], True),
    ]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in variants}
    for _ in range(args.repeats):  # interleaved, so a busy moment hits every variant alike
        for name, argv, with_model in variants:
            results[name].append(run(argv, env, with_model))
    ours = statistics.median(p for p, _ in results[variants[1][0]])
    print(f"Cold start, median of {args.repeats}; model {Path(model).name}; {os.cpu_count()} cores")
    print("| variant | first HTTP 200 (s) | model ready (s) | first 200 vs ours |")
    print("| --- | ---: | ---: | ---: |")
    for name, _, with_model in variants:
        page = statistics.median(p for p, _ in results[name])
        ready = statistics.median(r for _, r in results[name])
        print(f"| {name} | {page:.2f} | {ready:.2f} | {page / ours:.2f}x |" if with_model else f"| {name} | {page:.2f} | - | {page / ours:.2f}x |")


if __name__ == "__main__":
    main()

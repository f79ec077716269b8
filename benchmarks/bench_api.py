"""Throughput of `/recognize` with 1, 4 and 8 concurrent gradio_client clients.

The server is `python app.py` in its own process (so clients and server do not share a
GIL) over the tests' tiny model; each client uploads the same generated 2 s clip and
asks for its top-5, again and again. The lower bound is the engine alone, in this
process, on the same clip: no HTTP, no upload, no queue.

    .venv/bin/python benchmarks/bench_api.py [--requests 12] [--clients 1 4 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12, help="requests per client")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")

    from gradio_client import Client, handle_file

    from conftest import free_port, tiny_config, tiny_model_folder
    from engine import Engine
    from webapp.samples import signer_frames, write_video

    model = tiny_model_folder()
    clip = write_video(Path(tempfile.mkdtemp()) / "sign.mp4", signer_frames(still_s=0.5, move_s=1.0))

    # Lower bound: the engine alone.
    engine = Engine(tiny_config(model)).start()
    engine.recognize(clip)
    direct = []
    for _ in range(args.requests):
        started = time.perf_counter()
        engine.recognize(clip)
        direct.append(time.perf_counter() - started)
    engine.close()

    port = free_port()
    env = {**os.environ, "SIGNLENS_MODEL": str(model), "SIGNLENS_DEVICE": "cpu", "SIGNLENS_DTYPE": "float32", "SIGNLENS_QUANTIZATION": "none"}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        probe = Client(url, verbose=False)
        while probe.predict(api_name="/model_info")["state"] != "ready":
            time.sleep(0.1)
        probe.predict(handle_file(clip), 0, 0, api_name="/recognize")  # warm-up

        rows = []
        for count in args.clients:
            clients = [Client(url, verbose=False) for _ in range(count)]
            latencies: list[float] = []
            lock = threading.Lock()

            def work(client: Client) -> None:
                for _ in range(args.requests):
                    started = time.perf_counter()
                    client.predict(handle_file(clip), 0, 0, api_name="/recognize")
                    with lock:
                        latencies.append(time.perf_counter() - started)

            threads = [threading.Thread(target=work, args=(c,)) for c in clients]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            rows.append((count, len(latencies) / wall, statistics.median(latencies), max(latencies)))
    finally:
        server.terminate()
        server.wait(30)

    direct_rate = 1 / statistics.median(direct)
    print(f"/recognize throughput, tiny model, {args.requests} requests per client, server `python app.py` (model queue: 2 at a time); {os.cpu_count()} cores")
    print("| clients | requests/s | median latency ms | max latency ms | throughput vs engine alone |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(f"| engine alone (lower bound) | {direct_rate:.1f} | {statistics.median(direct) * 1000:.0f} | {max(direct) * 1000:.0f} | 1.00x |")
    for count, rate, median, worst in rows:
        print(f"| {count} | {rate:.1f} | {median * 1000:.0f} | {worst * 1000:.0f} | {rate / direct_rate:.2f}x |")


if __name__ == "__main__":
    main()

"""Load held: 32 gradio_client clients x 10 `/recognize` calls at once, against `python app.py`.

Every client is created at the same moment with gradio_client's default settings (its
`Client()` fetches /config with a 5 s timeout: under load that fetch was what failed
before), then sends its calls back to back. The server runs the tiny model in its own
process, with the rate limit raised for the run (one machine plays 32 clients from one
address). Prints successes, failures by kind, p50/p95/max latency, and the server's RSS
before and after; the lower bound is one client alone on the same server.

    .venv/bin/python benchmarks/bench_load.py [--clients 32] [--requests 10]
"""

from __future__ import annotations

import argparse
import collections
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


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=10, help="calls per client")
    args = parser.parse_args()
    os.environ.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")

    from gradio_client import Client, handle_file

    from conftest import free_port, tiny_model_folder
    from webapp.samples import signer_frames, write_video

    model = tiny_model_folder()
    scratch = Path(tempfile.mkdtemp())
    clip = write_video(scratch / "sign.mp4", signer_frames(still_s=0.5, move_s=1.0))
    settings = scratch / "server.yml"
    settings.write_text('rate_limit: "100000/minute"\n')
    port = free_port()
    env = {**os.environ, "SIGNLENS_MODEL": str(model), "SIGNLENS_DEVICE": "cpu", "SIGNLENS_DTYPE": "float32",
           "SIGNLENS_QUANTIZATION": "none", "SIGNLENS_DATA": str(scratch / "data")}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--server-config", str(settings)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not get ready")
            time.sleep(0.2)
        alone = Client(url, verbose=False)
        alone.predict(handle_file(clip), 0, 0, api_name="/recognize")  # warm-up
        single = []
        for _ in range(args.requests):
            started = time.perf_counter()
            alone.predict(handle_file(clip), 0, 0, api_name="/recognize")
            single.append(time.perf_counter() - started)
        rss_before = rss_mb(server.pid)

        latencies: list[float] = []
        failures: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        start = threading.Barrier(args.clients)

        def user() -> None:
            start.wait()
            try:
                client = Client(url, verbose=False)  # default settings, all at once
            except Exception as exc:  # noqa: BLE001 - counted, by kind
                with lock:
                    failures[f"Client(): {type(exc).__name__}"] += args.requests
                return
            for _ in range(args.requests):
                began = time.perf_counter()
                try:
                    client.predict(handle_file(clip), 0, 0, api_name="/recognize")
                except Exception as exc:  # noqa: BLE001
                    with lock:
                        failures[f"predict: {str(exc)[:60]}"] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - began)

        threads = [threading.Thread(target=user) for _ in range(args.clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)

    total = args.clients * args.requests
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else [0.0] * 19
    print(f"{args.clients} gradio_client clients x {args.requests} /recognize calls, tiny model, server `python app.py` "
          f"({os.cpu_count()} cores)")
    print("| run | succeeded | p50 s | p95 s | max s | calls/s | server RSS MB before -> after |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| one client alone (lower bound) | {len(single)}/{args.requests} | {statistics.median(single):.2f} | "
          f"{statistics.quantiles(single, n=20, method='inclusive')[18]:.2f} | {max(single):.2f} | {len(single) / sum(single):.1f} | - |")
    print(f"| {args.clients} clients at once | {len(latencies)}/{total} | {q[9]:.2f} | {q[18]:.2f} | "
          f"{max(latencies, default=0):.2f} | {len(latencies) / wall:.1f} | {rss_before:.0f} -> {rss_after:.0f} |")
    for kind, count in failures.most_common():
        print(f"failed {count}: {kind}")
    print(f"load: {len(latencies)}/{total} succeeded")


if __name__ == "__main__":
    main()

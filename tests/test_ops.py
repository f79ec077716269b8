"""Operating the server: readiness, rate limits, request logs, the cache swept, restarts after kill -9."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import ROOT, free_port, http_get
from media import write_video


def launch(engine, tmp_path, **server):
    from training.layout import DataLayout
    from webapp.app import build_app, serve
    from webapp.settings import ServerConfig

    app = build_app(engine, layout=DataLayout.at(tmp_path / "data"), server=ServerConfig(**server))
    serve(app, engine, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    return app


def test_readiness_follows_the_model(loading_engine, tmp_path):
    engine, release = loading_engine
    app = launch(engine, tmp_path)
    url = app.local_url.rstrip("/")
    try:
        assert http_get(f"{url}/healthz") == (200, "ok")  # the process answers while the model loads
        status, body = http_get(f"{url}/readyz")
        assert status == 503 and json.loads(body)["state"] in ("idle", "loading")
        release.set()
        deadline = time.time() + 60
        while http_get(f"{url}/readyz")[0] != 200 and time.time() < deadline:
            time.sleep(0.2)
        status, body = http_get(f"{url}/readyz")
        assert status == 200 and json.loads(body)["state"] == "ready"
        assert str(ROOT) not in body and str(tmp_path) not in body
    finally:
        app.close()


def test_rate_limit_refuses_with_when_to_retry_and_logs_each_request(tiny_engine, tmp_path):
    from webapp.ops import log_handler

    stream = io.StringIO()
    handler = log_handler("json", stream)
    logger = __import__("logging").getLogger("signlens.requests")
    logger.addHandler(handler)
    logger.setLevel("INFO")
    app = launch(tiny_engine, tmp_path, rate_limit="2/minute")
    try:
        client = Client(app.local_url, verbose=False)
        clip = handle_file(str(write_video(tmp_path / "sign.mp4", 20)))
        for _ in range(2):
            assert client.predict(clip, 0, 0, api_name="/recognize")["file"] == "sign.mp4"
        with pytest.raises(AppError, match=r"^Too many requests from you \(2 per 1 minute\): try again in \d+ s\.$"):
            client.predict(clip, 0, 0, api_name="/recognize")
        assert client.predict(api_name="/model_info")["state"] == "ready"  # status is not rate-limited
        with pytest.raises(AppError, match="Too many requests"):  # a batch counts each clip
            client.predict([clip], 0, 0, api_name="/recognize_batch")
        with pytest.raises(AppError, match=r"^Send at most 16 clips in one call; this one had 17\.$"):
            client.predict([clip] * 17, 0, 0, api_name="/recognize_batch")
        metrics = http_get(f"{app.local_url.rstrip('/')}/metrics")[1]
        assert 'signlens_requests_total{endpoint="recognize",outcome="ok"} 2.0' in metrics
        assert 'signlens_requests_total{endpoint="recognize",outcome="refused"} 1.0' in metrics
    finally:
        app.close()
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    recognize = [line for line in lines if line.get("endpoint") == "recognize"]
    assert [line["outcome"] for line in recognize] == ["ok", "ok", "refused"]
    ids = [line["request_id"] for line in recognize]
    assert len(set(ids)) == 3 and all(len(i) == 12 for i in ids)  # one id per request
    assert "sign.mp4" not in stream.getvalue()  # names and numbers only, never what was sent


def test_uploads_are_swept_from_the_cache(tiny_engine, tmp_path):
    app = launch(tiny_engine, tmp_path, cache_max_age_s=1, cache_sweep_every_s=1)
    try:
        client = Client(app.local_url, verbose=False)
        clip = write_video(tmp_path / "swept.mp4", 20, fps=25)
        client.predict(handle_file(str(clip)), 0, 0, api_name="/recognize")
        uploaded = [Path(p) for s in app.temp_file_sets for p in s if Path(p).name == "swept.mp4"]
        assert uploaded and all(p.exists() for p in uploaded)
        deadline = time.time() + 20
        while any(p.exists() for p in uploaded) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(p.exists() for p in uploaded)  # disk use does not grow with traffic
    finally:
        app.close()


@pytest.mark.slow  # two server starts in subprocesses
def test_a_server_killed_while_writing_restarts_with_readable_data_and_no_leftovers(tiny_model_dir, tmp_path):
    """kill -9 in the middle of clip saves and edits; the next start finds whole files only."""
    data = tmp_path / "data"
    env = {**os.environ, "SIGNLENS_MODEL": str(tiny_model_dir), "SIGNLENS_DEVICE": "cpu", "SIGNLENS_QUANTIZATION": "none",
           "SIGNLENS_DTYPE": "float32", "SIGNLENS_DATA": str(data), "GRADIO_ANALYTICS_ENABLED": "False"}
    clip = write_video(tmp_path / "sign.mp4", 20)

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while http_get(f"{url}/readyz")[0] != 200:
            assert process.poll() is None and time.time() < deadline, process.stderr.read()[-2000:]
            time.sleep(0.3)
        return process, url

    server, url = start()
    client = Client(url, verbose=False)
    saved = []

    def keep_saving():
        try:
            while True:
                message = client.predict(handle_file(str(clip)), "book", "assets/glossaries/asl_core_320.txt",
                                         api_name="/curate_add_clip")
                saved.append(message)
        except Exception:
            return  # the server died under it

    writer = threading.Thread(target=keep_saving, daemon=True)
    writer.start()
    while len(saved) < 3:
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(30)
    writer.join(30)
    # What a killed writer can leave: an unfinished atomic write (its pid is dead now).
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (data / "user" / f".manifest.jsonl.{dead.stdout.strip()}.x1y2.part").write_text('{"half": ')

    server, url = start()
    try:
        manifest = [json.loads(line) for line in (data / "user" / "manifest.jsonl").read_text().splitlines()]
        assert len(manifest) >= 3  # every acknowledged save is there, whole
        assert all((data / row["clip"]).is_file() for row in manifest)
        assert not list(data.rglob("*.part"))  # nothing half-written left
        assert Client(url, verbose=False).predict(api_name="/curate_job_status")  # and it serves
    finally:
        server.terminate()
        server.wait(30)

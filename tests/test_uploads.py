"""Uploads on a server anyone can reach: rate, file count and cache budget, over real HTTP.

Each server here gets an upload folder of its own (GRADIO_TEMP_DIR, which `app.py` sets
to the folder `claim_upload_folder` takes), so what a refusal leaves behind can be seen.
Also: the folders of dead processes removed at start, and what the Docker image leaves out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port, http_get

BOUNDARY = "signlens-upload-test"


def upload(url: str, files: list[tuple[str, bytes]], headers: dict | None = None) -> tuple[int, object]:
    """POST these files in one multipart request to /gradio_api/upload: (status, parsed body)."""
    body = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    body += f"--{BOUNDARY}--\r\n".encode()
    request = urllib.request.Request(f"{url}/gradio_api/upload", data=body, method="POST", headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def files_under(folder: Path) -> dict[str, int]:
    """Every file under `folder` (Gradio's temp files included) with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def serve_public(tiny_engine, tmp_path, monkeypatch):
    """Start servers in the public posture, each with its own upload folder; closed after the test."""
    from training.layout import DataLayout
    from webapp.access import Access
    from webapp.app import build_app, serve
    from webapp.settings import ServerConfig

    apps = []

    def start(**server):
        folder = tmp_path / f"uploads-{len(apps)}"
        folder.mkdir()
        monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))  # read by Gradio when the app is built and served
        app = build_app(tiny_engine, layout=DataLayout.at(tmp_path / "data"), server=ServerConfig(**server))
        serve(app, tiny_engine, access=Access("public", "a test"), host="127.0.0.1", port=free_port(),
              prevent_thread_lock=True, quiet=True)
        apps.append(app)
        return app.local_url.rstrip("/"), folder

    yield start
    for app in apps:
        app.close()


def test_uploads_over_the_clients_rate_get_429_and_store_nothing(serve_public):
    url, folder = serve_public(upload_rate_limit="3/minute")
    for index in range(3):
        status, paths = upload(url, [(f"clip{index}.mp4", os.urandom(1000))])
        assert status == 200 and len(paths) == 1 and Path(paths[0]).is_file()  # normal uploads work
        assert Path(paths[0]).parent.parent == folder  # into the server's own folder
    before = files_under(folder)
    status, body = upload(url, [("clip3.mp4", os.urandom(1000))])
    assert status == 429
    assert body["detail"].startswith("Too many uploads from you (3 per 1 minute): try again in ")
    assert body["detail"].endswith(" s.")
    assert files_under(folder) == before  # refused before a byte was stored
    # Another client, behind a reverse proxy on this host (whose X-Forwarded-For uvicorn trusts), has its own count.
    status, paths = upload(url, [("clip.mp4", os.urandom(1000))], headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200 and len(paths) == 1


def test_an_upload_with_too_many_files_gets_400_and_leaves_none_of_them(serve_public):
    url, folder = serve_public(max_upload_files=2)
    before = files_under(folder)
    # 1 MB: the answer comes after the rest is read and dropped, not as a broken pipe.
    status, body = upload(url, [(f"clip{i}.mp4", os.urandom(200_000)) for i in range(5)])
    assert (status, body) == (400, "Send at most 2 files in one upload request.")
    assert files_under(folder) == before  # the parser's temp files for the first two are gone too
    status, paths = upload(url, [("a.mp4", os.urandom(500)), ("b.mp4", os.urandom(500))])
    assert status == 200 and len(paths) == 2 and all(Path(p).is_file() for p in paths)


def test_uploads_beyond_the_cache_budget_get_507_and_store_nothing(serve_public):
    url, folder = serve_public(upload_cache_max_mb=1)
    room = 1024 * 1024 - sum(files_under(folder).values())  # the page's sample clips are cached at start
    status, paths = upload(url, [("first.mp4", os.urandom(room * 6 // 10))])
    assert status == 200 and Path(paths[0]).is_file()
    before = files_under(folder)
    status, body = upload(url, [("second.mp4", os.urandom(room * 6 // 10))])  # would take it past the budget
    assert status == 507
    assert body["detail"] == "The server has no room for more uploads right now: try again in a few minutes."
    assert files_under(folder) == before
    status, paths = upload(url, [("small.mp4", os.urandom(1_000))])  # what fits still goes in
    assert status == 200 and Path(paths[0]).is_file()


def multipart(files: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files)
    return body + f"--{BOUNDARY}--\r\n".encode()


def raw_post(url: str, body: bytes, *, length: bool = True) -> socket.socket:
    """Open /gradio_api/upload and send the headers and the first 100 bytes only."""
    host, port = url.split("//")[1].split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    framing = f"Content-Length: {len(body)}" if length else "Transfer-Encoding: chunked"
    connection.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n"
                       f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode() + body[:100])
    return connection


def status_of(connection: socket.socket) -> int:
    answer = b""
    while b"\r\n" not in answer:
        chunk = connection.recv(4096)
        if not chunk:
            break
        answer += chunk
    connection.close()
    return int(answer.split(b" ")[1])


def test_uploads_sent_at_once_cannot_pass_the_same_free_space(serve_public):
    url, folder = serve_public(upload_cache_max_mb=1)
    room = 1024 * 1024 - sum(files_under(folder).values())
    bodies = [multipart([(f"at-once-{i}.mp4", os.urandom(room * 4 // 10))]) for i in range(4)]
    connections = [raw_post(url, body) for body in bodies]  # all four admitted or refused before any body arrives
    for connection, body in zip(connections, bodies):
        try:
            connection.sendall(body[100:])
        except OSError:
            pass  # refused: the server may close while we send
    statuses = sorted(status_of(c) for c in connections)
    assert statuses == [200, 200, 507, 507]  # two fit in the room, two were refused up front
    assert sum(files_under(folder).values()) <= 1024 * 1024


def test_an_upload_without_a_length_or_too_long_is_refused_in_a_sentence(serve_public):
    url, folder = serve_public()
    before = files_under(folder)
    host, port = url.split("//")[1].split(":")

    def send(headers: str, body: bytes = b"") -> str:
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            raw.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n"
                        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode() + body)
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                    answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0]):
                answer += raw.recv(65536)
            return answer.decode()

    data = multipart([("chunked.mp4", os.urandom(5000))])
    chunked = send("Transfer-Encoding: chunked", f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
    assert chunked.startswith("HTTP/1.1 411") and "Content-Length" in chunked  # the budget needs the length
    # Longer than max_upload_files files of the engine's max_file_mb can be: the size sentence, not "no room".
    huge = send(f"Content-Length: {10 * 1024 ** 3}")
    assert huge.startswith("HTTP/1.1 413") and "MB this server accepts." in huge
    assert files_under(folder) == before


def test_files_posted_to_gradios_other_routes_count_against_the_same_limits(serve_public):
    url, folder = serve_public(upload_rate_limit="1/minute")
    assert upload(url, [("first.mp4", os.urandom(1000))])[0] == 200
    before = files_under(folder)
    body = multipart([("second.wav", os.urandom(1000))])
    request = urllib.request.Request(f"{url}/gradio_api/process_recording", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 429 and "Too many uploads from you" in json.loads(refused.value.read())["detail"]
    assert files_under(folder) == before


def test_one_client_cannot_upload_more_megabytes_than_its_share(serve_public):
    url, folder = serve_public(upload_mb_limit="2/minute")
    assert upload(url, [("one.mp4", os.urandom(900_000))])[0] == 200
    assert upload(url, [("two.mp4", os.urandom(900_000))])[0] == 200
    before = files_under(folder)
    status, body = upload(url, [("three.mp4", os.urandom(900_000))])
    assert status == 429 and body["detail"].startswith("Too many megabytes of uploads from you (2 per 1 minute)")
    assert files_under(folder) == before


def test_an_upload_root_of_another_user_is_refused_and_ours_is_closed_to_others(tmp_path, monkeypatch):
    from engine import ConfigError
    from webapp import cache

    root = tmp_path / "signlens-uploads"
    root.mkdir()
    os.chmod(root, 0o777)  # ours, but writable by anyone
    folder, _ = cache.claim_upload_folder(root)
    assert folder.parent == root and root.stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr(cache.os, "getuid", lambda: root.stat().st_uid + 1)  # as if another user made it
    with pytest.raises(ConfigError, match="belongs to another user"):
        cache.claim_upload_folder(root)


def test_dead_processes_upload_folders_are_removed_and_live_and_foreign_ones_kept(tmp_path):
    from webapp.cache import OWNER_LOCK, claim_upload_folder

    root = tmp_path / "signlens-uploads"
    dead, live, foreign = root / "run-dead", root / "run-live", root / "someone-else"
    for folder in (dead, live, foreign):
        (folder / "abc123").mkdir(parents=True)
        (folder / "abc123" / "clip.mp4").write_bytes(b"x" * 100)
    (dead / OWNER_LOCK).touch()  # the lock file of a process killed with -9: nobody holds it
    # A running process of ours: its lock held, here by another process.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"lock = FileLock({str(live / OWNER_LOCK)!r}); lock.acquire(); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        folder, removed = claim_upload_folder(root)
        assert removed == [dead] and not dead.exists()
        assert (live / "abc123" / "clip.mp4").is_file() and (foreign / "abc123" / "clip.mp4").is_file()
        assert folder.parent == root and folder not in (dead, live, foreign)
        # This process's new folder is held while it runs: another start leaves it alone.
        again, removed = claim_upload_folder(root)
        assert removed == [] and folder.is_dir() and again != folder
    finally:
        holder.stdin.close()
        holder.wait(30)
    # Once that process has exited, its folder goes at the next start.
    _, removed = claim_upload_folder(root)
    assert live in removed and not live.exists() and foreign.exists()


@pytest.mark.slow  # a server start in a subprocess
def test_app_py_uploads_into_its_own_folder_and_clears_a_killed_ones(tiny_model_dir, tmp_path):
    from webapp.cache import OWNER_LOCK

    root = tmp_path / "uploads"
    (root / "run-killed" / "abc").mkdir(parents=True)
    (root / "run-killed" / OWNER_LOCK).touch()
    (root / "run-killed" / "abc" / "left.mp4").write_bytes(b"x" * 100)
    config = tmp_path / "server.yml"
    config.write_text(f"upload_dir: {json.dumps(str(root))}\n")
    port = free_port()
    env = {**os.environ, "SIGNLENS_MODEL": str(tiny_model_dir), "SIGNLENS_DEVICE": "cpu", "SIGNLENS_QUANTIZATION": "none",
           "SIGNLENS_DTYPE": "float32", "SIGNLENS_DATA": str(tmp_path / "data"), "GRADIO_ANALYTICS_ENABLED": "False"}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--server-config", str(config)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while http_get(f"{url}/healthz")[0] != 200:
            assert server.poll() is None and time.time() < deadline, server.stderr.read()[-2000:]
            time.sleep(0.3)
        assert not (root / "run-killed").exists()
        status, paths = upload(url, [("clip.mp4", os.urandom(1000))])
        assert status == 200
        mine = Path(paths[0]).parent.parent
        assert mine.parent == root and (mine / OWNER_LOCK).is_file()
    finally:
        server.terminate()
        server.wait(30)


def test_the_docker_image_leaves_out_secrets_and_local_data():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".env", ".env.*", "users*.txt", "**/users*.txt", "data/", ".cache/", ".venv/"):
        assert needed in patterns, f".dockerignore must leave out {needed}"

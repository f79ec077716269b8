"""The WLASL downloader against a local HTTP server that misbehaves on purpose.

Real clips (tiny mp4 and swf files written with PyAV) are served from 127.0.0.1 under
WLASL file names, with the faults the real sites show: 404s, 500s, HTML error pages
sent as 200, bodies cut short, stalls, servers that ignore Range.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest

from media import write_video
from training.curate.download import DownloadConfig, download_instances
from training.curate.download import fetch as download_fetch
from training.curate.download.fetch import YT_DLP_MISSING
from training.curate.download.files import HTML_NOT_VIDEO, sniff_container
from training.curate.download.manifest import read_manifest
from training.curate.wlasl import WlaslInstance
from training.errors import ContentError, TrainingError

# Fast settings: the faults are local, so nothing needs real timeouts or backoff.
FAST = DownloadConfig(workers=4, per_host=4, timeout_s=2.0, retries=2, backoff_s=0.01,
                      backoff_max_s=0.05, manifest_interval_s=0.0)
MANIFEST_FIELDS = {"video_id", "url", "status", "bytes", "sha256", "error", "time", "attempts", "source", "origin"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": write_video(folder / "a.mp4", 6, fps=25).read_bytes(),
        "mp4b": write_video(folder / "b.mp4", 8, fps=25, codec="mpeg4").read_bytes(),
        "swf": write_video(folder / "c.swf", 6, fps=25, codec="flv").read_bytes(),
    }


class FaultyServer:
    """Serves ``files`` by path; ``faults[path]`` lists one behaviour per request, the last repeats."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None, float]] = []  # (path, Range header, start time)
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                with server.lock:
                    server.log.append((self.path, self.headers.get("Range"), time.monotonic()))
                    plan = server.faults.get(self.path, ["ok"])
                    fault = plan.pop(0) if len(plan) > 1 else plan[0]
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    server.respond(self, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeouts, cancel): expected
                finally:
                    with server.lock:
                        server.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def requests(self, name: str) -> list[str | None]:
        return [rng for path, rng, _ in self.log if path == f"/{name}"]

    def respond(self, h: BaseHTTPRequestHandler, fault: str) -> None:
        if fault in ("404", "500"):
            h.send_error(int(fault))
            return
        if fault == "html":
            body = b"<!DOCTYPE html><html><body>Video not found</body></html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        body = self.files[h.path]
        if fault == "slow":
            time.sleep(1.0)
        if fault == "pause":
            time.sleep(0.15)
        start = 0
        range_header = h.headers.get("Range")
        if range_header and fault not in ("norange", "truncate"):
            start = int(range_header.removeprefix("bytes=").rstrip("-"))
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "video/mp4")
        h.send_header("Content-Length", str(len(body) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        if fault == "truncate":
            h.wfile.write(body[: len(body) // 2])  # then the connection closes
        elif fault == "stall":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            time.sleep(1.0)
            h.wfile.write(body[len(body) // 2:])
        else:
            h.wfile.write(body[start:])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FaultyServer()
    yield s
    s.close()


def _instance(video_id: str, url: str, source: str = "aslpro") -> WlaslInstance:
    return WlaslInstance(gloss="book", video_id=video_id, url=url, source=source, fps=25,
                         frame_start=1, frame_end=-1, bbox=(0, 0, 64, 48), signer_id=1,
                         variation_id=0, instance_id=0, split="train")


def _serve(server: FaultyServer, video_id: str, data: bytes, *faults: str, ext: str = "mp4",
           source: str = "aslpro") -> WlaslInstance:
    name = f"{video_id}.{ext}"
    server.files[f"/{name}"] = data
    if faults:
        server.faults[f"/{name}"] = list(faults)
    return _instance(video_id, server.url(name), source)


def _manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _run(instances, out: Path, config: DownloadConfig = FAST, **kw):
    kw.setdefault("manifest_path", out / "manifest.jsonl")  # the manifest beside the clips, easy to look at here
    return download_instances(instances, out, config=config, show_progress=False, **kw)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_good_clips_are_done_and_recorded(server, clips, tmp_path):
    items = [_serve(server, "00335", clips["mp4"]), _serve(server, "00336", clips["mp4b"], source="handspeak")]
    summary = _run(items, tmp_path)
    lines = _manifest_lines(tmp_path)
    assert {r["video_id"] for r in lines} == {"00335", "00336"}
    for r in lines:
        assert set(r) == MANIFEST_FIELDS and r["origin"] == "download"
        assert r["status"] == "done" and r["attempts"] == 1 and r["error"] == ""
        data = clips["mp4"] if r["video_id"] == "00335" else clips["mp4b"]
        assert (tmp_path / f"{r['video_id']}.mp4").read_bytes() == data
        assert r["sha256"] == _sha(data) and r["bytes"] == len(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00335.mp4", "00336.mp4", "manifest.jsonl"]
    assert {s.source: s.done for s in summary.sources} == {"aslpro": 1, "handspeak": 1}
    assert not summary.cancelled
    assert "aslpro" in summary.format_summary() and "total" in summary.format_summary()


def test_404_is_not_retried(server, clips, tmp_path):
    item = _serve(server, "404", clips["mp4"], "404")
    summary = _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "failed" and record.attempts == 1
    assert record.error.startswith("HTTP 404")
    assert len(server.requests("404.mp4")) == 1
    assert summary.sources[0].top_reasons == (("HTTP 404 Not Found", 1),)
    assert not (tmp_path / "404.mp4").exists()


def test_500_is_retried_then_done(server, clips, tmp_path):
    item = _serve(server, "500", clips["mp4"], "500", "ok")
    _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert (record.status, record.attempts) == ("done", 2)
    assert record.sha256 == _sha(clips["mp4"])


def test_truncated_body_fails_then_resumes_with_range(server, clips, tmp_path):
    data = clips["mp4"]
    item = _serve(server, "trunc", data, "truncate")
    _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "failed" and record.attempts == FAST.retries + 1
    assert record.error.startswith("connection closed early")
    part = tmp_path / "trunc.mp4.part"
    assert part.read_bytes() == data[: len(data) // 2]
    assert not (tmp_path / "trunc.mp4").exists()

    server.faults["/trunc.mp4"] = ["ok"]
    _run([item], tmp_path)
    assert server.requests("trunc.mp4")[-1] == f"bytes={len(data) // 2}-"
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "done" and record.sha256 == _sha(data)
    assert (tmp_path / "trunc.mp4").read_bytes() == data and not part.exists()


def test_html_page_is_rejected(server, clips, tmp_path):
    item = _serve(server, "html", clips["mp4"], "html")
    _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert (record.status, record.error, record.attempts) == ("failed", HTML_NOT_VIDEO, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]  # no .mp4, no .part


def test_slow_server_times_out_and_is_retried(server, clips, tmp_path):
    config = DownloadConfig(timeout_s=0.3, retries=1, backoff_s=0.01)
    stuck = _serve(server, "stuck", clips["mp4"], "slow")
    late = _serve(server, "late", clips["mp4"], "slow", "ok")
    _run([stuck, late], tmp_path, config)
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert (records["stuck"].status, records["stuck"].error, records["stuck"].attempts) == ("failed", "timed out", 2)
    assert (records["late"].status, records["late"].attempts) == ("done", 2)


def test_resume_after_kill_uses_range(server, clips, tmp_path):
    data = clips["mp4b"]
    half = len(data) // 2
    (tmp_path / "killed.mp4.part").write_bytes(data[:half])  # what a killed run leaves
    item = _serve(server, "killed", data)
    _run([item], tmp_path)
    assert server.requests("killed.mp4") == [f"bytes={half}-"]
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "done" and record.sha256 == _sha(data)
    assert _sha((tmp_path / "killed.mp4").read_bytes()) == _sha(data)


def test_200_to_a_range_request_restarts_from_zero(server, clips, tmp_path):
    data = clips["mp4"]
    (tmp_path / "norange.mp4.part").write_bytes(b"\0" * 100)
    item = _serve(server, "norange", data, "norange")
    _run([item], tmp_path)
    assert server.requests("norange.mp4") == ["bytes=100-"]
    assert (tmp_path / "norange.mp4").read_bytes() == data


def test_rerun_skips_done_and_retries_failed(server, clips, tmp_path):
    good = [_serve(server, f"7000{i}", clips["mp4"]) for i in range(3)]
    bad = _serve(server, "70009", clips["mp4"], "404")
    _run(good + [bad], tmp_path)
    server.log.clear()
    summary = _run(good + [bad], tmp_path)
    assert [path for path, _, _ in server.log] == ["/70009.mp4"]
    assert summary.already_done == 3
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert [records[i.video_id].status for i in good] == ["done"] * 3

    # A done clip whose file changed size is fetched again.
    (tmp_path / "70000.mp4").write_bytes(b"oops")
    server.log.clear()
    _run(good, tmp_path)
    assert [path for path, _, _ in server.log] == ["/70000.mp4"]
    assert (tmp_path / "70000.mp4").read_bytes() == clips["mp4"]


def test_unrecorded_final_file_is_adopted(server, clips, tmp_path):
    # A run killed between os.replace and the manifest write leaves a good .mp4 unrecorded.
    (tmp_path / "adopt.mp4").write_bytes(clips["mp4"])
    item = _serve(server, "adopt", clips["mp4"])
    _run([item], tmp_path)
    assert server.log == []
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert (record.status, record.attempts, record.sha256) == ("done", 0, _sha(clips["mp4"]))


def test_swf_is_converted_to_mp4(server, clips, tmp_path):
    item = _serve(server, "swf1", clips["swf"], ext="swf")
    _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "done", record.error
    final = tmp_path / "swf1.mp4"
    assert sniff_container(final.read_bytes()[:64]) == "mp4"
    assert record.sha256 == _sha(final.read_bytes())
    with av.open(str(final)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6  # every frame kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl", "swf1.mp4"]


def test_undecodable_swf_fails_with_reason(server, tmp_path):
    item = _serve(server, "swf2", b"FWS\x09" + bytes(range(256)) * 4, ext="swf")
    _run([item], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "failed" and record.error.startswith("could not convert swf to mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]


def test_youtube_is_skipped_without_yt_dlp(server, monkeypatch, tmp_path):
    monkeypatch.setattr(download_fetch, "import_yt_dlp", lambda: None)
    items = [_instance("yt1", "https://www.youtube.com/watch?v=0UsjUE-TXns", "aslu"),
             _instance("yt2", "https://youtu.be/glu0Ub9Zss4", "aslu")]
    summary = _run(items, tmp_path)
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert {(r.status, r.error, r.attempts) for r in records.values()} == {("skipped", YT_DLP_MISSING, 0)}
    assert summary.sources[0].skipped == 2


def test_youtube_goes_through_yt_dlp_when_installed(monkeypatch, clips, tmp_path):
    seen: dict = {}

    class FakeYoutubeDL:  # the slice of yt_dlp.YoutubeDL the downloader uses
        def __init__(self, options: dict) -> None:
            seen.update(options)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

        def extract_info(self, url: str, download: bool) -> dict:
            seen["url"] = url
            Path(self.prepare_filename({})).write_bytes(clips["swf"])  # some uploads are not mp4
            return {"ext": "flv"}

        def prepare_filename(self, info: dict) -> str:
            return seen["outtmpl"].replace("%(ext)s", "flv")

    monkeypatch.setattr(download_fetch, "import_yt_dlp", lambda: type("yt_dlp", (), {"YoutubeDL": FakeYoutubeDL}))
    url = "https://www.youtube.com/watch?v=0UsjUE-TXns"
    _run([_instance("68011", url, "valencia-asl")], tmp_path)
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert (record.status, record.attempts, seen["url"]) == ("done", 1, url), record.error
    assert seen["noplaylist"] and seen["format"] == FAST.youtube_format
    assert sorted(p.name for p in tmp_path.iterdir()) == ["68011.mp4", "manifest.jsonl"]


def test_shared_url_is_fetched_once(server, clips, tmp_path):
    first = _serve(server, "shared", clips["mp4"])
    second = _instance("shared2", first.url)
    _run([first, second], tmp_path)
    assert len(server.requests("shared.mp4")) == 1
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert records["shared"].sha256 == records["shared2"].sha256 == _sha(clips["mp4"])
    assert (tmp_path / "shared2.mp4").read_bytes() == clips["mp4"]


def test_too_large_is_refused(server, clips, tmp_path):
    item = _serve(server, "big", clips["mp4"])
    _run([item], tmp_path, DownloadConfig(max_bytes=1000, retries=3, backoff_s=0.01))
    (record,) = read_manifest(tmp_path / "manifest.jsonl").values()
    assert record.status == "failed" and record.attempts == 1
    assert record.error.startswith("file larger than max_bytes")


def test_dead_host_is_given_up(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    items = [_instance(f"dead{i}", f"http://127.0.0.1:{port}/dead{i}.mp4") for i in range(4)]
    config = DownloadConfig(workers=1, retries=0, host_failure_limit=2)
    summary = _run(items, tmp_path, config)
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert [records[f"dead{i}"].error.split(" (")[0] for i in range(4)] == \
        ["connection refused", "connection refused", "host unreachable", "host unreachable"]
    assert [records[f"dead{i}"].attempts for i in range(4)] == [1, 1, 0, 0]
    assert summary.sources[0].failed == 4


def test_per_host_limit_and_min_delay(server, clips, tmp_path):
    items = [_serve(server, f"p{i}", clips["mp4"], "pause") for i in range(6)]
    _run(items, tmp_path, DownloadConfig(workers=6, per_host=2, min_delay_s=0.05, retries=0))
    assert server.max_active == 2
    starts = sorted(t for _, _, t in server.log)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.04


def test_cancel_mid_download_keeps_part_and_a_valid_manifest(server, clips, tmp_path):
    data = clips["mp4b"]
    done = _serve(server, "c1", clips["mp4"])
    stalled = _serve(server, "c2", data, "stall", "ok")
    cancel = threading.Event()
    result = {}
    config = DownloadConfig(workers=1, per_host=1, chunk_bytes=256, timeout_s=5.0)
    worker = threading.Thread(target=lambda: result.setdefault(
        "summary", _run([done, stalled], tmp_path, config, cancel=cancel)))
    worker.start()
    part = tmp_path / "c2.mp4.part"
    deadline = time.monotonic() + 5
    while not (part.exists() and part.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel.set()
    worker.join(5)
    summary = result["summary"]
    assert summary.cancelled and sum(s.pending for s in summary.sources) == 1
    assert [r["video_id"] for r in _manifest_lines(tmp_path)] == ["c1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.mp4", "c2.mp4.part", "manifest.jsonl"]
    assert 0 < part.stat().st_size < len(data)

    resumed_from = part.stat().st_size
    _run([done, stalled], tmp_path)
    assert server.requests("c2.mp4")[-1] == f"bytes={resumed_from}-"
    assert read_manifest(tmp_path / "manifest.jsonl")["c2"].sha256 == _sha(data)


def test_ctrl_c_leaves_parts_and_a_valid_manifest(server, clips, tmp_path):
    items = [_serve(server, f"k{i}", clips["mp4"]) for i in range(3)]

    def interrupt(done: int, total: int) -> None:
        if done:  # Ctrl-C lands in the main thread, as it would while the run waits
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(items, tmp_path, DownloadConfig(workers=1, per_host=1), progress=interrupt)
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert records and all(r.status == "done" for r in records.values())
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {"manifest.jsonl"} | {f"k{i}.mp4" for i in range(3)} | {f"k{i}.mp4.part" for i in range(3)}
    assert {f"{v}.mp4" for v in records} <= names

    summary = _run(items, tmp_path)
    assert summary.already_done == len(records)
    assert all(r.status == "done" for r in read_manifest(tmp_path / "manifest.jsonl").values())


def test_progress_callback_counts_to_total(server, clips, tmp_path):
    items = [_serve(server, f"g{i}", clips["mp4"]) for i in range(3)]
    calls: list[tuple[int, int]] = []
    _run(items, tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 3) and calls[-1] == (3, 3)


@pytest.mark.parametrize(("head", "kind"), [
    (b"\0\0\0\x18ftypisom" + b"\0" * 8, "mp4"),
    (b"\0\0\0\x14ftypqt  " + b"\0" * 8, "mov"),
    (b"\x1a\x45\xdf\xa3" + b"\0" * 12, "matroska"),
    (b"RIFF\0\0\0\0AVI LIST", "avi"),
    (b"FLV\x01\x05" + b"\0" * 8, "flv"),
    (b"CWS\x0a" + b"\0" * 8, "swf"),
    (b"\x47" + b"\0" * 187 + b"\x47" + b"\0" * 10, "mpeg-ts"),
])
def test_sniff_container_knows_video_magic(head, kind):
    assert sniff_container(head) == kind


def test_sniff_container_rejects_html_and_text():
    with pytest.raises(ContentError, match=HTML_NOT_VIDEO):
        sniff_container(b"\n  <!DOCTYPE HTML PUBLIC><html>")
    with pytest.raises(ContentError, match="not a video file"):
        sniff_container(b'{"error": "not found"}')


def test_config_validation_names_the_bad_values():
    # The family's error (the CLI and the app print its sentence), naming every bad value.
    with pytest.raises(TrainingError, match=r"^The download settings cannot work: workers must be at least 1, not 0\.$"):
        DownloadConfig(workers=0)
    with pytest.raises(TrainingError, match="retries must be 0 or more, not -1; timeout_s must be more than 0"):
        DownloadConfig(timeout_s=0, retries=-1)


def test_a_download_that_fetched_nothing_is_a_failure_that_says_how_to_fix_it(tmp_path):
    from training.curate.download.fetch import YT_DLP_MISSING
    from training.curate.download.runner import DownloadSummary, SourceSummary

    def summary(*sources):
        return DownloadSummary(sources=sources, total=sum(s.done + s.failed + s.skipped for s in sources),
                               already_done=0, cancelled=False, elapsed_s=1.0, manifest_path=tmp_path / "m.jsonl")

    offline = summary(SourceSummary("aslpro", 0, 813, 0, 0, (("connection refused", 813),)),
                      SourceSummary("youtube", 0, 0, 435, 0, ((YT_DLP_MISSING, 435),)))
    state, sentence = offline.outcome()
    assert state == "failed"
    assert sentence.startswith("Downloaded 0 of 1248 clips (813 failed, 435 skipped).")
    assert "435 YouTube clips were skipped because yt-dlp is not installed: pip install '.[youtube]'" in sentence
    some = summary(SourceSummary("aslpro", 3, 1, 0, 0, (("404", 1),)))
    assert some.outcome()[0] == "partial" and "yt-dlp" not in some.outcome()[1]
    assert summary(SourceSummary("aslpro", 4, 0, 0, 0, ())).outcome() == ("done", "Downloaded 4 of 4 clips.")

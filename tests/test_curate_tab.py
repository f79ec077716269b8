"""The Curate tab's event functions, called directly, and a few through a launched app."""

from __future__ import annotations

import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import av
import gradio as gr
import pytest

from curation_data import EXPECTED, frame, make_fake_wlasl
from media import read_index, write_video
from training.curate import userdata
from training.curate.download import DownloadConfig
from training.dataset import DatasetConfig
from training.errors import DatasetError, UserDataError
from training.layout import DataLayout
from webapp.common import user_errors
from webapp.curate_tab import Curator, build_curate_tab

FAST = DownloadConfig(workers=2, per_host=2, timeout_s=2.0, retries=0, manifest_interval_s=0.0)
SELECTION = ("assets/glossaries/asl_core_320.txt", "WLASL100", [], "official", ["accepted"])


@pytest.fixture(scope="module")
def engine_config():
    from engine.config import load_config

    return load_config(env={})


@pytest.fixture
def curator(tmp_path, engine_config):
    metadata, _ = make_fake_wlasl(tmp_path, tmp_path / "data")
    base = DatasetConfig(name="small", metadata=str(metadata), subset="WLASL100")
    return Curator(DataLayout.at(tmp_path / "data"), base=base, engine_config=engine_config, download_config=FAST)


def refs(rows):
    return [row[0] for row in rows]


def wait_for(curator, timeout=30.0):
    state = curator.curation.job.wait(timeout)
    assert not state.running, curator.job_status()
    return state


def test_stats_and_browse(curator):
    summary, plot, table, *dropdowns = curator.stats(*SELECTION)
    assert "**6 clips** selected for **3 glosses** (5 downloaded, 1 to download)" in summary
    assert open(plot, "rb").read(4) == b"\x89PNG"
    assert {row[0]: row[4] for row in table} == {"book": 2, "drink": 2, "computer": 2}
    assert "book" in dropdowns[0].constructor_args["choices"]
    rows = curator.clips(" Book ", *SELECTION)  # search is case-insensitive
    assert refs(rows) == ["wlasl:69241", "wlasl:65225"]
    assert rows[0][1:7] == ["book", "included", "aslbrick", "118", "train", "downloaded"]
    with pytest.raises(DatasetError, match="Type or choose a gloss"):
        curator.clips("", *SELECTION)


def test_preview_shows_the_clip_as_built(curator):
    path, about = curator.preview("wlasl:65225")
    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [read_index(f) for f in frames] == EXPECTED["65225"] and frames[0].shape == (64, 64, 3)
    assert "frames 3..9" in about
    assert curator.preview("wlasl:68028") == (None, "WLASL 68028 is not downloaded yet: download or import it to see it.")


def test_edits_survive_a_restart_and_the_review_queue(curator, tmp_path, engine_config):
    recording = write_video(tmp_path / "rec.mp4", [frame(i) for i in range(6)])
    corrected = userdata.add_clip(curator.layout, recording, "drink", source="upload", predicted="book",
                                  confidence=0.3)  # what "Correct this" in Upload/Live does
    assert refs(curator.pending(*SELECTION)) == [f"user:{corrected.id}"]
    assert "the model had said book (30%)" in curator.preview(f"user:{corrected.id}")[1]
    assert "Added user:" in curator.add(str(recording), "computer")
    assert "**drink**" in curator.relabel("wlasl:69241", "drink")
    assert "not in this glossary" in curator.relabel(f"user:{corrected.id}", "zebra", SELECTION[0])
    curator.curation.exclude("wlasl:65225")
    curator.curation.accept(f"user:{corrected.id}")

    restarted = Curator(curator.layout, base=curator.base, engine_config=engine_config)
    drink = {row[0]: row for row in restarted.clips("drink", *SELECTION)}
    assert drink["wlasl:69241"][7] == "relabelled from book"
    assert restarted.clips("zebra", *SELECTION)[0][2] == "accepted"
    book = {row[0]: row for row in restarted.clips("book", *SELECTION)}
    assert book["wlasl:65225"][2] == "excluded"
    computer = [row for row in restarted.clips("computer", *SELECTION) if row[0].startswith("user:")]
    assert computer[0][2:4] == ["accepted", "user (curate)"]
    restarted.curation.restore("wlasl:65225")
    restarted.curation.restore(f"user:{corrected.id}")
    assert {row[0]: row[2] for row in restarted.clips("book", *SELECTION)}["wlasl:65225"] == "included"
    assert refs(restarted.pending(*SELECTION)) == [f"user:{corrected.id}"]
    with pytest.raises(UserDataError, match="accept is for your own clips"):
        restarted.curation.accept("wlasl:65225")


def test_paths_and_ids_cannot_leave_the_data_root(curator):
    for ref in ("wlasl:../../etc/passwd", "user:../manifest", "wlasl:/etc/passwd", "file:/etc/passwd", "", None):
        with pytest.raises(UserDataError):
            curator.preview(ref)
    with pytest.raises(UserDataError):
        curator.relabel("wlasl:..\\x", "book")
    with pytest.raises(DatasetError, match="listed glossaries"):
        curator.config("/etc/passwd", *SELECTION[1:])
    for action in (lambda: curator.relabel("wlasl:69241", "drink", "/etc/passwd"),
                   lambda: curator.add(__file__, "drink", "/etc/passwd")):
        with pytest.raises(DatasetError, match="^Choose one of the listed glossaries.$"):
            action()  # no server file is read as a glossary...
    assert curator.curation.plan().clips and not curator.layout.edits.exists()  # ...and nothing was written
    for name in ("../x", "/tmp/x", ".hidden"):
        with pytest.raises(DatasetError):
            curator.export(name)
        with pytest.raises(DatasetError):
            curator.start_build(name, *SELECTION)
    with pytest.raises(gr.Error, match="Choose a clip first"):
        user_errors(curator.preview)("nonsense")


def test_build_in_the_background_then_export(curator):
    message = curator.start_build("from-tab", *SELECTION)
    assert message == "Build of dataset from-tab started."
    with pytest.raises(Exception, match="still running"):
        curator.start_build("again", *SELECTION)
    assert wait_for(curator).state == "done"
    assert "**build: done** — 5/5 clips processed (100%)" in curator.job_status()
    assert "4 clips written" in curator.job_status()
    assert curator.datasets().constructor_args["choices"] == ["from-tab"]
    archive = zipfile.ZipFile(curator.export("from-tab"))
    assert "from-tab/dataset.jsonl" in archive.namelist()


class SlowServer:
    """Serves the files of a folder in small pieces, ``delay`` seconds apart (0 = at once)."""

    def __init__(self, folder, delay=0.0):
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(0, len(body), 512):
                        self.wfile.write(body[i:i + 512])
                        time.sleep(server.delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, engine_config):
    """A curator whose WLASL URLs point at a local server holding the clips."""
    (tmp_path / "served").mkdir()
    server = SlowServer(tmp_path / "served")
    metadata, _ = make_fake_wlasl(tmp_path, tmp_path / "data", url_base=server.url)
    base = DatasetConfig(name="small", metadata=str(metadata), subset="WLASL100")
    yield Curator(DataLayout.at(tmp_path / "data"), base=base, engine_config=engine_config, download_config=FAST), server
    server.close()


def test_download_runs_in_the_background(served):
    curator, server = served
    server.delay = 0.02  # a slow site: the download takes a while
    assert curator.start_download(*SELECTION) == "Download of 6 clips started."
    assert curator.curation.job.snapshot().running  # returned while it still runs: the server is not blocked
    assert wait_for(curator).state == "partial"  # one clip failed: not "done"
    videos = curator.layout.videos
    assert sorted(p.name for p in videos.glob("*.mp4")) == sorted(f"{v}.mp4" for v in [*EXPECTED, "65539"])
    assert curator.layout.download_manifest.is_file()
    status = curator.job_status()
    assert "**download: partial** — 6/6 clips processed" in status  # 68028 is not on the server
    assert "Downloaded 5 of 6 clips (1 failed)." in status


def test_download_can_be_stopped(served):
    curator, server = served
    server.delay = 0.05
    curator.start_download(*SELECTION)
    time.sleep(0.3)
    assert curator.stop() == "Stopping..."
    state = wait_for(curator, timeout=20)
    assert state.state == "stopped" and state.done < 6
    assert curator.stop() == "Nothing is running."
    assert not list(curator.layout.videos.glob("*.mp4.part.mp4"))


def test_tab_in_a_launched_app(curator, monkeypatch):
    from gradio_client import Client

    with gr.Blocks() as app:
        with gr.Tab("Curate"):
            tab = build_curate_tab(SimpleNamespace(config=curator.curation.engine_config), curator.layout, base=curator.base)
    app.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        summary, *_ = client.predict(*SELECTION, api_name="/curate_stats")
        assert "**6 clips** selected" in summary
        table = client.predict("computer", *SELECTION, api_name="/curate_clips")
        assert [row[0] for row in table["data"]] == ["wlasl:12306", "wlasl:68028"]
        assert client.predict("wlasl:12306", api_name="/curate_exclude") == "wlasl:12306 excluded."
        assert tab.clips("computer", *SELECTION)[0][2] == "excluded"
        with pytest.raises(Exception, match="That clip reference is not valid"):
            client.predict("wlasl:../../etc/passwd", api_name="/curate_exclude")
        assert "No download or build" in client.predict(api_name="/curate_job_status")
    finally:
        app.close()


def test_malformed_metadata_is_one_sentence_in_the_tab_and_over_the_api(tmp_path, engine_config):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    bad = tmp_path / "WLASL_v0.3.json"
    bad.write_text('[{"gloss": "book", "instances": [{"video_id": "1"}]}]')
    base = DatasetConfig(name="small", metadata=str(bad), subset="WLASL100")
    expected = "The WLASL metadata file WLASL_v0.3.json is not WLASL v0.3: instance '1' of gloss 'book' lacks"
    with gr.Blocks() as app:
        with gr.Tab("Curate"):
            build_curate_tab(SimpleNamespace(config=engine_config), DataLayout.at(tmp_path / "data"), base=base)
    app.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        with pytest.raises(AppError) as caught:
            client.predict(*SELECTION, api_name="/curate_stats")
        assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)
        with pytest.raises(AppError, match="is not WLASL v0.3"):
            client.predict("wlasl:69241", api_name="/curate_exclude")
        assert "No download or build" in client.predict(api_name="/curate_job_status")  # still serving
    finally:
        app.close()

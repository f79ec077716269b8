"""A real server on 127.0.0.1 over the tiny model, called as users call it: gradio_client and curl."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from conftest import free_port
from media import write_video
from webapp.samples import signer_frames


@pytest.fixture(scope="module")
def client(webapp_server):
    return Client(webapp_server.url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api-files")
    good = write_video(folder / "sign.mp4", signer_frames(still_s=0.5, move_s=1.0), fps=10)
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("hello, I am not a video\n" * 10)
    big = folder / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(2 * 1024 * 1024))  # over the fixture's 1 MB cap
    audio = folder / "audio.mp4"
    with av.open(str(audio), "w") as container:  # an mp4 holding only sound
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(20):
            frame.pts = i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return {"good": good, "empty": empty, "text": text, "big": big, "audio": audio}


def test_api_page_lists_the_public_endpoints(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    tabs = {name for name in endpoints if name.startswith(("/curate_", "/finetune_"))}
    assert endpoints - tabs == {"/recognize", "/recognize_batch", "/sentence", "/model_info"}
    assert {"/curate_stats", "/curate_clips"} <= tabs  # the Curate tab's actions are API too


def test_recognize_one_clip_and_a_batch(client, files, webapp_server):
    result = client.predict(handle_file(files["good"]), 0, 0, api_name="/recognize")
    expected = webapp_server.engine.recognize(files["good"])
    assert result["gloss"] == expected.top[0].gloss
    assert [t["gloss"] for t in result["top5"]] == [p.gloss for p in expected.top]
    assert result["latency_ms"] > 0 and result["frames"] == list(expected.clip.indices)
    batch = client.predict([handle_file(files["good"]), handle_file(files["text"])], 0, 0, api_name="/recognize_batch")
    assert batch[0]["gloss"] == expected.top[0].gloss
    assert batch[1] == {"file": "text.mp4", "error": "The file text.mp4 is not a video we can read."}


@pytest.mark.parametrize(
    "name, message",
    [
        ("empty", "The file empty.mp4 is empty."),
        ("text", "The file text.mp4 is not a video we can read."),
        ("audio", "The file audio.mp4 has no video track."),
    ],
)
def test_bad_files_get_one_plain_sentence(client, files, name, message):
    with pytest.raises(AppError) as caught:
        client.predict(handle_file(files[name]), 0, 0, api_name="/recognize")
    assert str(caught.value) == message


def test_too_large_is_refused_and_the_server_still_answers(client, files, webapp_server):
    with pytest.raises(Exception) as caught:
        client.predict(handle_file(files["big"]), 0, 0, api_name="/recognize")
    assert "1 MB" in str(caught.value) or "1.0 MB" in str(caught.value) or "size" in str(caught.value).lower()
    assert "Traceback" not in str(caught.value)
    # The server refuses the upload itself (HTTP 413), whatever the client does.
    request = urllib.request.Request(
        f"{webapp_server.url}/gradio_api/upload",
        data=b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.mp4\"\r\n\r\n"
        + files["big"].read_bytes()
        + b"\r\n--x--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(request, timeout=30)
    assert http.value.code == 413
    assert json.loads(http.value.read()) == {"detail": "That file is larger than the 1 MB this server accepts."}
    # After all of that, the server still works.
    assert client.predict(handle_file(files["good"]), 0, 0, api_name="/recognize")["gloss"]
    assert client.predict(api_name="/model_info")["state"] == "ready"


def test_sentence_and_model_info(client):
    assert isinstance(client.predict("I WANT DRINK", api_name="/sentence"), str)
    with pytest.raises(AppError, match="no signs"):
        client.predict("", api_name="/sentence")
    info = client.predict(api_name="/model_info")
    assert info["device"] == "cpu" and info["vocabulary_size"] > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_example_runs(webapp_server, files):
    """The README's curl recipe: upload, call, read the event stream."""
    url = webapp_server.url
    uploaded = json.loads(subprocess.check_output(["curl", "-sS", "-F", f"files=@{files['good']}", f"{url}/gradio_api/upload"]))
    body = json.dumps({"data": [{"path": uploaded[0], "meta": {"_type": "gradio.FileData"}}, 0, 0]})
    event_id = json.loads(
        subprocess.check_output(["curl", "-sS", "-X", "POST", f"{url}/gradio_api/call/recognize", "-H", "Content-Type: application/json", "-d", body])
    )["event_id"]
    stream = subprocess.check_output(["curl", "-sSN", f"{url}/gradio_api/call/recognize/{event_id}"], timeout=60).decode()
    assert "event: complete" in stream
    data = json.loads(stream.split("data: ", 2)[-1].strip())[0]
    assert data["gloss"] and len(data["top5"]) == 5


def test_pages_are_served_while_the_model_loads(loading_engine, tmp_path, files):
    from training.layout import DataLayout
    from webapp.app import build_app, serve

    loading, release = loading_engine
    app = build_app(loading, layout=DataLayout.at(tmp_path))
    serve(app, loading, port=free_port(), prevent_thread_lock=True)
    try:
        with urllib.request.urlopen(app.local_url, timeout=30) as page:
            assert page.status == 200
        client = Client(app.local_url, verbose=False)
        assert client.predict(api_name="/model_info")["state"] == "loading"
        with pytest.raises(AppError, match=r"^The model is still loading; try again in a moment\.$"):
            client.predict(handle_file(files["good"]), 0, 0, api_name="/recognize")
        release.set()
        assert loading.wait(30).state == "ready"
        assert client.predict(handle_file(files["good"]), 0, 0, api_name="/recognize")["gloss"]
    finally:
        app.close()

"""Every bad input gets one plain sentence, over a real server, and nothing is left behind.

A corpus of malformed inputs, generated here, is sent to every endpoint that takes it:
broken and disguised files, numbers that are not numbers, text that is not text, missing
arguments, file references without their meta, names that try to leave their folder.
Each must come back as one sentence (not Gradio's bare "Error", not our generic "something
went wrong", which would mean a bug), the server must answer the next good request, and
neither the data folder nor Gradio's temp folder may keep anything from the refused calls.
A property-based test (hypothesis) then fuzzes `load_clip` and the argument checks.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from media import write_video
from webapp.common import UNEXPECTED

HUGE = 10_000


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` (16k x 16k would be 768 MB decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def frames_video(path: Path, pts_seconds: list[float], *, codec="libx264", pix_fmt="yuv420p", size=(64, 48)) -> Path:
    """A video whose frames are shown at these times (far apart: a long declared duration)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = *size, pix_fmt
        stream.codec_context.time_base = Fraction(1, 1000)
        for seconds in pts_seconds:
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 120, np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(seconds * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def bad_files(folder: Path) -> dict[str, Path]:
    """Files no endpoint may store or choke on; the value is where each was written."""
    good = write_video(folder / "good.mp4", 60, gop=10)
    data = good.read_bytes()
    files = {
        "zero bytes": b"", "16 random bytes": os.urandom(16), "4 KB random": os.urandom(4096),
        "200 KB random": os.urandom(200_000), "text": b"hello, this is not a video\n",
        "html page": b"<!doctype html><html><script>alert(1)</script></html>",
        "jpeg bytes as mp4": b"\xff\xd8\xff\xe0" + os.urandom(500),
        "png header only": b"\x89PNG\r\n\x1a\n", "avi header only": b"RIFF\x00\x00\x00\x00AVI LIST",
    }
    out = {name: folder / f"{name.replace(' ', '-')}.mp4" for name in files}
    for name, content in files.items():
        out[name].write_bytes(content)
    for percent in (2, 5, 10, 20, 30, 45, 60, 75, 90, 98):  # cut short at many offsets
        path = folder / f"cut-{percent}.mp4"
        path.write_bytes(data[: len(data) * percent // 100])
        out[f"truncated at {percent}%"] = path
    webm = write_video(folder / "w.webm", 30, codec="libvpx-vp9").read_bytes()
    (folder / "cut.webm").write_bytes(webm[: len(webm) // 2])
    out["truncated webm"] = folder / "cut.webm"
    out["video renamed as image"] = folder / "video.png"
    out["video renamed as image"].write_bytes(data)
    out["huge declared dimensions"] = folder / "huge.png"
    out["huge declared dimensions"].write_bytes(png_claiming(20_000, 20_000))
    out["audio only"] = audio_only(folder / "audio.mp4")
    out["hours-long declared duration"] = frames_video(folder / "long.mkv", [0.0, 7200.0])
    out["svg"] = folder / "drawing.svg"
    out["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9"/></svg>')
    out["svg named mp4"] = folder / "drawing.mp4"
    out["svg named mp4"].write_text(out["svg"].read_text())
    out["html named html"] = folder / "page.html"
    out["html named html"].write_bytes(files["html page"])
    return out


def odd_but_valid(folder: Path) -> dict[str, Path]:
    """Files that are fine, only unusual: an answer or one sentence, never a failure."""
    gif = folder / "anim.gif"
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (10, 120, 240)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    image = folder / "image.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    return {
        "image renamed as video": Path(image.rename(folder / "image.mp4")),  # FFmpeg reads it as the image it is
        "one frame": write_video(folder / "one.mp4", 1),
        "yuv444p": frames_video(folder / "yuv444.mp4", [0, 0.04, 0.08], pix_fmt="yuv444p"),
        "gray ffv1": frames_video(folder / "gray.mkv", [0, 0.04, 0.08], codec="ffv1", pix_fmt="gray"),
        "gif": gif,
    }


def one_sentence(message: str) -> bool:
    return (bool(message) and message != UNEXPECTED and "\n" not in message and len(message) < 400
            and message.rstrip().endswith((".", ")")) and "Traceback" not in message and "None" != message)


def raw_call(url: str, name: str, data: list) -> tuple[str, str]:
    """POST /gradio_api/call/<name>, read the stream: (event, data) of its last event."""
    request = urllib.request.Request(f"{url}/gradio_api/call/{name}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    event_id = json.load(urllib.request.urlopen(request, timeout=60))["event_id"]
    lines = urllib.request.urlopen(f"{url}/gradio_api/call/{name}/{event_id}", timeout=120).read().decode().splitlines()
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event: ")]
    payloads = [line.split(": ", 1)[1] for line in lines if line.startswith("data: ")]
    return events[-1], payloads[-1]


BOUNDARY = "signlens-corpus"


def _multipart(path: Path) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def test_the_corpus_gets_one_sentence_each_and_leaves_nothing(webapp_server, tmp_path):
    from gestures import write_gesture_dataset

    url = webapp_server.url
    layout = webapp_server.layout
    dataset = write_gesture_dataset(layout.datasets / "gestures", train_per_class=1, test_per_class=1)
    try:
        _send_the_corpus(url, layout, tmp_path)
    finally:  # the server is shared with other tests: leave its data as it was
        shutil.rmtree(dataset)


def _send_the_corpus(url, layout, tmp_path) -> None:
    client = Client(url, verbose=False)
    gradio_tmp = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    stray_before = {p.name for p in gradio_tmp.glob("tmp*") if p.is_file()}
    data_before = snapshot(layout.root)

    bad = bad_files(tmp_path)
    good = write_video(tmp_path / "sign.mp4", 30)
    cases: list[tuple[str, str, tuple]] = []  # (what, endpoint, args); files are wrapped below
    for name, path in bad.items():
        cases.append((f"/recognize: {name}", "/recognize", (path, 0, 0)))
        cases.append((f"/curate_add_clip: {name}", "/curate_add_clip", (path, "book", "assets/glossaries/asl_core_320.txt")))
    for name, value in {"1e308": 1e308, "negative": -1, "text": "abc", "a list": [1], "an object": {}}.items():
        cases.append((f"/recognize start {name}", "/recognize", (good, value, 0)))
        if name != "1e308":  # an end past the clip is the clip's end, as with WLASL's frame_end
            cases.append((f"/recognize end {name}", "/recognize", (good, 0, value)))
    for name, value in {"a list": ["a", 1], "an object": {"a": 1}, "NUL": "I\x00WANT",
                        "control characters": "I\x07WANT\x1b[2J", "10,000 characters": "A" * HUGE,
                        "markup": "<script>alert(1)</script>", "empty": "", "only spaces": "   "}.items():
        cases.append((f"/sentence {name}", "/sentence", (value,)))
    for name, value in {"slash": "a/b", "dot dot": "..", "NUL": "x\x00y", "control": "x\x07", "10,000": "d" * HUGE,
                        "leading dot": ".hidden", "tab": "a\tb", "a list": ["x"]}.items():
        cases.append((f"dataset name {name}", "/curate_build_start", (value, "assets/glossaries/asl_core_320.txt",
                                                                        "WLASL100", [], "official", ["accepted"])))
        cases.append((f"run name {name}", "/finetune_start", ("gestures", value, 1, 1, 1e-4, 8, False)))
        cases.append((f"clip reference {name}", "/curate_exclude", (f"wlasl:{value}" if isinstance(value, str) else value,)))
        cases.append((f"gloss {name}", "/curate_relabel", ("wlasl:07069", value, "assets/glossaries/asl_core_320.txt")))
    for name, args in {"epochs text": ("abc", 5, 1e-4, 8), "nothing to train": (0, -1, 1e-4, 8),
                       "rank 0": (1, 5, 1e-4, 0), "learning rate 5": (1, 5, 5, 8)}.items():
        epochs, steps, rate, rank = args
        cases.append((f"/finetune_start {name}", "/finetune_start", ("gestures", "", epochs, steps, rate, rank, False)))
    cases.append(("/recognize_batch broken files", "/recognize_batch", ([bad["svg"], bad["zero bytes"]], 0, 0)))

    failures = []
    for what, endpoint, args in cases:
        wrapped = [handle_file(str(a)) if isinstance(a, Path) else
                   [handle_file(str(x)) for x in a] if isinstance(a, list) and a and isinstance(a[0], Path) else a
                   for a in args]
        try:
            result = client.predict(*wrapped, api_name=endpoint)
        except AppError as exc:
            if not one_sentence(str(exc)):
                failures.append(f"{what}: {str(exc)[:200]!r}")
            continue
        except Exception as exc:  # the client refused to send it (e.g. a file type): still one sentence
            if not one_sentence(str(exc)):
                failures.append(f"{what}: client {type(exc).__name__} {str(exc)[:200]!r}")
            continue
        if endpoint == "/recognize_batch" and all(one_sentence(row.get("error", "")) for row in result):
            continue
        failures.append(f"{what}: accepted ({str(result)[:120]})")

    for name, path in odd_but_valid(tmp_path).items():  # unusual, not broken: an answer or a sentence
        try:
            assert client.predict(handle_file(str(path)), 0, 0, api_name="/recognize")["top5"]
        except AppError as exc:
            if not one_sentence(str(exc)):
                failures.append(f"odd {name}: {str(exc)[:200]!r}")

    uploaded = json.load(urllib.request.urlopen(urllib.request.Request(
        f"{url}/gradio_api/upload", data=_multipart(good), headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})))[0]
    clip = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    raw = {"missing every argument": ("recognize", []), "missing the trim": ("recognize", [None]),
           "sentence without text": ("sentence", []), "batch without files": ("recognize_batch", []),
           "file without meta": ("recognize", [{"path": str(good)}, 0, 0]),
           "file not uploaded here": ("recognize", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, 0, 0])}
    # Numbers JSON cannot carry (gradio_client refuses to send them; a script need not).
    for name, value in {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.items():
        raw[f"start {name}"] = ("recognize", [clip, value, 0])
        raw[f"end {name}"] = ("recognize", [clip, 0, value])
        raw[f"epochs {name}"] = ("finetune_start", ["gestures", "", value, -1, 1e-4, 8, False, 0])
        raw[f"lora_r {name}"] = ("finetune_start", ["gestures", "", 1, 5, 1e-4, value, False, 0])
    # A value outside a Dropdown's, Radio's or CheckboxGroup's choices (Gradio's own message
    # lists every choice), and numbers where a gloss goes.
    glossary, selection = "assets/glossaries/asl_core_320.txt", ("WLASL100", [], "official", ["accepted"])
    wrong_choices = {
        "source not offered": ("curate_stats", [glossary, "WLASL100", ["evil.example"], "official", ["accepted"]]),
        "glossary not offered": ("curate_stats", ["/etc/passwd", *selection]),
        "subset not offered": ("curate_stats", [glossary, "WLASL9999", [], "official", ["accepted"]]),
        "split rule not offered": ("curate_stats", [glossary, "WLASL100", [], "random", ["accepted"]]),
        "status not offered": ("curate_stats", [glossary, "WLASL100", [], "official", ["accepted", "deleted"]]),
        "10,000-character choice": ("curate_pending", [glossary, "W" * HUGE, [], "official", ["accepted"]]),
        "number as a choice": ("curate_clips", [None, 7, *selection]),
    }
    raw.update(wrong_choices)
    for name, value in {"an integer": 5, "a float": 3.5, "a boolean": True}.items():
        raw[f"gloss {name}"] = ("curate_relabel", ["wlasl:07069", value, glossary])
        raw[f"clip gloss {name}"] = ("curate_add_clip", [clip, value, glossary])
    messages = {}
    for what, (name, data) in raw.items():
        event, payload = raw_call(url, name, data)
        message = (json.loads(payload) or {}).get("error") if event == "error" else None
        messages[what] = message
        if event != "error" or not one_sentence(message or ""):
            failures.append(f"HTTP {what}: {event} {payload[:200]}")
    assert messages["source not offered"] == "'evil.example' is not one of the choices for Sources (none = all)."
    assert all("choices" in (messages[what] or "") and len(messages[what]) < 120 for what in wrong_choices)

    count = len(cases) + len(raw) + 5
    assert count >= 100
    assert failures == [], f"{len(failures)} of {count} cases: " + "; ".join(failures)
    assert client.predict(handle_file(str(good)), 0, 0, api_name="/recognize")["file"] == "sign.mp4"  # still serving
    assert snapshot(layout.root) - data_before == set()  # nothing stored or half-written
    assert not layout.runs.exists() or not any(layout.runs.iterdir())  # no run launched
    assert {p.name for p in gradio_tmp.glob("tmp*") if p.is_file()} - stray_before == set()


# --- property-based: bounded in time, no server needed ----------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".mp4", ".webm", ".avi", ".png", ".jpg", ".gif", ".mkv"]))
def test_load_clip_refuses_any_bytes_with_one_sentence(tmp_path, data, suffix):
    from engine import ClipError, LimitsConfig, load_clip

    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        clip = load_clip(path, num_frames=4, limits=LimitsConfig())
    except ClipError as exc:
        assert one_sentence(str(exc)), str(exc)
    else:  # random bytes that happen to decode: then they are real frames
        assert len(clip.frames) >= 1 and clip.frames[0].ndim == 3


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=300), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                                 st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(start=_values, end=_values)
def test_trim_arguments_are_checked_with_one_sentence(start, end):
    from engine import ClipError
    from engine.video import _trim_seconds

    try:
        span = _trim_seconds(start, end)
    except ClipError as exc:
        assert one_sentence(str(exc)), str(exc)
    else:
        assert span is None or (math.isfinite(span[0]) and span[0] >= 0 and (span[1] == 0 or span[1] > span[0]))


@settings(max_examples=300, deadline=None)
@given(value=_values)
def test_names_and_glosses_are_checked_with_one_sentence(value):
    from engine import SignLensError
    from training.dataset import check_gloss, check_name
    from training.finetune.runs import check_name as check_run_name

    for check in (check_gloss, check_name, check_run_name):
        try:
            accepted = check(value)
        except SignLensError as exc:
            assert one_sentence(str(exc)), str(exc)
        else:
            assert isinstance(accepted, str) and accepted == accepted.strip() and accepted
            assert "/" not in accepted and "\x00" not in accepted and not accepted.startswith(".")

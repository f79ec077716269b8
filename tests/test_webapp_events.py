"""The web app's event functions, called directly (no server): Upload, Live, API."""

from __future__ import annotations

import json
import threading
import time

import gradio as gr
import numpy as np
import pytest

from engine import Engine
from engine.config import LimitsConfig
from engine.segmentation import LiveConfig
from engine.video import load_clip
from media import write_video
from training.curate.userdata import read_clips
from training.layout import DataLayout
from webapp.app import build_app
from webapp.live import LiveSession
from webapp import samples
from webapp.samples import signer_frames

FPS = 10


# Saving a clip is an admin's action: Gradio passes the caller's request first (webapp/access.py);
# a local server lets anyone, so no login is needed.
LOCAL_CALLER = None


def event(app: gr.Blocks, api_name: str):
    """The Python function behind the event with this api_name."""
    return next(f.fn for f in app.fns.values() if f.api_name == api_name)


@pytest.fixture(scope="module")
def app(tiny_engine, tmp_path_factory):
    layout = DataLayout.at(tmp_path_factory.mktemp("data"))
    return build_app(tiny_engine, layout=layout), layout


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    good = write_video(folder / "sign.mp4", signer_frames(still_s=0.5, move_s=1.0), fps=FPS)
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    return good, text


def test_every_event_is_named_and_only_the_api_is_public(app):
    blocks, _ = app
    names = {f.api_name: f.api_visibility for f in blocks.fns.values()}
    assert all(names), names
    public = {name for name, visibility in names.items() if visibility == "public"}
    # The recognition API, plus the Curate and Fine-tune tabs' actions (prefixed by tab).
    tabs = {name for name in public if name.startswith(("curate_", "finetune_"))}
    assert public - tabs == {"recognize", "recognize_batch", "sentence", "model_info"}
    assert {"curate_stats", "curate_relabel", "curate_build_start", "finetune_start", "finetune_activate"} <= tabs


def test_upload_one_clip_shows_top5_frames_and_timings(app, clips, tiny_engine):
    blocks, _ = app
    entries, label, gallery, timings, gloss, table, which, saved = event(blocks, "upload_recognize")([str(clips[0])], 0, 0)
    expected = tiny_engine.recognize(clips[0])
    assert list(label) == [p.gloss for p in expected.top] and len(label) == 5
    assert gloss == expected.top[0].gloss
    assert len(gallery) == tiny_engine.profile.frames_per_clip and gallery[0].shape[1] <= 224
    assert "decode" in timings and "model" in timings
    assert table.visible is False and which.choices[0][0] == "sign.mp4"


def test_upload_trims_by_seconds(app, clips):
    blocks, _ = app
    entries, *_ = event(blocks, "upload_recognize")([str(clips[0])], 0.5, 1.0)
    frames = entries[0]["timings"].split("frames sampled: ")[1].split(" of ")[0]
    assert all(5 <= int(i) <= 9 for i in frames.split(", "))  # frames 6..10 (1-based) at 10 fps


def test_upload_many_keeps_going_and_a_single_bad_file_is_one_sentence(app, clips):
    blocks, _ = app
    recognize = event(blocks, "upload_recognize")
    entries, label, *_, table, which, saved = recognize([str(clips[0]), str(clips[1])], 0, 0)
    assert table.visible is True
    rows = table.value["data"]
    assert rows[0][0] == "sign.mp4" and rows[0][1] and not rows[0][-1]
    assert rows[1][0] == "notes.mp4" and rows[1][-1] == "The file notes.mp4 is not a video we can read."
    with pytest.raises(gr.Error, match="The file notes.mp4 is not a video we can read."):
        recognize([str(clips[1])], 0, 0)
    with pytest.raises(gr.Error, match="Drop a clip"):
        recognize([], 0, 0)


def test_correct_this_saves_the_clip_with_a_manifest_line(app, clips):
    blocks, layout = app
    entries, *_ = event(blocks, "upload_recognize")([str(clips[0])], 0, 0)
    message = event(blocks, "upload_correct")(LOCAL_CALLER, entries, "sign.mp4", "hello")
    assert "hello" in message and "not in the model's vocabulary" in message  # as Curate's glossary note
    assert "already saved" in event(blocks, "upload_correct")(LOCAL_CALLER, entries, "sign.mp4", "hello")  # no second copy
    [record] = [c for c in read_clips(layout) if c.gloss == "hello"]
    assert record.source == "upload" and record.predicted == entries[0]["top"][0][0]
    assert (layout.root / record.clip).read_bytes() == clips[0].read_bytes()
    line = layout.user_manifest.read_text().splitlines()[-1]
    assert json.loads(line)["gloss"] == "hello"
    with pytest.raises(gr.Error, match="Choose the gloss"):
        event(blocks, "upload_correct")(LOCAL_CALLER, entries, "sign.mp4", "")
    with pytest.raises(gr.Error, match="Recognize a clip first"):
        event(blocks, "upload_correct")(LOCAL_CALLER, [], None, "hello")


class RecordingEngine:
    """The tiny engine, recording what recognize() was given, optionally held at a gate."""

    def __init__(self, engine: Engine, gate: threading.Event | None = None):
        self._engine, self.gate, self.seen = engine, gate, []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def recognize(self, source, **kwargs):
        self.seen.append(source)
        if self.gate is not None:
            self.gate.wait(10)
        return self._engine.recognize(source, **kwargs)

    def recognize_encoded(self, frames, **kwargs):
        """Live's path (early encoding): recorded as the frames the features came from."""
        self.seen.append([getattr(f, "frame", f) for f in frames])
        if self.gate is not None:
            self.gate.wait(10)
        return self._engine.recognize_encoded(frames, **kwargs)


def test_live_unmirrors_frames_and_never_waits_for_the_model(tiny_engine, tmp_path):
    gate = threading.Event()
    engine = RecordingEngine(tiny_engine, gate)
    blocks = build_app(engine, layout=DataLayout.at(tmp_path), live_config=LiveConfig())
    on_frame, poll = event(blocks, "live_frame"), event(blocks, "live_poll")
    camera = signer_frames(still_s=1.0, move_s=1.2, width=640, height=480)
    assert on_frame(None, None)[0] is not None  # a missing frame is skipped, not an error
    first = on_frame(None, camera[0])[0]  # the first frame creates the session's state
    assert isinstance(first, LiveSession)
    first.close()
    clock = iter(np.arange(0, 100, 1 / FPS))  # frames arriving at 10 fps, however fast the test runs
    session, drawn = LiveSession(engine, LiveConfig(), clock=lambda: float(next(clock))), []
    for frame in camera:
        browser_frame = np.ascontiguousarray(frame[:, ::-1])  # Gradio mirrors what it sends
        drawn.append(on_frame(session, browser_frame))
    assert isinstance(session, LiveSession)
    # Every frame was handled while the model was held at the gate: the handler never waits
    # for it (how fast a frame is handled is benchmarks/bench_live.py's to measure). The
    # worker reaches the sign once it has encoded the frames queued before its end.
    deadline = time.monotonic() + 20
    while not engine.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(engine.seen) == 1 and session.recognizer.pending == 1
    # The model got the camera's view (the moving hand on the image's left), not the mirror's.
    seen = engine.seen[0]
    assert any(any(np.array_equal(s, c) for c in camera) for s in seen)
    assert not any(np.array_equal(s, c[:, ::-1]) for s in seen for c in camera)
    timer = poll(session)[7]
    assert timer.__class__.__name__ in ("dict", "Timer")  # nothing to draw yet beyond the status
    # The sign being read showed in the transcript (a word, not only a colour), and the status said so.
    [pending] = [out for out in drawn if out[2] == [("recognizing…", "recognizing")]]
    assert "recognizing 1 sign" in pending[1] and "first sign takes longest" in pending[1]
    gate.set()
    deadline = time.monotonic() + 20
    while session.recognizer.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    status, transcript, top5, seen_gallery, latency, fix_entry, fix_guess, timer, announce, right = poll(session)
    assert len(transcript) == 1 and "%" in transcript[0][0]
    gloss = session.recognizer.transcript[0].gloss
    assert announce.startswith(f"Sign 1: {gloss.upper()}, ") and right == gloss  # Correct this starts on this sign
    assert "Expect about **" in latency and "s** per sign" in latency
    assert len(top5) == 5 and len(seen_gallery) == tiny_engine.profile.frames_per_clip
    assert "from the end of the sign" in latency
    assert timer.active is False
    # Nothing changed: the next poll redraws nothing.
    assert all(isinstance(v, dict) and v.get("__type__") == "update" for v in poll(session))


def test_live_pick_another_guess_sentence_and_clear(tiny_engine, tmp_path):
    blocks = build_app(tiny_engine, layout=DataLayout.at(tmp_path), live_config=LiveConfig(uncertain_below=1.0))
    session = LiveSession(tiny_engine, LiveConfig(uncertain_below=1.0))
    for i, frame in enumerate(signer_frames(still_s=1.0, move_s=1.2)):
        session.recognizer.feed(frame, i / FPS)
    deadline = time.monotonic() + 20
    while session.recognizer.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    outputs = event(blocks, "live_poll")(session)
    fix_entry, fix_guess = outputs[5], outputs[6]
    assert fix_entry.value == 0 and len(fix_guess.choices) == 3  # uncertain: three guesses offered
    second = fix_guess.choices[1][1]
    assert outputs[9] == fix_guess.choices[0][1]  # "Right gloss" starts on the chosen sign's gloss, not on "i"
    assert outputs[1][0][0].endswith(" ?") and outputs[1][0][1] == "uncertain (?)"  # a mark besides the colour
    assert "uncertain" in outputs[8]
    transcript, right = event(blocks, "live_pick")(session, 0, second)
    assert transcript[0][0].startswith(second.upper()) and transcript[0][1] == "sure" and right == second
    assert isinstance(event(blocks, "live_sentence")(session), str)
    # Correct this: the frames the model saw become a clip in the user data.
    message = event(blocks, "live_correct")(LOCAL_CALLER, session, 0, "thank-you")
    assert "thank-you" in message and "not in the model's vocabulary" in message
    again = event(blocks, "live_correct")(LOCAL_CALLER, session, 0, "thank-you")
    assert "already saved" in again
    [record] = read_clips(DataLayout.at(tmp_path))  # one click, one clip
    assert record.source == "live" and record.gloss == "thank-you" and record.predicted == fix_guess.choices[0][1]
    assert len(tiny_engine.recognize(tmp_path / record.clip).clip.frames) == tiny_engine.profile.frames_per_clip
    with pytest.raises(gr.Error, match="Choose the gloss"):
        event(blocks, "live_correct")(LOCAL_CALLER, session, 0, "")
    outputs = event(blocks, "live_clear")(session)
    assert outputs[1] == [] and outputs[-1] == ""
    with pytest.raises(gr.Error, match="no signs"):
        event(blocks, "live_sentence")(session)
    with pytest.raises(gr.Error, match="no signs"):
        event(blocks, "live_sentence")(None)
    session.close()


def test_saved_frames_of_odd_size_still_make_a_clip(tmp_path):
    # A webcam may send odd sides, which yuv420p cannot hold: the odd row/column goes.
    frames = [np.full((49, 65, 3), 40 * i, np.uint8) for i in range(4)]
    clip = load_clip(samples.write_video(tmp_path / "odd.mp4", frames, fps=8), num_frames=4, limits=LimitsConfig())
    assert clip.frames[0].shape == (48, 64, 3) and clip.total_frames == 4


def test_api_functions_return_json_and_plain_errors(app, clips):
    blocks, _ = app
    result = event(blocks, "recognize")(str(clips[0]), 0, 0)
    assert set(result) >= {"gloss", "confidence", "top5", "latency_ms", "timings", "frames"}
    assert result["gloss"] == result["top5"][0]["gloss"] and len(result["top5"]) == 5
    batch = event(blocks, "recognize_batch")([str(clips[0]), str(clips[1])], 0, 0)
    assert batch[0]["gloss"] and batch[1] == {"file": "notes.mp4", "error": "The file notes.mp4 is not a video we can read."}
    with pytest.raises(gr.Error, match="not a video"):
        event(blocks, "recognize")(str(clips[1]), 0, 0)
    assert event(blocks, "model_info")()["state"] == "ready"
    assert isinstance(event(blocks, "sentence")("I, WANT DRINK"), str)


def test_calls_while_the_model_loads_say_so(loading_engine, tmp_path, clips):
    loading, release = loading_engine
    blocks = build_app(loading, layout=DataLayout.at(tmp_path))
    for name, args in [("recognize", (str(clips[0]), 0, 0)), ("upload_recognize", ([str(clips[0])], 0, 0)), ("sentence", ("HELLO",))]:
        with pytest.raises(gr.Error, match="The model is still loading; try again in a moment."):
            event(blocks, name)(*args)
    assert event(blocks, "model_info")()["state"] == "loading"
    release.set()
    assert loading.wait(30).state == "ready"
    assert event(blocks, "recognize")(str(clips[0]), 0, 0)["gloss"]


def test_every_error_reaches_the_user_as_one_sentence(caplog):
    from training.errors import DatasetError
    from webapp.common import UNEXPECTED, user_errors

    def ours():
        raise DatasetError("The dataset x has no test clips; its splits are train.")

    def bug():
        raise KeyError("internal detail")

    with pytest.raises(gr.Error) as caught:
        user_errors(ours)()
    assert caught.value.message == "The dataset x has no test clips; its splits are train."
    with caplog.at_level("ERROR", logger="webapp.common"):
        with pytest.raises(gr.Error) as caught:
            user_errors(bug)()
    assert caught.value.message == UNEXPECTED and "internal detail" not in caught.value.message
    [record] = caplog.records
    assert record.exc_info and record.exc_info[0] is KeyError  # the traceback goes to the log


def settle(session: LiveSession) -> None:
    """Wait until the session's worker has finished every sign and early encode it was given."""
    session.recognizer._executor.submit(lambda: None).result(30)  # one worker thread, in order


def test_live_signs_count_against_the_clients_rate_limit(tiny_engine, tmp_path):
    from webapp.settings import ServerConfig

    engine = RecordingEngine(tiny_engine)
    blocks = build_app(engine, layout=DataLayout.at(tmp_path), live_config=LiveConfig(),
                       server=ServerConfig(rate_limit="2/minute"))
    on_frame = event(blocks, "live_frame")
    clock = iter(np.arange(0, 1000, 1 / FPS))  # frames at 10 fps, however fast the test runs
    sign = [np.ascontiguousarray(f[:, ::-1]) for f in signer_frames(still_s=1.0, move_s=1.2)]  # as the browser sends them
    alice, as_alice = LiveSession(engine, LiveConfig(), clock=lambda: float(next(clock))), gr.Request(username="alice")
    statuses, spoken = [], []  # status lines and screen-reader announcements drawn during each of alice's signs
    for _ in range(4):
        drawn = [on_frame(alice, frame, as_alice) for frame in sign]  # the stream goes on throughout
        settle(alice)
        drawn.append((None, *event(blocks, "live_poll")(alice)))
        statuses.append([out[1] for out in drawn if isinstance(out[1], str)])
        spoken.append([out[9] for out in drawn if isinstance(out[9], str)])
    # The first two signs were recognized; the third and fourth never reached the model.
    assert len(alice.recognizer.transcript) == 2 and len(engine.seen) == 2
    notice = "Too many signs (2 per 1 minute): this one was skipped, not recognized; try again in "
    assert not any(notice in line for lines in statuses[:2] for line in lines)
    assert any(notice in line for line in statuses[2]) and any(notice in line for line in statuses[3])
    assert alice.recognizer.notice.startswith(notice) and alice.recognizer.notice.endswith(" s.")
    assert any(line.startswith(notice) for line in spoken[2]) and not any(notice in line for line in spoken[1])
    # One count for all of a client's recognitions: alice's Sentence is refused too.
    with pytest.raises(gr.Error, match="Too many requests"):
        event(blocks, "live_sentence")(alice, as_alice)
    # Another client's signs are still recognized.
    bob = LiveSession(engine, LiveConfig(), clock=lambda: float(next(clock)))
    for frame in sign:
        on_frame(bob, frame, gr.Request(username="bob"))
    settle(bob)
    assert len(bob.recognizer.transcript) == 1 and bob.recognizer.notice == ""
    alice.close()
    bob.close()

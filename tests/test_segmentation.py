"""Sign segmentation on webcam-like frames, its config loader, and the live recognizer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.errors import ConfigError, SignLensError
from engine.live import LiveRecognizer
from engine.segmentation import LiveConfig, Segmenter, SegmenterConfig, load_live_config
from webapp.samples import signer_frames

FPS = 10


def run(segmenter: Segmenter, frames: list[np.ndarray], fps: int = FPS, start: float = 0.0) -> list[tuple[int, list[np.ndarray]]]:
    """Feed frames at `fps`; (index of the frame that closed it, segment) for each sign."""
    found = []
    for i, frame in enumerate(frames):
        segment = segmenter.feed(frame, start + i / fps)
        if segment is not None:
            found.append((i, segment))
    return found


@pytest.mark.parametrize("path", ["circle", "wave"])
def test_still_move_still_gives_one_sign_with_preroll(path):
    frames = signer_frames(path=path, width=640, height=480, still_s=1.0, move_s=1.2, noise=12)
    found = run(Segmenter(), frames)
    assert len(found) == 1
    closed_at, segment = found[0]
    # Motion is frames 10..21: the sign holds them, 2 preroll frames and 1 final hold,
    # and is closed 0.5 s (5 frames) after the motion stopped.
    ids = [next(i for i, f in enumerate(frames) if f is s) for s in segment]
    assert ids[0] == 8 and ids[-1] == 22 and ids == list(range(8, 23))
    assert closed_at == 26


def test_noise_and_stillness_start_nothing():
    rng = np.random.default_rng(0)
    base = signer_frames(still_s=1, move_s=0.1, width=640, height=480, noise=0)[0]
    frames = [np.clip(base.astype(np.int16) + rng.integers(-15, 16, base.shape), 0, 255).astype(np.uint8) for _ in range(50)]
    segmenter = Segmenter()
    assert run(segmenter, frames) == []
    assert not segmenter.active and segmenter.energy < 0.005


def test_a_twitch_is_dropped_and_a_long_motion_is_cut():
    twitch = signer_frames(still_s=1, move_s=0.2, width=320, height=240)
    assert run(Segmenter(), twitch) == []
    config = SegmenterConfig(max_seconds=1.0)
    long = signer_frames(still_s=0.5, move_s=3.0, width=320, height=240)
    found = run(Segmenter(config), long)
    assert len(found) >= 2
    assert all(len(segment) <= 1.0 * FPS + config.preroll_frames + config.start_frames + 1 for _, segment in found)


def test_flush_ends_the_sign_in_progress():
    frames = signer_frames(still_s=1, move_s=1.2, width=320, height=240)
    segmenter = Segmenter()
    run(segmenter, frames[:18])
    assert segmenter.active
    assert len(segmenter.flush()) >= 8
    assert not segmenter.active and segmenter.flush() is None


def test_live_config_file_and_overrides(tmp_path):
    config = load_live_config()
    assert config == LiveConfig()  # the shipped file holds the documented defaults
    path = tmp_path / "live.yml"
    path.write_text("live:\n  stream_every: 0.2\nsegmenter:\n  start_threshold: 0.05\n  stop_threshold: 0.02\n")
    config = load_live_config(path, overrides={"segmenter": {"stop_seconds": 1}})
    assert config.stream_every == 0.2 and config.segmenter.start_threshold == 0.05 and config.segmenter.stop_seconds == 1.0
    path.write_text("segmenter:\n  start_treshold: 0.05\n")
    with pytest.raises(ConfigError, match="start_treshold"):
        load_live_config(path)
    path.write_text("segmenters: {}\n")
    with pytest.raises(ConfigError, match="segmenters"):
        load_live_config(path)
    with pytest.raises(ConfigError, match="stop_threshold"):
        SegmenterConfig(start_threshold=0.01, stop_threshold=0.02)
    with pytest.raises(ConfigError, match="whole number"):
        load_live_config(overrides={"live": {"max_sessions": 2.5}})


class SlowEngine:
    """The tiny engine behind a gate: recognition waits until the test lets it go."""

    def __init__(self, engine, gate: threading.Event | None = None):
        self._engine, self.gate, self.seen = engine, gate, []
        self.config = engine.config
        self.profile = engine.profile

    def recognize(self, frames, **kwargs):
        self.seen.append(list(frames))
        if self.gate is not None:
            self.gate.wait(10)
        return self._engine.recognize(frames, **kwargs)


def test_live_recognizer_never_waits_for_the_model(tiny_engine, monkeypatch):
    monkeypatch.setattr(LiveRecognizer, "KEEP_FRAMES", 1)
    gate = threading.Event()
    engine = SlowEngine(tiny_engine, gate)
    live = LiveRecognizer(engine, LiveConfig())
    frames = signer_frames(still_s=1, move_s=1.2, width=640, height=480) * 2
    costs = []
    for i, frame in enumerate(frames):
        started = time.perf_counter()
        live.feed(frame, i / FPS)
        costs.append(time.perf_counter() - started)
    assert live.pending == 2 and not live.transcript  # two signs sent off, the model is held
    assert max(costs) < 0.05, f"a frame waited {max(costs) * 1000:.0f} ms"
    gate.set()
    deadline = time.monotonic() + 20
    while live.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(live.transcript) == 2 and live.version >= 2
    entry = live.transcript[0]
    assert len(entry.thumbnails) == tiny_engine.profile.frames_per_clip and entry.latency_ms > 0
    # Full frames are kept for the newest sign only (KEEP_FRAMES = 1 here).
    assert entry.frames == () and len(live.transcript[1].frames) == tiny_engine.profile.frames_per_clip
    # The second guess can replace the first; Clear empties the transcript.
    live.choose(0, entry.top[1].gloss)
    assert live.glosses()[0] == entry.top[1].gloss
    with pytest.raises(SignLensError):
        live.choose(0, "not-a-guess")
    live.clear()
    assert live.glosses() == []
    live.close()


def test_live_recognizer_skips_signs_beyond_max_pending(tiny_engine):
    gate = threading.Event()
    live = LiveRecognizer(SlowEngine(tiny_engine, gate), LiveConfig(max_pending=1))
    frames = signer_frames(still_s=1, move_s=1.2, width=320, height=240) * 3
    for i, frame in enumerate(frames):
        live.feed(frame, i / FPS)
    assert live.pending == 1 and "skipped" in live.notice
    gate.set()
    live.close()

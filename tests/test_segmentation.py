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
    config = SegmenterConfig()
    found = run(Segmenter(config), frames)
    assert len(found) == 1
    closed_at, segment = found[0]
    # Motion is frames 10..21: the sign holds them, the preroll frames before and the
    # final hold after, and is closed stop_seconds after the motion stopped.
    ids = [next(i for i, f in enumerate(frames) if f is s) for s in segment]
    assert ids == list(range(10 - config.preroll_frames, 22 + config.postroll_frames))
    assert closed_at == 21 + round(config.stop_seconds * FPS)


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
        self._engine, self.gate, self.seen, self.encoded = engine, gate, [], []
        self.config = engine.config
        self.profile = engine.profile

    def recognize(self, frames, **kwargs):
        self.seen.append(list(frames))
        if self.gate is not None:
            self.gate.wait(10)
        return self._engine.recognize(frames, **kwargs)

    def encode_frames(self, frames):
        self.encoded.append(self._engine.encode_frames(frames)[0])
        return self.encoded[-1:]

    def recognize_encoded(self, frames, **kwargs):
        self.seen.append(list(frames))
        if self.gate is not None:
            self.gate.wait(10)
        return self._engine.recognize_encoded(frames, **kwargs)


def test_live_recognizer_never_waits_for_the_model(tiny_engine, monkeypatch):
    monkeypatch.setattr(LiveRecognizer, "KEEP_FRAMES", 1)
    gate = threading.Event()
    engine = SlowEngine(tiny_engine, gate)
    live = LiveRecognizer(engine, LiveConfig())
    frames = signer_frames(still_s=1, move_s=1.2, width=640, height=480) * 2
    for i, frame in enumerate(frames):
        live.feed(frame, i / FPS)
    # Every frame returned while the model was held: two signs sent off, none recognized.
    # (What a frame costs is measured by benchmarks/bench_live.py, not asserted here.)
    assert live.pending == 2 and not live.transcript
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


def wait_idle(live: LiveRecognizer) -> None:
    deadline = time.monotonic() + 20
    while live.pending and time.monotonic() < deadline:
        time.sleep(0.02)


def test_early_encoding_reads_encoded_frames_and_answers_like_recognize(tiny_engine):
    from engine import EncodedFrame

    engine = SlowEngine(tiny_engine)
    live = LiveRecognizer(engine, LiveConfig())
    frames = signer_frames(still_s=1, move_s=1.2, width=320, height=240)
    encoded_before_end = None
    for i, frame in enumerate(frames):
        encoded = len(engine.encoded)
        if live.feed(frame, i / FPS):
            encoded_before_end = encoded
            break
        # A worker that keeps up with the camera: what this frame queued is encoded before the next.
        deadline = time.monotonic() + 20
        while live._queued_encodes and time.monotonic() < deadline:
            time.sleep(0.005)
    # Frames were encoded while the sign went on, before the frame that ended it.
    assert encoded_before_end is not None and encoded_before_end >= tiny_engine.profile.frames_per_clip
    wait_idle(live)
    (read,) = engine.seen
    assert len(read) == tiny_engine.profile.frames_per_clip
    # Every frame the model read was one of those encoded early: nothing left for the end.
    assert all(isinstance(f, EncodedFrame) for f in read)
    assert {id(f) for f in read} <= {id(f) for f in engine.encoded[:encoded_before_end]}
    # The same answer as recognizing those frames the usual way.
    reference = tiny_engine.recognize([f.frame for f in read])
    entry = live.transcript[0]
    assert [p.gloss for p in entry.top] == [p.gloss for p in reference.top]
    assert [p.probability for p in entry.top] == pytest.approx([p.probability for p in reference.top], rel=1e-5)
    live.close()


def test_chosen_frames_are_evenly_spaced_among_the_encoded_ones():
    from engine.live import chosen_indices, early_stride

    config = LiveConfig()
    assert early_stride(config, 8) == 1 and early_stride(config, 4) == 3
    assert early_stride(LiveConfig(stream_every=0.05), 4) == 6  # twice the frame rate, half as often
    assert chosen_indices(30, 3, 4) == [3, 9, 18, 24]  # the middles of 4 equal parts of 0, 3, ..., 27
    assert all(i % 3 == 0 for i in chosen_indices(30, 3, 8))
    # Too short a sign for the stride: spaced over the whole sign, as without early encoding.
    assert chosen_indices(6, 3, 4) == [0, 2, 3, 5]


def test_a_camera_slower_than_the_stream_still_gives_one_sign():
    # A webcam at 5 fps sent at 10 fps repeats every frame: half the frames show no
    # change at all. The three-frame median must still see one sign, not none or many.
    frames = signer_frames(width=320, height=240, fps=5, still_s=1.0, move_s=1.2, noise=0)
    doubled = [frame for frame in frames for _ in range(2)]
    found = run(Segmenter(), doubled)
    assert len(found) == 1
    assert len(found[0][1]) >= 1.2 * FPS


def test_a_pause_shorter_than_stop_seconds_keeps_a_repeated_sign_whole():
    # BOOK, BED, MOTHER: two movements with the hands held up between them.
    config = SegmenterConfig()
    one = signer_frames(width=320, height=240, still_s=1.0, move_s=1.0)
    moving = one[10:20]
    hold = [moving[-1]] * round((config.stop_seconds - 0.3) * FPS)
    rest = one[:10]
    assert len(run(Segmenter(config), rest + moving + hold + moving + rest)) == 1
    long_hold = [moving[-1]] * round((config.stop_seconds + 0.3) * FPS)
    assert len(run(Segmenter(config), rest + moving + long_hold + moving + rest)) == 2


def test_a_jump_of_the_picture_ends_the_sign_and_starts_nothing():
    frames = signer_frames(width=320, height=240, still_s=1.0, move_s=1.2, noise=4)
    other = [np.roll(frame, 40, axis=1) for frame in frames[:10]]  # the camera moved: a cut
    # While idle, a cut is one big change between two still pictures: no sign.
    segmenter = Segmenter()
    assert run(segmenter, frames[:10] + other) == [] and not segmenter.active
    # In the middle of a sign, the cut ends it at once, without the new picture's frames.
    cut_at = 16
    stream = frames[:cut_at] + other
    found = run(Segmenter(), stream)
    assert len(found) == 1
    closed_at, segment = found[0]
    assert closed_at == cut_at + 1  # the frame after the jump shows it was one
    assert all(any(f is s for f in frames[:cut_at]) for s in segment)


def test_a_cut_straight_into_the_next_sign_ends_the_first_sign_there():
    # Dictionary compilations cut from one sign to the next, often with the next hand
    # already moving on the first frame after the cut: the frame after the cut changes
    # less than the cut, but not four times less.
    frames = signer_frames(width=320, height=240, still_s=1.0, move_s=1.2, noise=4)
    shifted = [np.roll(frame, 8, axis=1) for frame in frames]  # the next shot, framed a little apart
    cut_at = 25
    stream = frames[:22] + [frames[21]] * (cut_at - 22) + shifted[12:]
    found = run(Segmenter(), stream)
    assert len(found) == 2
    (first_closed, first), (_, second) = found
    assert first_closed == cut_at + 1
    assert all(any(f is s for f in frames) for s in first)
    assert all(any(f is s for f in shifted) for s in second)
    # Asking the frame after a cut to be 4x stiller reads this cut as a hand: one merged sign.
    merged = run(Segmenter(SegmenterConfig(jump_after_ratio=4.0)), stream)
    assert len(merged) == 1


def test_motion_is_measured_per_tenth_of_a_second_at_any_frame_rate():
    # At 20 fps the hand moves half as far between frames as at 10 fps; the thresholds
    # must mean the same movement at both rates.
    peaks = {}
    for fps in (10, 20):
        frames = signer_frames(width=320, height=240, fps=fps, still_s=1.0, move_s=1.2, noise=4)
        segmenter, energies, found = Segmenter(), [], []
        for i, frame in enumerate(frames):
            found.append(segmenter.feed(frame, i / fps))
            energies.append(segmenter.energy)
        assert sum(segment is not None for segment in found) == 1
        peaks[fps] = np.mean(sorted(energies)[-5:])
    assert 0.7 < peaks[20] / peaks[10] < 1.4


def _held_sign(config: SegmenterConfig, hold_s: float) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Rest, a wave that stops with the hand up at head height, and the rest of the wave back down."""
    frames = signer_frames(path="wave", width=320, height=240, still_s=1.0, move_s=2.0)
    rest, moving = frames[:10], frames[10:30]
    up, down = moving[:14], moving[14:]  # the hand is at head height at moving[13]
    return rest + up + [up[-1]] * round(hold_s * FPS), down, rest


def test_a_held_sign_then_the_hands_dropping_to_rest_gives_one_sign():
    config = SegmenterConfig()
    sign, drop, rest = _held_sign(config, hold_s=config.stop_seconds + 0.5)
    found = run(Segmenter(config), sign + drop + rest)
    assert len(found) == 1
    # The sign is the movement up, not the drop: closed by the hold.
    assert found[0][0] < len(sign)
    # Without the return-to-rest rule the drop is a second segment.
    assert len(run(Segmenter(SegmenterConfig(return_max_seconds=0.01)), sign + drop + rest)) == 2


def test_two_signs_separated_by_a_short_rest_give_two():
    config = SegmenterConfig()
    frames = signer_frames(path="circle", width=320, height=240, still_s=1.0, move_s=1.2)
    rest, moving = frames[:10], frames[10:22]
    short_rest = rest[: round((config.stop_seconds + 0.2) * FPS)]
    # Each sign starts at rest and ends at rest: neither is a return to rest.
    assert len(run(Segmenter(config), rest + moving + short_rest + moving + rest)) == 2
    # A held sign, its drop, a short rest and another held sign with its drop: two signs.
    sign, drop, _ = _held_sign(config, hold_s=config.stop_seconds + 0.5)
    assert len(run(Segmenter(config), sign + drop + short_rest + sign + drop + rest)) == 2


def test_a_sign_out_of_a_hold_that_does_not_end_at_rest_is_a_sign():
    # From the hold the hand waves back and holds again at head height: a second sign,
    # not a return (it ends away from the rest pose); then the hand drops to rest.
    config = SegmenterConfig()
    frames = signer_frames(path="wave", width=320, height=240, still_s=1.0, move_s=2.0)
    rest, up = frames[:10], frames[10:24]
    hold = round((config.stop_seconds + 0.5) * FPS)
    second = up[12:5:-1]  # waving back, the hand still up (full blend from up[6] on)
    stream = rest + up + [up[-1]] * hold + second + [second[-1]] * hold + up[5::-1] + rest
    assert len(run(Segmenter(config), stream)) == 2


def test_admit_skips_a_refused_sign_and_the_next_one_reads_only_its_own_frames(tiny_engine):
    answers = iter(["", "Too many signs: this one was skipped.", ""])
    engine = SlowEngine(tiny_engine)
    live = LiveRecognizer(engine, LiveConfig(), admit=lambda: next(answers))
    # Three different signs, one after another: the model must never mix their frames.
    signs = [signer_frames(width=320, height=240, path=path, seed=seed) for seed, path in enumerate(["circle", "wave", "circle"])]
    encoded, notices, t = [], [], 0.0
    for frames in signs:
        for frame in frames:
            live.feed(frame, t)
            t += 1 / FPS
        live._executor.submit(lambda: None).result(20)  # the worker did all it was given (one thread, in order)
        encoded.append(len(engine.encoded))
        notices.append(live.notice)
    assert notices == ["", "Too many signs: this one was skipped.", ""]
    assert len(engine.seen) == 2 and len(live.transcript) == 2  # the second sign never reached the model
    # After a refusal nothing is encoded early (a refused client costs no model work); the
    # next admitted sign is encoded at its end, from its own frames, not the refused sign's.
    assert 0 < encoded[0] < encoded[1] == encoded[2]
    read = [getattr(f, "frame", f) for f in engine.seen[1]]
    assert all(any(f is s for s in signs[2]) for f in read)
    reference = tiny_engine.recognize(read)
    assert [p.gloss for p in live.transcript[1].top] == [p.gloss for p in reference.top]
    live.close()

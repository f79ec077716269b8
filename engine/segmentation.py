"""Cut a webcam stream into signs: motion starts a sign, holding still ends it.

The webcam sends a steady stream of frames and the model wants one sign at a time. A
signer at rest is (nearly) still; a sign is hands moving. So each frame is shrunk to
~80 px wide, turned gray, and compared with the previous one: the *motion energy* is the
fraction of those pixels whose brightness changed by more than `pixel_delta`. Counting
changed pixels, rather than averaging the difference, ignores camera noise and JPEG
artefacts (a few gray levels everywhere) and a camera's slow exposure drift, while a
moving hand changes a patch of pixels by a lot.

Decisions use the median energy of the last three frames, not one frame's: a camera
that repeats a frame (a low-light webcam, a video converted between frame rates) shows
no change for one frame in the middle of a sign, and one glitch frame shows a lot of
change in the middle of a rest; neither decides alone.

Hysteresis keeps one sign one segment: motion must pass `start_threshold` on
`start_frames` frames in a row to start, and must stay under the lower `stop_threshold`
for `stop_seconds` to end, so the slow middle of a sign, or the short pause between
the two movements of a repeated sign (BOOK, BED, MOTHER pause 0.3-0.6 s on real WLASL
clips), does not cut it in two. Dropping the hands is motion followed by stillness, so
it ends a sign the same way. A few frames from before the motion (`preroll_frames`) are
kept: the hand shape a sign starts from is often held just before it moves.

A *jump* ends a sign at once: one frame that changes far more than the two frames before
it (`jump_threshold`, `jump_ratio`) and at least `jump_after_ratio` times more than the
one after it is the picture changing, not a hand (a cut in a video, a camera switch, an
exposure step); frames on either side of it cannot be compared, so a sign never spans
one. A hand that starts fast keeps moving: the frame after changes at least half as
much (0.3-1.7x on the 232 real isolated clips while a sign is recorded, at 10 and 15
fps). A cut is one change: the frame after it is still, or shows the next shot's own
signing, which changes far less than the cut (2.5x and up on real dictionary
compilations, where the next sign often starts right after the cut). Two frames before,
not one: a repeated frame just before a fast movement would otherwise make the movement
look like a jump.

A *return to rest* is not a sign: many signers end a sign with a hold of a second or
more, which ends the segment, and then drop their hands, which is motion followed by
stillness again. So the pose before a sign (the frame before it moved, shrunk to
~20 px, where a hand is a pixel or two) is kept as the rest pose; a movement that
starts from the hold that ended the previous sign, ends back near that rest pose, and is
short (`return_max_seconds`), is dropped. A movement out of a hold that ends elsewhere is
a new sign, and so is any movement that starts at rest.

Energy is counted per tenth of a second (the change between two frames, scaled by
0.1 s over the time between them): a hand moves two thirds as far between frames at
15 fps as at 10 fps, and the thresholds should mean the same motion at any rate.

Thresholds live in `SegmenterConfig` (defaults here, overrides in
`assets/config/live.yml`). Measured on the synthetic signer of `webapp/samples.py` at
640x480, 10 fps: a still scene with +-12 gray levels of per-pixel noise gives energy
0.000; one hand and forearm moving give 0.014-0.048. Real WLASL signers (480x320 down
to 288x192) give 0.005-0.2 while signing and 0.000-0.002 at rest; small signs (finger
movements near the face) peak at 0.004-0.01. Tune `start_threshold` up for a busy
background, down for a distant signer; `benchmarks/bench_segmentation.py` measures the
settings on real signing.

No gradio here: the web app feeds frames and gets segments back.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engine.config import build_config, merge_sections, project_path, read_config_file
from engine.errors import ConfigError

DEFAULT_LIVE_CONFIG = "assets/config/live.yml"


@dataclass(frozen=True)
class SegmenterConfig:
    # Frames are subsampled to about this many pixels wide before differencing: enough
    # to see fingers move (a hand is ~15 px at arm's length), and the cost no longer
    # depends on the camera. At 80 px the finger movements of small signs vanish into
    # the blocks on real clips.
    analysis_width: int = 160
    # A small pixel counts as changed when its gray level moved by more than this (0-255);
    # webcam noise and JPEG artefacts stay under ~10.
    pixel_delta: int = 20
    # Fraction of changed pixels that counts as the signer moving (starts a sign); camera
    # noise stays at 0, real signers at rest give 0.000-0.002, small real signs (COME
    # HERE, OR, WHO: fingers or one short flick) peak at 0.004-0.006.
    start_threshold: float = 0.004
    # Fraction under which a frame counts as still; lower than start_threshold
    # (hysteresis) so a slow part of a sign does not end it.
    stop_threshold: float = 0.003
    # Moving frames in a row needed to start a sign. The three-frame median already
    # needs two moving frames of three, so one flicker (a light, autofocus) starts nothing.
    start_frames: int = 1
    # Seconds of stillness that end a sign (a hold, or hands dropped to rest). Longer
    # than the pause inside a repeated sign (up to ~0.6 s on real clips), so BOOK stays one sign.
    stop_seconds: float = 0.8
    # Signs shorter than this (seconds of motion) are dropped as twitches.
    min_seconds: float = 0.3
    # A sign is cut here even if motion goes on (signing without pauses); most single
    # signs last 0.5-2 s, and the model samples a few frames from the whole span anyway.
    max_seconds: float = 4.0
    # Frames kept from just before the motion started (the sign's starting hand shape).
    preroll_frames: int = 2
    # Still frames kept after the motion stopped (the sign's final hold).
    postroll_frames: int = 1
    # A frame changing at least this fraction of pixels, ...
    jump_threshold: float = 0.04
    # ... and this many times more than the two frames before it, ...
    jump_ratio: float = 4.0
    # ... and this many times more than the frame after it, is a jump of the picture (a
    # cut, a camera switch), not a hand: it ends the sign. Real cuts change 0.07-0.18 of
    # the pixels; a hand starting fast changes similar amounts, but keeps moving, so the
    # frame after it changes at least half as much, while after a cut it is still or
    # shows the next shot's slower motion.
    jump_after_ratio: float = 2.0
    # Poses (where the hands are) are compared on frames shrunk to about this many pixels
    # wide: a hand is a pixel or two, so camera noise and a slight lean do not count,
    # hands up versus hands at rest do.
    pose_width: int = 20
    # A pose differs from another where at least this fraction of its pixels changed by
    # more than `pixel_delta`: hands raised from the lap to the chest change ~0.03-0.1.
    pose_change: float = 0.02
    # Return to rest: after a sign that ended in a hold (hands away from the rest pose seen
    # before it started), a movement that starts from that hold and ends back at the rest
    # pose (at most `return_ratio` as far from it as it started) is the hands dropping,
    # not a new sign; it is dropped when its motion lasts at most `return_max_seconds`
    # (dropping the hands takes 0.3-1 s on real clips; a sign moving out of a hold
    # usually ends elsewhere, and a long one is kept).
    return_ratio: float = 0.5
    return_max_seconds: float = 1.2

    def __post_init__(self) -> None:
        if self.analysis_width < 8:
            raise ConfigError(f"segmenter.analysis_width must be at least 8, got {self.analysis_width}.")
        if not 0 < self.pixel_delta < 255:
            raise ConfigError(f"segmenter.pixel_delta must be between 1 and 254, got {self.pixel_delta}.")
        if not 0 < self.stop_threshold <= self.start_threshold < 1:
            raise ConfigError(
                "segmenter thresholds must satisfy 0 < stop_threshold <= start_threshold < 1, "
                f"got stop {self.stop_threshold} and start {self.start_threshold}."
            )
        if not 0 < self.jump_threshold < 1 or self.jump_ratio < 1 or self.jump_after_ratio < 1:
            raise ConfigError(
                "segmenter.jump_threshold must be between 0 and 1, and jump_ratio and jump_after_ratio at least 1, "
                f"got {self.jump_threshold}, {self.jump_ratio} and {self.jump_after_ratio}."
            )
        if self.start_frames < 1 or self.preroll_frames < 0 or self.postroll_frames < 0:
            raise ConfigError("segmenter.start_frames must be at least 1 and the pre/postroll frames not negative.")
        if self.pose_width < 2 or not 0 < self.pose_change < 1 or not 0 < self.return_ratio <= 1 or self.return_max_seconds < 0:
            raise ConfigError(
                "segmenter.pose_width must be at least 2, pose_change between 0 and 1, return_ratio in (0, 1] "
                f"and return_max_seconds not negative, got {self.pose_width}, {self.pose_change}, "
                f"{self.return_ratio} and {self.return_max_seconds}."
            )
        if not 0 < self.min_seconds < self.max_seconds or self.stop_seconds <= 0:
            raise ConfigError(
                f"segmenter times must satisfy 0 < min_seconds < max_seconds and stop_seconds > 0, got "
                f"min {self.min_seconds}, max {self.max_seconds}, stop {self.stop_seconds}."
            )


@dataclass(frozen=True)
class LiveConfig:
    # Seconds between webcam frames sent to the server: 10 fps shows a sign's motion
    # and keeps the queue and the network light (each frame is a JPEG upload).
    stream_every: float = 0.1
    # Seconds one stream event holds a live slot; the page then re-joins the queue by
    # itself (state survives), so a forgotten tab cannot hold a slot forever.
    time_limit: int = 60
    # Webcam streams served at once (each holds one queue slot while it runs).
    max_sessions: int = 8
    # Camera resolution asked of the browser (the camera may give another).
    camera_width: int = 640
    camera_height: int = 480
    # Predictions below this probability are shown as uncertain, with other guesses offered.
    uncertain_below: float = 0.5
    # Finished signs waiting for the model, per session; more are skipped with a notice
    # rather than piling up behind a slow model.
    max_pending: int = 4
    # Run the vision tower on a sign's frames while it is being signed (every few frames,
    # see `engine.live.early_stride`), so that when it ends only the language model is
    # left to run: the wait after each sign shrinks by the vision tower's share. Costs
    # a few more frames encoded than the model reads; off runs everything at the end.
    encode_early: bool = True
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)

    def __post_init__(self) -> None:
        if not 0.02 <= self.stream_every <= 2:
            raise ConfigError(f"live.stream_every must be between 0.02 and 2 seconds, got {self.stream_every}.")
        if self.time_limit < 5 or self.max_sessions < 1 or self.max_pending < 1:
            raise ConfigError("live.time_limit must be at least 5 s, and max_sessions and max_pending at least 1.")
        if not 0 <= self.uncertain_below <= 1:
            raise ConfigError(f"live.uncertain_below must be a probability, got {self.uncertain_below}.")


def load_live_config(path: str | Path | None = None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> LiveConfig:
    """Read `live.yml` (sections `live:` and `segmenter:`); unknown keys are an error."""
    path = project_path(path or DEFAULT_LIVE_CONFIG)
    sections = merge_sections(str(path), ("live", "segmenter"), read_config_file(path), overrides)
    segmenter = build_config(SegmenterConfig, sections["segmenter"], f"{path}: segmenter")
    return build_config(LiveConfig, {**sections["live"], "segmenter": segmenter}, f"{path}: live")


class Segmenter:
    """Feed frames one at a time; get a finished sign back as a list of frames.

        segmenter = Segmenter()
        for frame in frames:                    # RGB uint8 HxWx3
            segment = segmenter.feed(frame)     # None, or the frames of one sign
    """

    def __init__(self, config: SegmenterConfig | None = None):
        self.config = config or SegmenterConfig()
        self.reset()

    def reset(self) -> None:
        cfg = self.config
        self._previous: np.ndarray | None = None
        # The last frames' energies: the median of three, and the jump test over four.
        self._energies: deque[float] = deque(maxlen=4)
        self._t_frame: float | None = None  # when the previous frame was taken
        # Frames before a sign: the preroll, plus the first moving frames before the
        # start is confirmed (they belong to the sign; the median confirms motion one
        # frame after it began, hence the + 1).
        self._before: deque[np.ndarray] = deque(maxlen=cfg.preroll_frames + cfg.start_frames + 1)
        self._before_gray: deque[np.ndarray] = deque(maxlen=cfg.preroll_frames + cfg.start_frames + 1)
        # Return to rest: the pose before the last sign that started at rest, the pose the
        # current segment started from, and whether the last sign ended in a hold away from rest.
        self._rest_pose: np.ndarray | None = None
        self._start_pose: np.ndarray | None = None
        self._held = False
        self._run = 0  # moving frames in a row while idle
        self._frames: list[np.ndarray] | None = None  # the sign being recorded
        self._started = 0.0
        self._last_motion = 0.0
        self._last_moving_index = 0  # index in _frames of the last moving frame
        self.energy = 0.0
        self._gray: np.ndarray | None = None  # the latest frame, small and gray

    @property
    def recording(self) -> list[np.ndarray]:
        """The frames of the sign being recorded so far (empty when idle); for reading only.

        Indices into it are stable while the sign goes on (frames are only appended, and
        `_finish` only drops the tail), so a frame's index names it in the finished sign.
        """
        return self._frames or []

    @property
    def active(self) -> bool:
        """True while a sign is being recorded."""
        return self._frames is not None

    def motion_energy(self, frame: np.ndarray) -> float:
        """Fraction of small gray pixels that changed since the previous frame (0 for the first)."""
        gray = self.small_gray(frame)
        previous, self._previous = self._previous, gray
        self._gray = gray
        if previous is None or previous.shape != gray.shape:
            return 0.0
        return float(np.count_nonzero(np.abs(gray - previous) > self.config.pixel_delta)) / gray.size

    def small_gray(self, frame: np.ndarray) -> np.ndarray:
        """The frame shrunk to about `analysis_width` pixels wide, gray, as int16."""
        step = max(1, frame.shape[1] // self.config.analysis_width)
        half = step // 2
        # Four strided samples per small pixel (a 2x2 subset of its block), summed: the
        # noise of a single camera pixel is halved for 4 reads of ~19,000 values, where
        # averaging whole blocks would read all 300,000 pixels of a VGA frame.
        rows, cols = frame.shape[0] // step * step, frame.shape[1] // step * step
        total = np.zeros((rows // step, cols // step), dtype=np.uint32)
        for dy in {0, half}:
            for dx in {0, half}:
                small = frame[dy:rows:step, dx:cols:step]
                # Integer luma, BT.601 weights / 256.
                total += small[..., 0] * np.uint32(77) + small[..., 1] * np.uint32(150) + small[..., 2] * np.uint32(29)
        return (total >> (8 + (2 if half else 0))).astype(np.int16)

    def feed(self, frame: np.ndarray, t: float | None = None) -> list[np.ndarray] | None:
        """Add one frame taken at time `t` (seconds, default now); return a finished sign or None."""
        cfg = self.config
        t = time.monotonic() if t is None else t
        # Per tenth of a second; clamped so one late or doubled frame does not swing it.
        previous_t, self._t_frame = self._t_frame, t
        interval = 0.1 if previous_t is None else t - previous_t
        self.energy = self.motion_energy(frame) * min(3.0, max(1 / 3, 0.1 / max(interval, 1e-3)))
        self._energies.append(self.energy)
        recent = sorted(list(self._energies)[-3:])
        energy = recent[len(recent) // 2]
        if self._jumped():
            # The frame before this one shows another picture: what came before it is over.
            segment = None
            if self._frames is not None:
                self._frames.pop()
                self._last_moving_index = min(self._last_moving_index, len(self._frames) - 1)
                segment = self._finish()
            self._before.clear()
            self._before_gray.clear()
            self._run = 0
            self._before.append(frame)
            self._before_gray.append(self._gray)
            # Another picture: poses seen before it cannot be compared with what follows.
            self._rest_pose, self._held = None, False
            return segment
        if self._frames is None:
            self._before.append(frame)
            self._before_gray.append(self._gray)
            self._run = self._run + 1 if energy >= cfg.start_threshold else 0
            if self._run >= cfg.start_frames:
                keep = cfg.preroll_frames + self._run + 1
                self._frames = list(self._before)[-keep:]
                self._start_pose = self.pose(list(self._before_gray)[-keep:][0])
                if self._rest_pose is None or not self._held:
                    # Started at rest (or nothing known yet): this is the rest pose.
                    self._rest_pose = self._start_pose
                self._started = self._last_motion = t
                self._last_moving_index = len(self._frames) - 1
                self._before.clear()
                self._before_gray.clear()
                self._run = 0
            return None

        self._frames.append(frame)
        if energy >= cfg.stop_threshold:
            # The median still reports the previous frame's motion one frame later.
            lagging = self.energy < cfg.stop_threshold
            self._last_motion = previous_t if lagging else t
            self._last_moving_index = len(self._frames) - 1 - lagging
        if t - self._started >= cfg.max_seconds:
            return self._finish()
        # A millisecond of slack: frame times are floats, and 2.9 - 2.1 is 0.7999...
        if t - self._last_motion >= cfg.stop_seconds - 1e-3:
            return self._finish(held=True)
        return None

    def _jumped(self) -> bool:
        """True when the previous frame changed far more than the two frames before it and this one."""
        if len(self._energies) < 4:
            return False
        first, second, middle, after = self._energies
        cfg = self.config
        return (
            middle >= cfg.jump_threshold
            and middle >= cfg.jump_ratio * max(first, second, cfg.stop_threshold)
            and middle >= cfg.jump_after_ratio * after
        )

    def flush(self) -> list[np.ndarray] | None:
        """End the sign being recorded now (the camera stopped); None if there is none."""
        return self._finish() if self._frames is not None else None

    def pose(self, gray: np.ndarray) -> np.ndarray:
        """A small gray frame shrunk to about `pose_width` pixels wide (block means)."""
        block = max(1, gray.shape[1] // self.config.pose_width)
        rows, cols = gray.shape[0] // block, gray.shape[1] // block
        return gray[: rows * block, : cols * block].reshape(rows, block, cols, block).mean(axis=(1, 3))

    def pose_distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Fraction of pose pixels that differ by more than `pixel_delta`."""
        return float(np.count_nonzero(np.abs(a - b) > self.config.pixel_delta)) / a.size

    def _finish(self, *, held: bool = False) -> list[np.ndarray] | None:
        """Close the segment; `held`: it ended in stillness (not cut, flushed or jumped)."""
        cfg = self.config
        frames, self._frames = self._frames or [], None
        self._run = 0
        # Trailing still frames are the signer waiting, not signing: keep the final hold only.
        frames = frames[: self._last_moving_index + 1 + cfg.postroll_frames]
        moved = self._last_motion - self._started
        if moved < cfg.min_seconds:
            return None
        after_hold, self._held = self._held, False
        if self._rest_pose is None or self._start_pose is None:
            return frames
        end_pose = self.pose(self._gray)
        from_rest = self.pose_distance(self._start_pose, self._rest_pose)
        to_rest = self.pose_distance(end_pose, self._rest_pose)
        if after_hold and from_rest >= cfg.pose_change and to_rest <= cfg.return_ratio * from_rest and moved <= cfg.return_max_seconds:
            return None  # the hands dropping back to rest after a held sign
        self._held = held and to_rest >= cfg.pose_change
        return frames

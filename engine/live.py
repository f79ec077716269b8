"""One webcam session: frames in, a transcript of recognized signs out, never blocking.

The web app calls `feed()` for every webcam frame; it must return in a millisecond or
two, whatever the model is doing. So `feed()` only runs the segmenter; a finished sign
is handed to this session's own single-thread worker, which calls the engine (the
engine's lock queues it behind other sessions' and uploads' model work). The UI polls
`version` and redraws when a result has landed.

One worker per session keeps a session's signs in order; it is a thread, not a process,
because the model releases the GIL while it computes.

With `encode_early` (issue 11, part 5) the worker also runs the vision tower while the
sign is still being signed: `feed()` enqueues every `early_stride`-th frame of the sign
in progress, the worker encodes it (`Engine.encode_frames`) and caches its features by
its index in the sign. Which frames the model reads is only known at the end, so they are
picked then, evenly spaced among the encoded ones (`chosen_indices`), and only the
language model is left to run (`Engine.recognize_encoded`, which encodes again any frame
that is missing or whose features an adapter swap made stale).

`admit` lets the caller ration the model: it is asked once per finished sign, just before
the sign would go to the worker, and a sentence back skips the sign with that sentence as
the notice (the web app counts signs against the client's rate limit). After a refusal,
early encoding pauses until a sign is admitted again, so a refused client's signs cost no
model work at all; the first sign admitted after that is encoded at its end instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from engine.errors import SignLensError
from engine.segmentation import LiveConfig, Segmenter
from engine.video import sample_indices

if TYPE_CHECKING:
    from engine.core import EncodedFrame, Engine, Prediction, Timings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveEntry:
    # The model's ranking, best first.
    top: tuple["Prediction", ...]
    # Which of `top` the transcript shows: 0 is the model's guess, others are the user's pick.
    chosen: int
    # Engine timings (decode, preprocess, model) of this sign.
    timings: "Timings"
    # From the end of the sign (the moment the segmenter closed it) to the result, in ms.
    latency_ms: float
    # Small copies of the frames the model saw, for display.
    thumbnails: tuple[np.ndarray, ...]
    # The frames the model saw, full size, kept for the last `KEEP_FRAMES` signs only
    # (for "Correct this"); empty for older ones, to bound a long session's memory.
    frames: tuple[np.ndarray, ...] = ()

    @property
    def gloss(self) -> str:
        return self.top[self.chosen].gloss

    @property
    def confidence(self) -> float:
        return self.top[self.chosen].probability


def early_stride(config: LiveConfig, count: int) -> int:
    """Encode every this many frames of a sign in progress: a typical sign then yields `count` or more.

    A typical sign moves for the geometric mean of the shortest and longest the segmenter
    keeps (1.1 s at 0.3 and 4 s, where most single signs last 0.5-2 s), at the stream's
    frame rate, plus the pre- and postroll frames. Rounding down errs toward encoding a
    few frames the model will not read rather than too few, which would leave some to
    encode after the sign.
    """
    segmenter = config.segmenter
    moving = math.sqrt(segmenter.min_seconds * segmenter.max_seconds) / config.stream_every
    typical = segmenter.preroll_frames + moving + segmenter.postroll_frames
    return max(1, int(typical // count))


def chosen_indices(length: int, stride: int, count: int) -> list[int]:
    """The `count` frames of a `length`-frame sign the model reads, when every `stride`-th was encoded.

    Evenly spaced among the encoded frames when there are enough of them; a short sign
    falls back to spacing them over the whole sign (the missing ones are encoded at its end).
    """
    encoded = range(0, length, stride)
    if len(encoded) >= count:
        return [encoded[i] for i in sample_indices(0, len(encoded) - 1, count)]
    return sample_indices(0, length - 1, count)


class LiveRecognizer:
    """Segment a stream of frames and recognize each finished sign in the background."""

    # Signs whose full frames are kept for saving (8 VGA frames are ~7 MB a sign).
    KEEP_FRAMES = 5
    # Early encodes waiting for the worker beyond which new frames are left for the end: a
    # worker this far behind is not keeping up with the camera, and a sign's end should
    # wait for at most this many encodes before its own work.
    EARLY_BACKLOG = 2

    def __init__(
        self,
        engine: "Engine",
        config: LiveConfig | None = None,
        *,
        thumbnail_width: int = 160,
        clock: Callable[[], float] = time.monotonic,
        admit: Callable[[], str] | None = None,
    ):
        self.engine = engine
        # Asked once per finished sign, on the stream's thread: "" to recognize it, else the
        # sentence saying why it is skipped. It must be quick (it runs inside `feed`).
        self._admit = admit
        self._clock = clock  # when frames arrive; tests pass a fake one
        self.config = config or LiveConfig()
        self.segmenter = Segmenter(self.config.segmenter)
        self._thumbnail_width = thumbnail_width
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-recognize")
        self._lock = threading.Lock()
        self._feed_lock = threading.Lock()  # the stream's thread feeds; Clear resets
        self.transcript: list[LiveEntry] = []
        # A sentence for the user about the last thing that went wrong (cleared by results).
        self.notice = ""
        # Signs handed to the worker and not finished yet.
        self.pending = 0
        # Bumped on every change the UI should draw.
        self.version = 0
        self._closed = False
        # Early encoding. Feed side (under _feed_lock): the number of the sign being
        # recorded, its stride, and how many of its frames were seen.
        self._sign = 0
        self._stride = 1
        self._seen = 0
        # Encodes waiting for the worker (under _lock), at most EARLY_BACKLOG.
        self._queued_encodes = 0
        # The last finished sign was refused by `admit`: no early encoding until one is admitted.
        self._refused = False
        # Worker side only: sign number -> {index in the sign: its encoded frame}.
        self._encoded: dict[int, dict[int, "EncodedFrame"]] = {}

    # ------------------------------------------------------------------ stream side
    def feed(self, frame: np.ndarray, t: float | None = None) -> bool:
        """One camera frame (RGB, as the camera sees the signer). True if a sign was just sent off."""
        with self._feed_lock:
            segment = self.segmenter.feed(frame, self._clock() if t is None else t)
            sign, stride = self._sign, self._stride
            if self.config.encode_early:
                self._encode_new_frames()
        return segment is not None and self._submit(segment, sign, stride)

    def flush(self) -> bool:
        """The camera stopped: send off the sign in progress, if any."""
        with self._feed_lock:
            segment = self.segmenter.flush()
            sign, stride, self._seen = self._sign, self._stride, 0
        return segment is not None and self._submit(segment, sign, stride)

    def _encode_new_frames(self) -> None:
        """Hand the worker every `stride`-th frame the sign in progress gained (under _feed_lock)."""
        recording = self.segmenter.recording
        if not recording:
            self._seen = 0
            return
        if self._seen == 0:  # a sign started: its preroll frames arrive at once
            # Numbered even when not encoded, so a sign never reads an earlier one's features.
            self._sign += 1
            self._stride = early_stride(self.config, self.engine.profile.frames_per_clip)
        if not self._refused:
            for index in range(self._seen, len(recording)):
                if index % self._stride == 0:
                    self._enqueue_encode(self._sign, index, recording[index])
        self._seen = len(recording)

    def _enqueue_encode(self, sign: int, index: int, frame: np.ndarray) -> None:
        with self._lock:
            if self._closed or self._queued_encodes >= self.EARLY_BACKLOG:
                return
            self._queued_encodes += 1
        self._executor.submit(self._encode, sign, index, frame)

    def _submit(self, frames: list[np.ndarray], sign: int, stride: int) -> bool:
        with self._lock:
            if self._closed:
                return False
            if self.pending >= self.config.max_pending:
                self.notice = "Signs are coming faster than the model can read them; one was skipped."
                self.version += 1
                return False
            # Asked only for a sign that would go to the model: one skipped above is not counted.
            refusal = self._admit() if self._admit is not None else ""
            self._refused = bool(refusal)
            if refusal:
                self.notice = refusal
                self.version += 1
                return False
            self.pending += 1  # shown in the status line; `version` waits for the result
        # Keep only the frames the model will read: a few MB per waiting sign, not 40 frames.
        count = self.engine.profile.frames_per_clip
        if self.config.encode_early:
            indices = chosen_indices(len(frames), stride, count)
        else:
            indices = sample_indices(0, len(frames) - 1, count)
        chosen = [(i, frames[i]) for i in indices]
        self._executor.submit(self._recognize, chosen, sign, time.perf_counter())
        return True

    # ------------------------------------------------------------------ worker side
    def _encode(self, sign: int, index: int, frame: np.ndarray) -> None:
        with self._lock:
            self._queued_encodes -= 1
        self._forget_before(sign)
        try:
            self._encoded.setdefault(sign, {})[index] = self.engine.encode_frames([frame])[0]
        except Exception:  # not fatal: the frame is encoded again when the sign ends
            log.debug("early encoding failed", exc_info=True)

    def _recognize(self, chosen: list[tuple[int, np.ndarray]], sign: int, ended: float) -> None:
        entry, notice = None, ""
        try:
            if self.config.encode_early:
                self._forget_before(sign)
                cache = self._encoded.pop(sign, {})
                result = self.engine.recognize_encoded([cache.get(i, frame) for i, frame in chosen])
            else:
                result = self.engine.recognize([frame for _, frame in chosen])
            entry = LiveEntry(
                top=result.top,
                chosen=0,
                timings=result.timings,
                latency_ms=(time.perf_counter() - ended) * 1000,
                thumbnails=tuple(self._thumbnail(f) for f in result.clip.frames),
                frames=result.clip.frames,
            )
        except SignLensError as exc:
            notice = str(exc)
        except Exception:  # the worker must survive anything; the user gets one sentence
            log.exception("live recognition failed")
            notice = "Recognizing that sign failed; the next one will be tried."
        with self._lock:
            self.pending -= 1
            if entry is not None:
                self.transcript.append(entry)
                old = len(self.transcript) - 1 - self.KEEP_FRAMES
                if old >= 0 and self.transcript[old].frames:
                    self.transcript[old] = replace(self.transcript[old], frames=())
            if notice or not self._refused:  # a refusal's notice stays until a sign is admitted
                self.notice = notice
            self.version += 1

    def _forget_before(self, sign: int) -> None:
        """Drop the early features of signs before `sign`: dropped by the segmenter, or skipped (worker side)."""
        for older in [n for n in self._encoded if n < sign]:
            del self._encoded[older]

    def _thumbnail(self, frame: np.ndarray) -> np.ndarray:
        step = max(1, -(-frame.shape[1] // self._thumbnail_width))  # ceil: never wider
        return np.ascontiguousarray(frame[::step, ::step])

    # ------------------------------------------------------------------ user edits
    def choose(self, index: int, gloss: str) -> None:
        """Replace transcript entry `index` by another of its guesses."""
        with self._lock:
            if not 0 <= index < len(self.transcript):
                raise SignLensError("That sign is no longer in the transcript.")
            entry = self.transcript[index]
            for rank, prediction in enumerate(entry.top):
                if prediction.gloss == gloss:
                    self.transcript[index] = replace(entry, chosen=rank)
                    self.version += 1
                    return
        raise SignLensError(f"{gloss} was not among the guesses for that sign.")

    def entry(self, index: int) -> LiveEntry:
        with self._lock:
            if not 0 <= index < len(self.transcript):
                raise SignLensError("That sign is no longer in the transcript.")
            return self.transcript[index]

    def clear(self) -> None:
        with self._lock:
            self.transcript.clear()
            self.notice = ""
            self.version += 1
        with self._feed_lock:
            self.segmenter.reset()
            self._seen = 0

    def glosses(self) -> list[str]:
        with self._lock:
            return [entry.gloss for entry in self.transcript]

    def close(self) -> None:
        """Stop the worker (the browser tab is gone); a running recognition finishes on its own."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

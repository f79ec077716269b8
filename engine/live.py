"""One webcam session: frames in, a transcript of recognized signs out, never blocking.

The web app calls `feed()` for every webcam frame; it must return in a millisecond or
two, whatever the model is doing. So `feed()` only runs the segmenter; a finished sign
is handed to this session's own single-thread worker, which calls the engine (the
engine's lock queues it behind other sessions' and uploads' model work). The UI polls
`version` and redraws when a result has landed.

One worker per session keeps a session's signs in order; it is a thread, not a process,
because the model releases the GIL while it computes.
"""

from __future__ import annotations

import logging
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
    from engine.core import Engine, Prediction, Timings

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


class LiveRecognizer:
    """Segment a stream of frames and recognize each finished sign in the background."""

    # Signs whose full frames are kept for saving (8 VGA frames are ~7 MB a sign).
    KEEP_FRAMES = 5

    def __init__(
        self,
        engine: "Engine",
        config: LiveConfig | None = None,
        *,
        thumbnail_width: int = 160,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.engine = engine
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

    # ------------------------------------------------------------------ stream side
    def feed(self, frame: np.ndarray, t: float | None = None) -> bool:
        """One camera frame (RGB, as the camera sees the signer). True if a sign was just sent off."""
        with self._feed_lock:
            segment = self.segmenter.feed(frame, self._clock() if t is None else t)
        return segment is not None and self._submit(segment)

    def flush(self) -> bool:
        """The camera stopped: send off the sign in progress, if any."""
        with self._feed_lock:
            segment = self.segmenter.flush()
        return segment is not None and self._submit(segment)

    def _submit(self, frames: list[np.ndarray]) -> bool:
        with self._lock:
            if self._closed:
                return False
            if self.pending >= self.config.max_pending:
                self.notice = "Signs are coming faster than the model can read them; one was skipped."
                self.version += 1
                return False
            self.pending += 1  # shown in the status line; `version` waits for the result
        # Keep only the frames the model will sample: a few MB per waiting sign, not 40 frames.
        count = self.engine.profile.frames_per_clip
        frames = [frames[i] for i in sample_indices(0, len(frames) - 1, count)]
        self._executor.submit(self._recognize, frames, time.perf_counter())
        return True

    # ------------------------------------------------------------------ worker side
    def _recognize(self, frames: list[np.ndarray], ended: float) -> None:
        entry, notice = None, ""
        try:
            result = self.engine.recognize(frames)
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
            self.notice = notice
            self.version += 1

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

    def glosses(self) -> list[str]:
        with self._lock:
            return [entry.gloss for entry in self.transcript]

    def close(self) -> None:
        """Stop the worker (the browser tab is gone); a running recognition finishes on its own."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

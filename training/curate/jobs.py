"""One long task at a time (a download, a build) in a background thread, with a stop flag.

The web app must keep serving while a download runs for an hour, and any page must be
able to see its progress and stop it; so the task runs in a thread, reports
``(done, total)`` through a callback, and checks a ``threading.Event`` that ``stop``
sets. The UI only ever reads ``snapshot()``. No gradio here: the CLI could use it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from engine import SignLensError
from training.errors import Cancelled, JobBusy

log = logging.getLogger(__name__)

Task = Callable[[Callable[[int, int], None], threading.Event], "str | TaskOutcome"]


@dataclass(frozen=True)
class TaskOutcome:
    """What a task returns when "it ran to the end" is not the same as "it worked"."""

    # "done" | "partial" | "failed"
    state: str
    message: str


@dataclass(frozen=True)
class JobState:
    name: str  # "" before the first task
    # "idle" | "running" | "stopping" | "done" | "partial" | "stopped" | "failed"
    state: str
    done: int
    total: int
    elapsed_s: float
    # The task's summary when it ended, or why it failed.
    message: str
    log: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.state in ("running", "stopping")


class BackgroundJob:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._name, self._state, self._message = "", "idle", ""
        self._done = self._total = 0
        self._started = self._finished = 0.0
        self._log: deque[str] = deque(maxlen=50)

    def start(self, name: str, task: Task) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                article = "An" if self._name[:1] in "aeiou" else "A"
                raise JobBusy(f"{article} {self._name} is still running; stop it or wait for it to finish.")
            self._cancel = threading.Event()
            self._name, self._state, self._message = name, "running", ""
            self._done = self._total = 0
            self._started, self._finished = time.monotonic(), 0.0
            self._log.clear()
            self._note(f"{name} started")
            self._thread = threading.Thread(target=self._run, args=(task, self._cancel), name=f"job-{name}", daemon=True)
            self._thread.start()

    def stop(self) -> bool:
        """Ask the running task to stop; False when nothing runs."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                return False
            self._cancel.set()
            self._state = "stopping"
            self._note(f"{self._name}: stopping...")
            return True

    def wait(self, timeout: float | None = None) -> JobState:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.snapshot()

    def snapshot(self) -> JobState:
        with self._lock:
            end = self._finished or time.monotonic()
            return JobState(self._name, self._state, self._done, self._total,
                            end - self._started if self._started else 0.0, self._message, tuple(self._log))

    def _progress(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total

    def _note(self, line: str) -> None:
        self._log.append(time.strftime("%H:%M:%S ") + line)

    def _run(self, task: Task, cancel: threading.Event) -> None:
        try:
            message = task(self._progress, cancel)
            state = "stopped" if cancel.is_set() else "done"
            if isinstance(message, TaskOutcome):
                state = "stopped" if cancel.is_set() else message.state
                message = message.message
        except SignLensError as exc:  # the user's to fix: its message is the sentence to show
            message, state = str(exc), "stopped" if cancel.is_set() else "failed"
        except Cancelled:  # the task noticed the stop flag: nothing went wrong
            message, state = f"The {self._name} was stopped; what it finished is kept.", "stopped"
        except Exception:  # a bug: the traceback goes to the log, one sentence to the UI
            log.exception("background %s failed", self._name)
            message, state = f"The {self._name} failed unexpectedly; the server log has the details.", "failed"
        with self._lock:
            self._state, self._message, self._finished = state, message, time.monotonic()
            self._note(f"{self._name} {state}")

"""What the tabs and the API share: engine calls, error sentences, result formatting."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
import spaces

from engine import Engine, Prediction, RecognitionResult, SignLensError
from training.dataset import ROWS_FILE, list_datasets
from training.layout import DataLayout

log = logging.getLogger(__name__)

# Every event that runs the model joins this queue group. Two at a time: one request can
# decode and preprocess while another holds the engine's lock for its forward pass; more
# would only queue inside the engine instead of in Gradio's fair, visible queue.
MODEL_GROUP = "model"
MODEL_CONCURRENCY = 2

# Thumbnails of the sampled frames: big enough to see a hand shape, small enough that
# eight of them encode in a few milliseconds.
THUMBNAIL_WIDTH = 224


UNEXPECTED = "Something went wrong on the server; it was logged. Try again, or report it if it keeps happening."


def user_errors(fn: Callable) -> Callable:
    """Every error as one sentence in a `gr.Error`: the page, gradio_client and curl see it.

    A `SignLensError` (the engine's and training's one family) carries the sentence for
    the user. Anything else is a bug: its traceback goes to the server log, and the user
    gets one plain sentence rather than Gradio's bare "Error".
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except SignLensError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            log.exception("unexpected error in %s", getattr(fn, "__name__", "an event"))
            raise gr.Error(UNEXPECTED, print_exception=False) from None

    return wrapper


class ClipFile(gr.File):
    """`gr.File` for uploaded clips, as a path, without Gradio 6.31's stray temp file.

    Its `type="filepath"` preprocessing opens an empty NamedTemporaryFile in the cache for
    every file of every call and never uses or deletes it (gradio/components/file.py,
    `_process_single_file`): the cache grew by one empty file per /recognize. The type
    check it does first is kept.
    """

    def get_block_name(self) -> str:
        return "file"  # the same component in the page

    def _process_single_file(self, f):
        from gradio.utils import NamedString
        from gradio_client import utils as client_utils

        if self.file_types and not client_utils.is_valid_file(f.path, self.file_types):
            raise gr.Error(f"That file type is not accepted here: send one of {', '.join(self.file_types)}.",
                           print_exception=False)
        return NamedString(f.path)


# The engine this process serves. On a ZeroGPU Space `recognize_on_gpu` runs in a worker
# process that `spaces` forks, and its arguments and result cross by pickle; an Engine
# (a model, locks) does not pickle, so the worker reaches the engine through this
# reference, which the fork copies. The app sets it while it is built (`serve_engine`),
# before any call can fork a worker. The one global: the engine.
_ENGINE: Engine | None = None
# The process `_ENGINE` was made ready in; a call in any other is in a forked worker.
_ENGINE_PID = 0


def serve_engine(engine: Engine) -> None:
    """Make `engine` the one `recognize_on_gpu` uses (the Upload tab and the API call this as they are built)."""
    global _ENGINE, _ENGINE_PID
    _ENGINE, _ENGINE_PID = engine, os.getpid()


@dataclass(frozen=True)
class FileOutcome:
    """What `recognize_on_gpu` sends back: plain data that pickles (frames are numpy arrays)."""

    # The recognition, or None when the file was refused.
    result: RecognitionResult | None
    # Wall time of the call in ms, decode included.
    wall_ms: float
    # The engine's sentence for a refused file (a `SignLensError` pickles with its
    # message). Returned, not raised: spaces turns an exception raised in its worker into
    # "ZeroGPU worker error" with the class name, and the user's sentence would be lost.
    error: SignLensError | None = None


def _recognize(engine: Engine, path: str, start_s: float | None, end_s: float | None) -> FileOutcome:
    """One file through `engine.recognize`, timed; a refusal comes back as the outcome's error."""
    started = time.perf_counter()
    try:
        result = engine.recognize(path, start_s=start_s, end_s=end_s)
    except SignLensError as exc:
        return FileOutcome(None, (time.perf_counter() - started) * 1000, exc)
    return FileOutcome(result, (time.perf_counter() - started) * 1000)


@spaces.GPU(duration=60)
def recognize_on_gpu(path: str, start_s: float | None, end_s: float | None, adapter: str = "") -> FileOutcome:
    """`_recognize` with the served engine; only a path, seconds and the server's active
    adapter go in, so the call pickles.

    On a ZeroGPU Space `spaces.GPU` lends this call a GPU for up to 60 s (a call is one
    clip's decode and forward) in a forked worker that it keeps for later calls; anywhere
    else it is this function. In the worker, the engine's copy first gets a fresh lock
    (`Engine.after_fork`), and each call brings it to the adapter the server has active
    now, since one switched after the fork would otherwise never reach the worker.
    """
    global _ENGINE_PID
    if os.getpid() != _ENGINE_PID:
        _ENGINE.after_fork()
        _ENGINE_PID = os.getpid()
    try:
        _ENGINE.follow_adapter(adapter)
    except SignLensError as exc:
        return FileOutcome(None, 0.0, exc)
    return _recognize(_ENGINE, path, start_s, end_s)


def recognize_file(engine: Engine, path: str | Path, start_s: float | None = None, end_s: float | None = None) -> tuple[RecognitionResult, float]:
    """Recognize one uploaded file, trimmed in seconds; returns the result and wall time in ms.

    The served engine, once ready, goes through `recognize_on_gpu`. Before it is ready the
    call stays in this process, so the engine says "still loading" without forking a
    ZeroGPU worker: that worker would keep a copy of the engine frozen in "loading" for
    its later calls. An engine of another app built later in the same process (tests and
    benchmarks build several) is also called here, as `spaces.GPU` itself does off ZeroGPU.
    The trim bounds go on as the caller gave them: the engine checks them, in one sentence.
    """
    path = str(path)  # a plain str: Gradio's NamedString would drag its class across
    status = engine.status()
    if engine is _ENGINE and status.state == "ready":
        outcome = recognize_on_gpu(path, start_s, end_s, status.adapter)
    else:
        outcome = _recognize(engine, path, start_s, end_s)
    if outcome.error is not None:
        raise outcome.error
    return outcome.result, outcome.wall_ms


def label_value(top: Sequence[Prediction]) -> dict[str, float]:
    """The value of a `gr.Label`: gloss -> probability, best first."""
    return {p.gloss: round(p.probability, 4) for p in top}


def thumbnails(frames: Sequence[np.ndarray], width: int = THUMBNAIL_WIDTH) -> list[np.ndarray]:
    """Every frame subsampled to at most `width` pixels wide (display only)."""
    out = []
    for frame in frames:
        step = max(1, -(-frame.shape[1] // width))  # ceil: never wider than `width`
        out.append(np.ascontiguousarray(frame[::step, ::step]))
    return out


def timings_markdown(result: RecognitionResult, wall_ms: float) -> str:
    t = result.timings
    return (
        f"**{wall_ms:.0f} ms** in all — decode {t.decode_ms:.0f} ms · preprocess {t.preprocess_ms:.0f} ms · "
        f"model {t.model_ms:.0f} ms  \nframes sampled: {', '.join(str(i) for i in result.clip.indices)} "
        f"of {result.clip.total_frames}"
    )


def result_json(result: RecognitionResult, name: str, wall_ms: float) -> dict[str, Any]:
    """What `/recognize` returns for one clip."""
    best = result.top[0]
    return {
        "file": name,
        "gloss": best.gloss,
        "confidence": round(best.probability, 4),
        "top5": [{"gloss": p.gloss, "confidence": round(p.probability, 4)} for p in result.top[:5]],
        "text": result.text,
        "mode": result.mode,
        "latency_ms": round(wall_ms, 1),
        "timings": {
            "decode_ms": round(result.timings.decode_ms, 1),
            "preprocess_ms": round(result.timings.preprocess_ms, 1),
            "model_ms": round(result.timings.model_ms, 1),
        },
        "frames": list(result.clip.indices),
    }


def file_name(path: str | Path) -> str:
    return Path(path).name


def current_blocks() -> gr.Blocks:
    """The `gr.Blocks` being built: a tab builder hooks its page-load refreshes onto it."""
    return gr.context.Context.root_block


def vocabulary_choices(engine: Engine) -> Any:
    """A gloss picker's choices as the engine's vocabulary is now (an adapter changes it)."""
    return gr.Dropdown(choices=list(engine.vocabulary.glosses))


def outside_vocabulary(engine: Engine, gloss: str) -> str:
    """A note when a gloss the user typed is not one the model knows (as Curate's glossary note)."""
    known = {g.lower() for g in engine.vocabulary.glosses}
    if gloss and gloss.lower() not in known:
        return (f" Note: {gloss} is not in the model's vocabulary ({len(known)} glosses), so the model cannot "
                "answer it until a dataset with it is built and an adapter trained on it.")
    return ""


def datasets_if_changed(layout: DataLayout, shown: list[str] | None, value: str | None):
    """A built-dataset picker and the names it shows, redrawn only when the list changed.

    Curate and Fine-tune poll this: a redraw while someone has the dropdown open would
    close it under them. The choice stays while it exists; otherwise the newest dataset
    (the one a build just made) is chosen.
    """
    names = list_datasets(layout)
    if shown is not None and names == list(shown):
        return gr.skip(), gr.skip()
    if value not in names:
        value = max(names, key=lambda name: _built_at(layout, name), default=None)
    return gr.Dropdown(choices=names, value=value), names


def _built_at(layout: DataLayout, name: str) -> float:
    """When a dataset was built; 0 if it vanished since it was listed (a rebuild replacing it)."""
    try:
        return (layout.datasets / name / ROWS_FILE).stat().st_mtime
    except OSError:
        return 0.0


def first_cell(evt: gr.SelectData) -> str:
    """The first cell of the table row a user selected (its clip reference or run name)."""
    return (evt.row_value or [""])[0]

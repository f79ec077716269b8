"""Upload and API recognition as a ZeroGPU Space runs it: a forked worker, pickled arguments and result.

On a Space with SPACES_ZERO_GPU=true, `spaces.GPU` sends the decorated function's
arguments to a forked worker process and its result back through multiprocessing queues,
both by pickle (spaces/zero/wrappers.py: `arg_queue.put(((args, kwargs), ...))`,
`res_queue.put(OkResult(res))`). Off a Space the decorator returns the function itself,
so these tests pickle what would cross, and run the call through spaces' own worker code
with only its HTTP scheduler and CUDA set-up replaced.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import types

import gradio as gr
import pytest

from engine import ClipError, ModelNotReadyError
from media import write_video
from training.layout import DataLayout
from webapp import common
from webapp.app import build_app
from webapp.samples import signer_frames


def event(app: gr.Blocks, api_name: str):
    return next(f.fn for f in app.fns.values() if f.api_name == api_name)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    good = write_video(folder / "sign.mp4", signer_frames(still_s=0.5, move_s=1.0), fps=10)
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    return good, text


def same_answer(got: dict, expected) -> None:
    assert [p["gloss"] for p in got["top5"]] == [p.gloss for p in expected.top[:5]]
    assert [p["confidence"] for p in got["top5"]] == [round(p.probability, 4) for p in expected.top[:5]]
    assert got["frames"] == list(expected.clip.indices)


def test_the_gpu_call_sends_and_returns_only_what_pickles(tiny_engine, clips, tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(tiny_engine)  # why the engine must not be an argument
    blocks = build_app(tiny_engine, layout=DataLayout.at(tmp_path))
    real, crossed = common.recognize_on_gpu, []

    def through_pickle(*args, **kwargs):
        """What spaces does on ZeroGPU: arguments and result each cross by pickle."""
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
        crossed.append(args)
        return pickle.loads(pickle.dumps(real(*args, **kwargs)))

    monkeypatch.setattr(common, "recognize_on_gpu", through_pickle)
    answer = event(blocks, "recognize")(str(clips[0]), 0, 1.0)
    same_answer(answer, tiny_engine.recognize(clips[0], start_s=0, end_s=1.0))
    assert crossed == [(str(clips[0]), 0, 1.0, "")] and type(crossed[0][0]) is str  # "": no adapter active
    # A refused file keeps its sentence across, and a batch still goes on past it.
    with pytest.raises(gr.Error, match="The file notes.mp4 is not a video we can read."):
        event(blocks, "recognize")(str(clips[1]), 0, 0)
    batch = event(blocks, "recognize_batch")([str(clips[0]), str(clips[1])], 0, 0)
    same_answer(batch[0], tiny_engine.recognize(clips[0]))
    assert batch[1] == {"file": "notes.mp4", "error": "The file notes.mp4 is not a video we can read."}
    entries, label, *_ = event(blocks, "upload_recognize")([str(clips[0])], 0, 0)
    assert list(label) == [p.gloss for p in tiny_engine.recognize(clips[0]).top]
    assert len(crossed) == 5  # every recognition above went through the GPU function


def test_a_loading_engine_answers_without_the_gpu_worker(loading_engine, clips, tmp_path, monkeypatch):
    loading, release = loading_engine
    blocks = build_app(loading, layout=DataLayout.at(tmp_path))
    # A worker forked now would keep a copy of the engine stuck in "loading" for its later calls.
    monkeypatch.setattr(common, "recognize_on_gpu", lambda *args: pytest.fail("forked a worker for a loading engine"))
    with pytest.raises(ModelNotReadyError, match="still loading"):
        common.recognize_file(loading, clips[0])
    with pytest.raises(gr.Error, match="The model is still loading"):
        event(blocks, "recognize")(str(clips[0]), 0, 0)


@pytest.fixture
def zero_gpu_worker(monkeypatch):
    """`recognize_on_gpu` wrapped by spaces' real ZeroGPU wrapper, off a Space.

    Replaced: the scheduler's HTTP calls (which lend a GPU) and the worker's CUDA set-up
    (`worker_init`: it needs the Space's device API and an NVIDIA driver). Kept: the fork,
    the pickled argument and result queues, and the worker loop.
    """
    from spaces.zero import wrappers

    lent = types.SimpleNamespace(allowToken="test", nvidiaIndex=0, nvidiaUUID="test", idle=True)
    monkeypatch.setattr(wrappers.client, "schedule", lambda **kwargs: lent)
    monkeypatch.setattr(wrappers.client, "release", lambda *args, **kwargs: None)
    monkeypatch.setattr(wrappers.client, "get_duration_seconds", lambda *args, **kwargs: 60)
    monkeypatch.setattr(wrappers, "worker_init", lambda **kwargs: None)
    assert not os.environ.get("SPACES_ZERO_GPU")  # so recognize_on_gpu is the bare function
    before = set(multiprocessing.active_children())
    monkeypatch.setattr(common, "recognize_on_gpu", wrappers.regular_function_wrapper(common.recognize_on_gpu, 60, None))
    yield lambda: set(multiprocessing.active_children()) - before
    for process in set(multiprocessing.active_children()) - before:
        process.terminate()
        process.join(10)


def test_recognition_runs_in_spaces_forked_worker(tiny_engine, clips, zero_gpu_worker):
    common.serve_engine(tiny_engine)
    result, wall_ms = common.recognize_file(tiny_engine, clips[0], 0, 1.0)
    [worker] = zero_gpu_worker()  # the call ran in a process spaces forked
    assert worker.is_alive() and worker.pid != os.getpid()
    expected = tiny_engine.recognize(clips[0], start_s=0, end_s=1.0)
    assert [p.gloss for p in result.top] == [p.gloss for p in expected.top]
    assert [p.probability for p in result.top] == pytest.approx([p.probability for p in expected.top], rel=1e-5)
    assert result.clip.indices == expected.clip.indices and wall_ms > 0
    # The engine's sentence comes back too (raised in the worker, spaces would replace it).
    with pytest.raises(ClipError, match="The file notes.mp4 is not a video we can read."):
        common.recognize_file(tiny_engine, clips[1])
    assert zero_gpu_worker() == {worker}  # the same worker served both calls


def test_the_worker_follows_the_servers_adapter(tiny_engine, clips, zero_gpu_worker, tmp_path):
    """An adapter switched after the worker was forked reaches it, and so does switching back."""
    from test_int8_adapter import save_adapter

    adapter = tmp_path / "run" / "adapter"
    save_adapter(tiny_engine.config.model.id, adapter, r".*language_model.*\.(q_proj|v_proj)")
    common.serve_engine(tiny_engine)
    base, _ = common.recognize_file(tiny_engine, clips[0])
    [worker] = zero_gpu_worker()
    try:
        tiny_engine.load_adapter(adapter)
        expected = tiny_engine.recognize(clips[0])
        tuned, _ = common.recognize_file(tiny_engine, clips[0])
    finally:
        tiny_engine.unload_adapter()
    assert zero_gpu_worker() == {worker}  # the same worker, forked before the switch
    assert [p.probability for p in tuned.top] == pytest.approx([p.probability for p in expected.top], rel=1e-5)
    assert [p.probability for p in tuned.top] != pytest.approx([p.probability for p in base.top], rel=1e-5)
    again, _ = common.recognize_file(tiny_engine, clips[0])
    assert [p.probability for p in again.top] == pytest.approx([p.probability for p in base.top], rel=1e-5)


def test_a_child_forked_while_the_engine_is_busy_gets_a_lock_it_can_take(tiny_engine):
    """A fork copies only the forking thread: a lock another thread holds stays held in the child."""
    held, release = threading.Event(), threading.Event()

    def busy():
        with tiny_engine._lock:  # a Live recognition or an adapter swap in progress
            held.set()
            release.wait()

    threading.Thread(target=busy, daemon=True).start()
    held.wait()
    try:
        outcomes = {}
        for fresh in (False, True):
            pid = os.fork()
            if pid == 0:  # the child: exit 0 when it could take the engine's lock
                if fresh:
                    tiny_engine.after_fork()
                os._exit(0 if tiny_engine._lock.acquire(timeout=2) else 1)
            outcomes[fresh] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        release.set()
    assert outcomes == {False: 1, True: 0}


def test_the_gpu_call_refreshes_the_lock_once_per_worker_process(tiny_engine, clips, monkeypatch):
    common.serve_engine(tiny_engine)
    before = tiny_engine._lock
    common.recognize_on_gpu(str(clips[0]), None, None, "")
    assert tiny_engine._lock is before  # the serving process keeps its lock
    monkeypatch.setattr(common, "_ENGINE_PID", -1)  # as in a worker forked from it
    common.recognize_on_gpu(str(clips[0]), None, None, "")
    assert tiny_engine._lock is not before and common._ENGINE_PID == os.getpid()
    refreshed = tiny_engine._lock
    common.recognize_on_gpu(str(clips[0]), None, None, "")
    assert tiny_engine._lock is refreshed  # once per process, not per call


def test_zero_gpu_decorator_is_a_no_op_off_spaces():
    import spaces

    assert not os.environ.get("SPACES_ZERO_GPU")  # not on a ZeroGPU Space here
    # Off Spaces, spaces.GPU hands back the very function: no wrapper, no process, no queue.
    assert spaces.GPU(duration=60)(common.label_value) is common.label_value
    assert common.recognize_on_gpu.__module__ == "webapp.common" and not hasattr(common.recognize_on_gpu, "__wrapped__")

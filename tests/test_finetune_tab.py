"""The Fine-tune tab: real training processes on the tiny model, cancel, resume, evaluate, activate.

Every run here is a real `python -m training.finetune` child on the generated gestures
dataset (a few steps at batch 2), launched through training/runs.py as the app does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest

from conftest import ROOT, free_port, tiny_config
from gestures import CLASSES, write_gesture_dataset
from training.errors import FinetuneConfigError, RunBusy, RunError
from training.finetune import runs
from training.finetune.config import load_engine_config, load_finetune_config
from training.finetune.runs import RunManager, check_name
from training.layout import DataLayout
from webapp.finetune_tab import ADAPTER_COLUMNS, FineTuner, build_finetune_tab

# Fast settings for the tiny model: a step per batch of 2, a log line per step.
FAST = {"batch_size": 2, "grad_accumulation": 1, "logging_steps": 1, "warmup_steps": 0, "save_strategy": "no"}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    layout = DataLayout.at(tmp_path_factory.mktemp("finetune-tab") / "data")
    write_gesture_dataset(layout.datasets / "gestures", train_per_class=2, test_per_class=1)
    return SimpleNamespace(layout=layout, runs_root=layout.runs)


# Not the default question: runs must train with the server's, not assets/config/engine.yml's.
PROMPT = "Here is one ASL sign. Name it in one word."


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tmp_path_factory):
    """An engine of this module's own, configured as `python app.py --config server.yml` would be.

    Activation changes its adapter and vocabulary; its prompt is not the default one.
    """
    from engine import Engine, load_config

    server_yml = tmp_path_factory.mktemp("server") / "server.yml"
    server_yml.write_text(f"recognition:\n  prompt: {PROMPT}\nvideo:\n  crop_to_bbox: false\n")
    model = tiny_config(tiny_model_dir).model
    config = load_config(server_yml, env={}, overrides={"model": dataclasses.asdict(model)})
    assert config.recognition.prompt == PROMPT and config.recognition.prompt != load_config(env={}).recognition.prompt
    engine = Engine(config).start()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def manager(space, engine):
    manager = RunManager(space.layout, engine_config=engine.config)
    yield manager
    manager.cancel(timeout_s=0)
    manager.wait(30)


@pytest.fixture(scope="module")
def tuner(space, engine, manager):
    return FineTuner(engine, space.layout, config=load_finetune_config(overrides=FAST), manager=manager)


@pytest.fixture(scope="module")
def trained(manager):
    """A finished 6-step run (LoRA + projector, a high learning rate so its effect shows)."""
    name = manager.launch("gestures", run_name="tiny6", overrides={
        **FAST, "max_steps": 6, "learning_rate": 5e-3, "lora_r": 8, "train_projector": True, "lora_dropout": 0.0})
    state = manager.wait(300)
    assert state.state == "done", manager.log_tail(name)
    return name


def wait_until(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(manager, name) -> dict:
    try:
        return json.loads((manager.runs_root / name / "status.json").read_text())
    except (OSError, ValueError):
        return {}


# --- no processes ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", " ", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a b", "x" * 101, "é"])
def test_run_names_cannot_leave_the_runs_folder(name):
    with pytest.raises(RunError, match="is not a run name"):
        check_name(name)
    assert check_name(" wlasl100-v2.1_b ") == "wlasl100-v2.1_b"


def test_children_get_the_serving_config_as_a_file(engine, tiny_model_dir, tmp_path):
    child = runs.child_engine_config(engine.config)
    assert child.model.id == str(Path(tiny_model_dir).resolve()) and child.model.adapter == ""
    assert Path(child.recognition.vocabulary).is_absolute() and Path(child.recognition.vocabulary).is_file()
    assert (child.video, child.limits, child.recognition.prompt) == (engine.config.video, engine.config.limits,
                                                                     engine.config.recognition.prompt)
    path = tmp_path / "engine_config.json"
    path.write_text(json.dumps(child.to_dict()))
    # Read back exactly, whatever SIGNLENS_* the child's environment holds.
    os.environ["SIGNLENS_FRAMES"] = "3"
    try:
        assert load_engine_config(path) == child
    finally:
        del os.environ["SIGNLENS_FRAMES"]


def test_ui_and_runs_modules_import_no_torch():
    # Training runs in a subprocess; the tab and the run manager only read configs (the
    # engine package's config reader, which imports no torch) and watch files.
    code = ("import sys, webapp.finetune_tab, training.finetune.runs; "
            "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'engine.model', 'engine.scoring') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_start_refuses_bad_requests(tuner, space):
    start = tuner.start
    with pytest.raises(RunError, match="is not a run name"):
        start("gestures", "../escape", 1, 6, 1e-3, 8, False)
    with pytest.raises(RunError, match="no built dataset named 'nope'"):
        start("nope", "", 1, 6, 1e-3, 8, False)
    with pytest.raises(FinetuneConfigError, match="learning_rate must be between 0 and 1"):
        start("gestures", "", 1, 6, 2.0, 8, False)
    with pytest.raises(RunError, match="Fill in lora r"):
        start("gestures", "", 1, 6, 1e-3, None, False)
    assert not (space.runs_root.parent / "escape").exists()
    assert not space.runs_root.exists() or not any(space.runs_root.iterdir())


# --- real training processes -----------------------------------------------------------

@pytest.mark.slow
def test_launch_trains_and_lists_the_adapter(manager, trained, tiny_model_dir):
    info = manager.run(trained)
    assert info.state == "done" and info.dataset == "gestures"
    assert info.adapter == manager.runs_root / trained / "adapter"
    assert info.metrics["steps"] == 6
    assert info.metrics["train_loss"] > 0 and info.metrics["samples_per_second"] > 0
    assert [r.name for r in manager.runs() if r.adapter] == [trained]
    # The child trained the model this engine serves: its settings came through the environment.
    folder = manager.runs_root / trained
    assert json.loads((folder / "engine_config.json").read_text())["model"]["id"] == str(Path(tiny_model_dir).resolve())
    assert json.loads((folder / "finetune_config.json").read_text())["lora_r"] == 8
    assert f"Adapter of run {trained} saved" in (folder / "process.log").read_text()
    assert str(manager.layout.root) not in manager.log_tail(trained)  # the UI shows it: no server paths
    assert [step for step, _ in manager.losses(trained)] == [1, 2, 3, 4, 5, 6]
    assert manager.job().state == "done"


@pytest.mark.slow
def test_cancel_refuses_a_second_launch_then_resume_completes(manager, tuner, trained, engine, space):
    name = manager.launch("gestures", run_name="long", overrides={**FAST, "max_steps": 16, "learning_rate": 1e-3})
    process = manager._job.process
    wait_until(lambda: status(manager, name).get("step", 0) >= 1 or process.poll() is not None, 240, "the first step")
    assert process.poll() is None, manager.log_tail(name)

    # One at a time: this manager, another one on the same folder (a second app), every kind of job.
    with pytest.raises(RunBusy, match=r"A training run \(long\) is still running"):
        manager.launch("gestures", run_name="second", overrides=FAST)
    with pytest.raises(RunBusy):
        manager.evaluate(trained)
    other_app = FineTuner(engine, space.layout)
    with pytest.raises(gr.Error, match=r"A training run \(long\) is still running"):
        _ui(other_app.start)("gestures", "third", 1, 4, 1e-3, 8, False)
    assert not (manager.runs_root / "second").exists() and not (manager.runs_root / "third").exists()

    assert manager.cancel() == name
    assert manager.job().state == "cancelling" and manager.run(name).state == "cancelling"
    state = manager.wait(120)
    assert state.state == "cancelled" and state.returncode == 0  # stopped by itself, at a step's end
    assert process.poll() is not None and not runs._pid_alive(process.pid, "training.finetune")
    stopped = status(manager, name)
    assert stopped["state"] == "cancelled" and 1 <= stopped["step"] < 16
    assert (manager.runs_root / name / "checkpoints" / f"checkpoint-{stopped['step']}").is_dir()
    assert manager.run(name).state == "cancelled" and manager.run(name).adapter is None

    assert "Training long" in tuner.resume(name)
    state = manager.wait(300)
    assert state.state == "done", manager.log_tail(name)
    metrics = manager.run(name).metrics
    assert metrics["steps"] == 16 and metrics["resumed_from"].endswith(f"checkpoint-{stopped['step']}")
    with pytest.raises(RunError, match="has finished already"):
        manager.resume(name)


@pytest.mark.slow
def test_cancel_terminates_a_run_that_does_not_stop(manager, monkeypatch, tmp_path):
    # Still loading the model: the trainer cannot honour CANCEL yet, so it is terminated at once.
    name = manager.launch("gestures", run_name="early", overrides=FAST)
    process = manager._job.process
    assert manager.cancel() == name
    state = manager.wait(60)
    assert state.state == "cancelled" and process.returncode != 0
    assert status(manager, name)["state"] == "cancelled"
    assert manager.run(name).state == "cancelled"

    # Training but deaf to CANCEL and SIGTERM (a stand-in trainer): terminated, then killed.
    stub = tmp_path / "stub-python"
    stub.write_text(f"#!{sys.executable}\n" + (
        "import json, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "args = sys.argv[1:]\n"
        "folder = args[args.index('--config') + 1].rsplit('/', 1)[0]\n"
        "json.dump({'state': 'running', 'step': 3}, open(folder + '/status.json', 'w'))\n"
        "print('training...', flush=True)\n"
        "time.sleep(120)\n"))
    stub.chmod(0o755)
    monkeypatch.setattr(runs, "KILL_GRACE_S", 0.5)
    deaf = RunManager(manager.layout, engine_config=manager.engine_config, python=str(stub))
    name = deaf.launch("gestures", run_name="deaf", overrides=FAST)
    wait_until(lambda: status(deaf, name).get("state") == "running", 30, "the stub to start")
    assert deaf.cancel(timeout_s=0.5) == name
    state = deaf.wait(30)
    assert state.state == "cancelled" and state.returncode == -9  # SIGTERM ignored, SIGKILL after the grace
    assert (manager.runs_root / name / "CANCEL").exists()
    assert status(deaf, name)["state"] == "cancelled" and "training..." in deaf.log_tail(name)


def test_a_crashed_run_is_marked_failed_and_can_resume(manager, tmp_path):
    """A trainer that dies (a stand-in that exits 2 with its error line) leaves a failed, resumable run."""
    stub = tmp_path / "crashing-python"
    stub.write_text(f"#!{sys.executable}\n"
                    "import sys\nprint('loading...')\nprint('error: The dataset gestures has no training clips.', file=sys.stderr)\n"
                    "sys.exit(2)\n")
    stub.chmod(0o755)
    crashing = RunManager(manager.layout, engine_config=manager.engine_config, python=str(stub))
    name = crashing.launch("gestures", run_name="crash", overrides=FAST)
    state = crashing.wait(30)
    assert (state.state, state.returncode) == ("failed", 2)
    assert state.message == "The dataset gestures has no training clips."
    assert status(crashing, name) == {"state": "failed", "returncode": 2, "message": state.message}
    info = crashing.run(name)
    assert info.state == "failed" and info.message == state.message and info.adapter is None
    crashing.resume(name)  # the settings were written before the child started: resume reads them again
    assert crashing.wait(30).state == "failed"
    command = json.loads((manager.runs_root / name / "process.json").read_text())["command"]
    folder = manager.runs_root / name
    assert command[1:] == ["-m", "training.finetune", "--config", str(folder / "finetune_config.json"),
                           "--engine-config", str(folder / "engine_config.json"), "--data", str(manager.layout.root),
                           "--resume"]
    (folder / "engine_config.json").unlink()  # a folder without its settings cannot be resumed
    with pytest.raises(RunError, match="never got as far"):
        crashing.resume(name)


def _ui(fn):
    from webapp.common import user_errors

    return user_errors(fn)


@pytest.mark.slow
def test_tab_events_watch_evaluate_and_report(tuner, manager, trained):
    job, log, plot, table, choices, report, confusion, active, seen = tuner.tick(trained, trained, {})
    assert "Training" in job or "Evaluation" in job
    assert "Adapter of run tiny6 saved" in log
    assert list(plot.columns) == ["step", "loss"] and plot["step"].tolist()[:6] == [1, 2, 3, 4, 5, 6]
    assert any(row[0] == trained and row[2] == 6 for row in table)
    assert trained in choices.constructor_args["choices"]
    assert "has not been evaluated yet" in report and confusion is None
    assert "the base model" in active
    again = tuner.tick(trained, trained, seen)
    assert again[2] == gr.skip() and again[3] == gr.skip() and again[5] == gr.skip()  # nothing changed: nothing re-sent

    assert f"Evaluation of {trained}" in tuner.evaluate(trained)
    state = manager.wait(300)
    assert state.kind == "eval" and state.state == "done", manager.log_tail(trained)
    report, confusion = tuner.report(trained)
    assert "| adapter |" in report and "| base |" in report and "![" not in report
    assert confusion.size[0] > 100
    row = next(r for r in tuner.adapter_table() if r[0] == trained)
    assert dict(zip(ADAPTER_COLUMNS, row))["top-1"].endswith("%") and dict(zip(ADAPTER_COLUMNS, row))["top-5"] == "100.0%"
    refreshed = tuner.tick(trained, trained, again[-1])
    assert refreshed[3] != gr.skip() and refreshed[5] != gr.skip()  # the new report shows up by itself

    with pytest.raises(gr.Error, match="no finished adapter"):
        _ui(tuner.activate)("long-gone")
    with pytest.raises(gr.Error, match="is not a run name"):
        _ui(tuner.evaluate)("../tiny6")


def probabilities(result) -> dict[str, float]:
    return {p.gloss: p.probability for p in result.top}


@pytest.mark.slow
def test_activation_changes_what_the_shared_engine_recognizes(tuner, manager, trained, engine, space):
    clip = space.layout.datasets / "gestures" / "clips" / "test_circle_0.mp4"
    adapter = manager.adapter_path(trained)
    glossary = engine.status().vocabulary
    # The base model over the adapter's glosses: separates the adapter's weights from its vocabulary.
    engine.set_vocabulary(adapter / "vocabulary.txt")
    base_on_gestures = probabilities(engine.recognize(clip, top_k=5))
    engine.set_vocabulary(engine.config.vocabulary_path())

    active, table = tuner.activate(trained)
    assert engine.status().adapter == str(adapter) and engine.status().vocabulary_size == len(CLASSES)
    assert trained in active and next(r for r in table if r[0] == trained)[-1] == "yes"
    after = probabilities(engine.recognize(clip, top_k=5))  # what the Upload tab now gets
    assert set(after) == set(CLASSES)
    assert max(abs(after[g] - base_on_gestures[g]) for g in CLASSES) > 1e-3

    active, table = tuner.deactivate()
    assert engine.status().adapter == "" and "the base model" in active
    assert engine.status().vocabulary == glossary  # the configured glossary again
    assert all(row[-1] == "" for row in table)
    assert set(probabilities(engine.recognize(clip, top_k=5))) <= set(engine.vocabulary.glosses)


@pytest.mark.slow
def test_deactivation_restores_the_base_model_exactly(tuner, manager, trained, tiny_model_dir, space):
    from engine import Engine

    engine = Engine(tiny_config(tiny_model_dir)).start()  # a pristine base model
    try:
        clip = space.layout.datasets / "gestures" / "clips" / "test_circle_0.mp4"
        before = probabilities(engine.recognize(clip, top_k=5))
        engine.load_adapter(manager.adapter_path(trained))
        engine.unload_adapter()
        restored = probabilities(engine.recognize(clip, top_k=5))
        assert list(restored) == list(before)
        assert all(abs(restored[g] - before[g]) < 1e-5 for g in before)
    finally:
        engine.close()


@pytest.mark.slow
def test_endpoints_through_gradio_client(tuner, manager, trained, engine, space):
    from gradio_client import Client

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    with gr.Blocks() as demo:
        with gr.Tab("Fine-tune"):
            build_finetune_tab(engine, space.layout)
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/finetune_start", "/finetune_cancel", "/finetune_resume", "/finetune_evaluate", "/finetune_activate",
                "/finetune_deactivate", "/finetune_adapters", "/finetune_status"} <= set(api)
        assert all(name.startswith("/finetune_") for name in api)
        table = client.predict(api_name="/finetune_adapters")
        assert table["headers"] == ADAPTER_COLUMNS and trained in [r[0] for r in table["data"]]
        with pytest.raises(Exception, match="is not a run name"):
            client.predict("gestures", "../../etc", 1, 4, 1e-3, 8, False, api_name="/finetune_start")
        active, _ = client.predict(trained, api_name="/finetune_activate")
        assert trained in active and engine.status().adapter.endswith(f"{trained}/adapter")
        client.predict(api_name="/finetune_deactivate")
        assert engine.status().adapter == ""
    finally:
        demo.close()


def test_a_run_trains_with_the_servers_config(manager, trained, engine):
    """No train/serve drift: the child loads the server's resolved config, prompt included."""
    folder = manager.runs_root / trained
    saved = load_engine_config(folder / "engine_config.json")
    assert saved == runs.child_engine_config(engine.config)
    assert (saved.recognition.prompt, saved.video.crop_to_bbox) == (PROMPT, False)
    log = (folder / "process.log").read_text()
    example = next(line for line in log.splitlines() if "First training example:" in line)
    reads, answer = example.split(", learns to answer ")
    assert PROMPT in reads  # what the child fed the model
    assert answer.strip("'") in {f"{gloss}<|im_end|>" for gloss in CLASSES}  # labels: the gloss and end of turn only

"""Issue 13, "the first hour": what a new user hit, checked without a browser.

The browser half (lists on page load, Correct this, pending signs, the live region,
contrast) is in test_webapp_browser.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from conftest import tiny_config
from engine import EngineStatus
from engine import hub as hub_access
from gestures import write_gesture_dataset
from training.errors import FinetuneConfigError, RunError
from training.finetune.config import load_finetune_config
from training.finetune.runs import RunManager
from training.finetune.train import log_line
from training.layout import DataLayout
from webapp.finetune_tab import FineTuner
from webapp.status import status_markdown



class StubEngine:
    def __init__(self, config):
        self.config = config

    def status(self):
        return EngineStatus(state="ready", model_id="m", vocabulary_size=5)


@pytest.fixture
def tuner(tiny_model_dir, tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    folder = write_gesture_dataset(layout.datasets / "no-val", train_per_class=1, test_per_class=1)
    write_gesture_dataset(layout.datasets / "train-only", train_per_class=1, test_per_class=0)
    assert folder.is_dir()
    engine = StubEngine(tiny_config(tiny_model_dir))
    return FineTuner(engine, layout, manager=RunManager(layout, engine_config=engine.config))


def test_a_mistyped_dataset_leaves_no_run_behind(tmp_path, capsys):
    from training.finetune.__main__ import main

    assert main(["--dataset", "nosuchdataset", "--data", str(tmp_path)]) == 2
    assert "There is no built dataset named nosuchdataset" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_failed_and_interrupted_runs_can_be_deleted(tuner):
    root = tuner.manager.runs_root
    for name, status in (("failed-run", {"state": "failed", "message": "x"}), ("stuck-run", {"state": "starting"})):
        (root / name).mkdir(parents=True)
        (root / name / "status.json").write_text(json.dumps(status))
        (root / name / "process.json").write_text(json.dumps({"kind": "train", "pid": 2**22 + 7}))  # long gone
    assert {r.name: r.state for r in tuner.manager.runs()} == {"failed-run": "failed", "stuck-run": "interrupted"}
    message, choices = tuner.delete("stuck-run")
    assert "Deleted the run stuck-run" in message and not (root / "stuck-run").exists()
    tuner.delete("failed-run")
    assert tuner.manager.runs() == []
    with pytest.raises(RunError, match="no run named"):
        tuner.delete("failed-run")


def test_missing_splits_are_said_before_training_and_evaluation(tuner):
    assert "no val clips" in tuner.dataset_note("no-val") and "validation" in tuner.dataset_note("no-val")
    note = tuner.dataset_note("train-only")
    assert "no val and no test clips" in note and "cannot be evaluated" in note.replace("not evaluated", "cannot be evaluated")
    # A run of a train-only dataset: the report area says why Evaluate cannot work, not "press Evaluate".
    run = tuner.manager.runs_root / "t1"
    run.mkdir(parents=True)
    (run / "finetune_config.json").write_text(json.dumps({"dataset": "train-only"}))
    text, _ = tuner.report("t1")
    assert "cannot be evaluated" in text and "press Evaluate" not in text


def test_dataset_lists_follow_the_data(tuner, tmp_path):
    from webapp.common import datasets_if_changed

    layout = tuner.layout
    # Nothing chosen yet: the newest dataset (the one a build just made), not the first by name.
    os.utime(layout.datasets / "no-val" / "dataset.jsonl", (2e9, 2e9))
    update, names = datasets_if_changed(layout, None, None)
    assert names == ["no-val", "train-only"] and update.constructor_args["value"] == "no-val"
    skipped = datasets_if_changed(layout, names, "no-val")
    assert all(s.get("__type__") == "update" and len(s) == 1 for s in skipped)  # unchanged: nothing redrawn
    write_gesture_dataset(layout.datasets / "new", train_per_class=1, test_per_class=1)
    update, names = datasets_if_changed(layout, names, "train-only")
    assert "new" in names and update.constructor_args["value"] == "train-only"  # the user's choice stays
    shutil.rmtree(layout.datasets / "train-only")
    update, names = datasets_if_changed(layout, names, "train-only")
    assert names == ["new", "no-val"] and update.constructor_args["value"] == "no-val"


def test_logging_steps_exposed_and_automatic_and_log_lines_are_words():
    assert load_finetune_config().logging_steps == 0  # auto: about 50 points, every step on a short run
    with pytest.raises(FinetuneConfigError, match="logging_steps"):
        load_finetune_config(overrides={"logging_steps": -1})
    line = log_line(3, 12, {"loss": 2.3141, "learning_rate": 1e-4, "grad_norm": 0.5, "epoch": 0.5, "total_flos": 1.0})
    assert line == "step 3/12 · loss 2.314 · learning rate 1e-04 · gradient norm 0.5 · epoch 0.50"
    assert "{" not in line


def test_header_never_says_idle_and_warns_about_the_tiny_model():
    starting = status_markdown(EngineStatus(state="idle", model_id="m"))
    assert "idle" not in starting and "starting" in starting
    tiny = status_markdown(EngineStatus(state="ready", model_id="m", device="cpu", dtype="float32", quantization="none",
                                        detail="auto: unquantized on CPU, so LoRA adapters can be hot-swapped",
                                        memory_mb=0.7, vocabulary_size=320))
    assert "runs on **CPU** in full precision" in tiny and "random" in tiny
    assert "<details><summary>Why these settings</summary>auto: unquantized" in tiny  # jargon behind a fold
    real = status_markdown(EngineStatus(state="ready", model_id="m", device="cuda", dtype="bfloat16",
                                        quantization="4bit", memory_mb=2400, vocabulary_size=320))
    assert "random" not in real and "4bit quantized" in real
    failed = status_markdown(EngineStatus(state="failed", model_id="m", detail="The model m could not be downloaded."))
    assert "could not be loaded" in failed and "could not be downloaded" in failed


def test_offline_is_decided_before_the_hub_is_imported(tmp_path):
    env = {}
    assert "local folder" in hub_access.decide_offline(str(tmp_path), env) and env["HF_HUB_OFFLINE"] == "1"
    env = {}
    reason = hub_access.decide_offline("OpenGVLab/InternVL3-2B-hf", env, reachable=lambda url: False)
    assert env["HF_HUB_OFFLINE"] == "1" and "did not answer" in reason
    env = {}
    assert hub_access.decide_offline("OpenGVLab/InternVL3-2B-hf", env, reachable=lambda url: True) == "" and env == {}
    env = {"HF_HUB_OFFLINE": "0"}  # the user's word wins, both ways
    assert hub_access.decide_offline(str(tmp_path), env, reachable=lambda url: False) == "" and env["HF_HUB_OFFLINE"] == "0"
    assert hub_access.hub_reachable("https://127.0.0.1:9", timeout_s=1) is False


def test_hub_warnings_are_printed_once():
    import huggingface_hub.utils.logging as hub_logging

    hub = hub_logging.get_logger("huggingface_hub")
    assert any(type(h) is logging.StreamHandler for h in hub.handlers)  # the duplicate, as shipped
    saved = list(hub.handlers)
    try:
        hub_access.one_line_per_warning()
        assert not any(type(h) is logging.StreamHandler for h in hub.handlers) and hub.propagate
    finally:
        hub.handlers[:] = saved


def test_plain_messages():
    from training.curate.download.fetch import YT_DLP_MISSING

    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: these tests never reach the hub
    assert "pip install" in YT_DLP_MISSING

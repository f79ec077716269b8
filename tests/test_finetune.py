"""Fine-tuning and evaluation on the tiny model: labels, learning, resume, metrics."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open

from conftest import ROOT, tiny_config
from gestures import CLASSES, write_gesture_dataset
from training.errors import FinetuneConfigError
from training.finetune import metrics
from training.finetune.config import load_finetune_config
from training.layout import DataLayout


@pytest.fixture(scope="module")
def gestures(tmp_path_factory):
    return write_gesture_dataset(tmp_path_factory.mktemp("data") / "gestures", train_per_class=16, test_per_class=8)


def test_labels_cover_only_the_answer_tokens(tiny_engine, gestures):
    from engine.prompt import answer_ids
    from training.dataset import load_dataset
    from training.finetune.collator import IGNORE, ClipCollator

    dataset = load_dataset(gestures, DataLayout.at(gestures.parent))
    processor = tiny_engine._require_model().processor
    collator = ClipCollator(processor, dataset, tiny_engine.config.recognition.prompt)
    rows = [r for r in dataset.split("train") if r["gloss"] in ("circle", "up")][:2]
    batch = collator(rows)
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        supervised = labels[labels != IGNORE].tolist()
        assert supervised == answer_ids(processor.tokenizer, row["gloss"])  # gloss + <|im_end|>, nothing else
        ids = batch["input_ids"][i][batch["attention_mask"][i] == 1]
        # The unsupervised part is exactly the inference prompt: what scoring prefills.
        inference = tiny_engine._model_inputs(tiny_engine._require_model(), dataset.frames(row))["input_ids"][0]
        assert ids[: len(inference)].tolist() == inference.tolist()
        image_token = processor.tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
        assert not ((labels != IGNORE) & (batch["input_ids"][i] == image_token)).any()
    # padding of the shorter row is neither attended nor supervised
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE).all()
    assert batch["pixel_values"].shape[0] == 2 * dataset.config.frames_per_clip  # one tile per frame


def test_frame_cache_is_bounded_in_bytes(tiny_engine, gestures):
    from training.dataset import load_dataset
    from training.finetune.collator import ClipCollator

    dataset = load_dataset(gestures, DataLayout.at(gestures.parent))
    rows = dataset.split("train")[:4]
    clip_bytes = sum(f.nbytes for f in dataset.frames(rows[0]).frames)
    collator = ClipCollator(tiny_engine._require_model().processor, dataset, "q", cache_mb=2.5 * clip_bytes / 2**20)
    for row in rows:
        collator._frames(row)
    assert list(collator._cache) == [rows[2]["clip"], rows[3]["clip"]]  # the two newest fit, the oldest went
    assert collator._frames(rows[3]) is collator._cache[rows[3]["clip"]]


def test_config_rejects_bad_values_and_targets(tmp_path):
    with pytest.raises(FinetuneConfigError, match=r"^There is no setting called learning_rat; the settings are dataset, "):
        load_finetune_config(overrides={"learning_rat": 1})
    for bad in ("nan", "inf", "abc"):
        with pytest.raises(FinetuneConfigError, match="epochs must be a number"):
            load_finetune_config(overrides={"epochs": bad})
    with pytest.raises(FinetuneConfigError, match="vision tower"):
        load_finetune_config(overrides={"lora_targets": r".*\.(q_proj|v_proj)"})
    config = load_finetune_config(overrides={"learning_rate": "1e-4", "epochs": "3"})
    assert (config.learning_rate, config.epochs, config.batch_size, config.grad_accumulation) == (1e-4, 3.0, 1, 4)


@pytest.mark.slow
@pytest.mark.parametrize("profile,tile_px", [("quality", 32), ("fast", 16)])
def test_finetuning_learns_the_gestures(tiny_model_dir, gestures, tmp_path, profile, tile_px):
    """From chance to >= 90 % top-1 on held-out clips: the model really learns, also from
    the fast profile's half-size tiles (1 token per frame on the tiny model)."""
    from training.finetune.evaluate import evaluate
    from training.finetune.train import finetune

    engine_config = tiny_config(tiny_model_dir, video={"profile": profile})
    layout = DataLayout.at(tmp_path / "data")
    config = load_finetune_config(overrides=dict(
        dataset=str(gestures), output_dir=str(tmp_path), run_name="gestures", max_steps=100, batch_size=4,
        grad_accumulation=1, learning_rate=2e-3, warmup_steps=5, logging_steps=10, train_projector=True,
        save_strategy="no", lora_dropout=0.0, seed=0,
    ))
    run = finetune(config, engine_config, layout).path
    adapter = run / "adapter"
    report = evaluate(str(gestures), engine_config, layout, adapter=str(adapter))
    base, tuned = report["results"]
    assert base["top1"] <= 0.4  # about chance (1/5) before training
    assert tuned["top1"] >= 0.9, tuned["confusions"]
    assert tuned["top5"] == 1.0  # five classes
    # Trained, recorded, activated and reported at the profile's tile (the dataset's 4 frames).
    recorded = {"name": profile, "frames_per_clip": 4, "image_scale": engine_config.input_profile().image_scale}
    assert json.loads((adapter / "profile.json").read_text()) == recorded
    assert base["profile"] == tuned["profile"] == {**recorded, "tile_px": tile_px}
    assert f"| adapter | {profile} (4 frames, {tile_px} px) |" in (run / "report.md").read_text()
    # The adapter holds LoRA weights of the language model and the projector, nothing of the vision tower.
    with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:
        keys = list(weights.keys())
        assert keys and all("lora_" in k or "multi_modal_projector" in k for k in keys)
        assert not any("vision_tower" in k for k in keys)
        lora_b = [weights.get_tensor(k) for k in keys if "lora_B" in k]
        assert all(b.abs().sum() > 0 for b in lora_b)  # B starts at zero: every one was trained
    assert (adapter / "vocabulary.txt").read_text().split("\n")[1:6] == sorted(CLASSES)
    assert json.loads((adapter / "metrics.json").read_text())["steps"] == 100
    assert (adapter / "loss_curve.png").stat().st_size > 1000
    assert {p.name for p in run.iterdir()} >= {"finetune_config.json", "engine_config.json", "train_log.jsonl", "status.json", "report.md", "report.json", "confusion_adapter.png"}
    losses = [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines() if "loss" in json.loads(line)]
    assert losses[-1] < losses[0] / 5


@pytest.mark.slow
def test_resume_after_kill_9_continues_from_the_last_checkpoint(tiny_model_dir, gestures, tmp_path):
    env = dict(os.environ, SIGNLENS_MODEL=str(tiny_model_dir), SIGNLENS_DEVICE="cpu", SIGNLENS_QUANTIZATION="none")
    # Many more steps than the first checkpoint needs, so the kill lands mid-run however fast or
    # loaded the machine is (checkpoint rotation deletes early checkpoints: watch for any).
    max_steps = 80
    command = [sys.executable, "-m", "training.finetune", "--dataset", str(gestures), "--run-name", "crash",
               "--set", f"output_dir={tmp_path}", "--set", f"max_steps={max_steps}", "--set", "save_strategy=steps",
               "--set", "save_steps=4", "--set", "batch_size=2", "--set", "grad_accumulation=1",
               "--set", "logging_steps=2", "--set", "learning_rate=1e-3"]
    run_dir = tmp_path / "crash"
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None and not list((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its first checkpoint was seen"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run_dir / "adapter").exists()  # killed: no adapter claims to be finished
    # The kill may land while a checkpoint is being written: only complete ones count.
    saved = sorted(int(p.parent.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    assert saved and saved[-1] < max_steps

    done = subprocess.run(command + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((run_dir / "adapter" / "metrics.json").read_text())
    assert result["steps"] == max_steps
    assert result["resumed_from"] == f"checkpoint-{saved[-1]}"
    steps = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert max(steps) == max_steps and min(s for s in steps[len(steps) // 2 :]) > 0


def test_resume_continues_on_the_settings_the_run_saved(tiny_model_dir, gestures, tmp_path, monkeypatch, capsys):
    """--resume reads the run's own configs back (no defaults, no SIGNLENS_* on top) and
    refuses settings that differ from them instead of mixing two runs in one adapter."""
    from training.finetune.__main__ import main

    monkeypatch.setenv("SIGNLENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("SIGNLENS_DEVICE", "cpu")
    monkeypatch.setenv("SIGNLENS_QUANTIZATION", "none")
    which = ["--dataset", str(gestures), "--run-name", "kept", "--set", f"output_dir={tmp_path}"]
    started = [*which, "--set", "max_steps=2", "--set", "save_strategy=steps", "--set", "save_steps=1",
               "--set", "batch_size=2", "--set", "grad_accumulation=1", "--set", "learning_rate=1e-3"]
    assert main(started) == 0
    run = tmp_path / "kept"
    saved = {name: (run / name).read_text() for name in ("finetune_config.json", "engine_config.json")}
    assert json.loads(saved["finetune_config.json"])["learning_rate"] == 1e-3
    capsys.readouterr()

    # Another learning rate, another model file: refused in one sentence, nothing rewritten.
    assert main([*which, "--set", "learning_rate=5e-4", "--resume"]) == 2
    assert capsys.readouterr().err == ("error: The run kept was started with other settings (learning_rate: 0.001, "
                                       "not 0.0005): resume it without --config, --engine-config and --set, or start "
                                       "a new run under another name.\n")
    other = tmp_path / "engine.yml"
    other.write_text(f"model:\n  id: {tiny_model_dir}\n  device: cpu\n  quantization: none\n  dtype: bfloat16\n")
    assert main([*which, "--engine-config", str(other), "--resume"]) == 2
    assert "(model.dtype: 'auto', not 'bfloat16')" in capsys.readouterr().err
    assert {name: (run / name).read_text() for name in saved} == saved

    # As if it had crashed after step 1. Without --config/--set: the saved settings (2 steps,
    # not the default epoch), even where the defaults and variables now say otherwise.
    shutil.rmtree(run / "checkpoints" / "checkpoint-2")
    shutil.rmtree(run / "adapter")
    monkeypatch.setenv("SIGNLENS_MODEL", str(tmp_path / "no-such-model"))
    assert main([*which, "--resume"]) == 0, capsys.readouterr().err
    assert {name: (run / name).read_text() for name in saved} == saved
    metrics = json.loads((run / "adapter" / "metrics.json").read_text())
    assert (metrics["steps"], metrics["resumed_from"]) == (2, "checkpoint-1")
    # A mistyped run name resumes nothing and starts nothing.
    capsys.readouterr()
    assert main(["--dataset", str(gestures), "--run-name", "kpet", "--set", f"output_dir={tmp_path}", "--resume"]) == 2
    assert "There is no run named kpet to resume" in capsys.readouterr().err and not (tmp_path / "kpet").exists()


def test_evaluate_takes_only_a_split_a_dataset_can_have(capsys):
    from training.finetune.evaluate import main

    with pytest.raises(SystemExit) as stopped:
        main(["--dataset", "gestures", "--split", "bogus"])
    assert stopped.value.code == 2
    assert "invalid choice: 'bogus' (choose from 'train', 'val', 'test')" in capsys.readouterr().err


def test_resume_skips_a_checkpoint_interrupted_while_saving(tmp_path):
    from training.finetune.run_folder import last_complete_checkpoint

    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-16").mkdir()  # killed before any file was written
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-8")
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_metrics_match_hand_computed_cases():
    truth = ["a", "a", "b", "c", "c", "c"]
    ranked = [["a", "b"], ["b", "a"], ["b", "c"], ["a", "c"], ["c", "a"], ["b", "a"]]
    predicted = [r[0] for r in ranked]
    assert metrics.top_k_accuracy(truth, ranked, 1) == pytest.approx(3 / 6)
    assert metrics.top_k_accuracy(truth, ranked, 2) == pytest.approx(5 / 6)
    assert metrics.per_class_accuracy(truth, predicted) == {"a": 0.5, "b": 1.0, "c": pytest.approx(1 / 3)}
    assert metrics.mean_per_class_accuracy(truth, predicted) == pytest.approx((0.5 + 1 + 1 / 3) / 3)
    matrix = metrics.confusion_matrix(truth, predicted, ["a", "b", "c"])
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 1, 1]]
    assert metrics.top_confusions(truth, predicted) == [("a", "b", 1), ("c", "a", 1), ("c", "b", 1)]
    assert metrics.latency_percentiles([10, 20, 30, 40], (50,)) == {"p50": 25.0}
    assert metrics.top_k_accuracy([], [], 1) == 0.0


@pytest.mark.slow
def test_same_seed_same_adapter(tiny_model_dir, gestures, tmp_path):
    from training.finetune.train import finetune

    def train(name: str, seed: int) -> dict[str, torch.Tensor]:
        config = load_finetune_config(overrides=dict(
            dataset=str(gestures), output_dir=str(tmp_path), run_name=name, max_steps=3, batch_size=2,
            grad_accumulation=1, learning_rate=1e-3, warmup_steps=0, save_strategy="no", seed=seed,
        ))
        adapter = finetune(config, tiny_config(tiny_model_dir), DataLayout.at(tmp_path)).adapter
        with safe_open(adapter / "adapter_model.safetensors", "pt") as weights:
            return {key: weights.get_tensor(key) for key in weights.keys()}

    first, again, other = train("a", 7), train("b", 7), train("c", 8)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)

"""LoRA fine-tuning of the recognizer on a built dataset: TRL's SFTTrainer + PEFT.

`finetune(config, engine_config, layout)` trains one run into its folder (the format is
`run_folder.py`): parse -> model -> data -> trainer -> save. QLoRA (4-bit base) on CUDA,
plain LoRA elsewhere; the base model, prompt and input profile (tile size) are the engine
config's and the frames per clip the dataset's, so the adapter is trained on exactly the
inputs the server will feed it. The adapter folder records that profile (`profile.json`)
beside its glosses; activating the adapter switches the engine to it. The command line is
`python -m training.finetune` (`__main__.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from engine import ADAPTER_PROFILE, InputProfile, SignLensError
from training.atomic import write_json
from training.dataset import load_dataset
from training.errors import DatasetError, FinetuneConfigError
from training.finetune.run_folder import RunFolder, last_complete_checkpoint, plot_loss, read_json
from training.layout import DataLayout

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- helpers
def lora_config(config) -> Any:
    """PEFT LoRA on the language model's projections (+ the projector when asked)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets,
        modules_to_save=["multi_modal_projector"] if config.train_projector else None,
        task_type="CAUSAL_LM",
    )


def base_model_config(engine_config, config):
    """The engine's model settings, made trainable: fp32 on CPU, QLoRA on CUDA by default."""
    from engine import choose_device

    device = choose_device(engine_config.model.device, "auto")
    if device.kind == "cuda":
        quantization = "4bit" if config.quantization in ("auto", "4bit") else "none"
        return dataclasses.replace(engine_config.model, quantization=quantization, dtype="auto", adapter="")
    if config.quantization == "4bit":
        return dataclasses.replace(engine_config.model, quantization="4bit", dtype="float32", adapter="")
    # Plain LoRA in fp32: bf16 training on CPU is slower here and less stable (README).
    return dataclasses.replace(engine_config.model, quantization="none", dtype="float32", adapter="")


def training_profile(engine_config, dataset) -> InputProfile:
    """The inputs the adapter learns: the engine's profile, at the dataset's frames per clip
    (a dataset records the frames it was built for, and training samples that many)."""
    profile = engine_config.input_profile()
    return dataclasses.replace(profile, frames_per_clip=dataset.config.frames_per_clip)


AUTO_LOG_SHARE = 0.02  # logging_steps 0: a point every 2 % of the steps, about 50 per run


def log_line(state_step: int, max_steps: int, logs: dict) -> str:
    """One training log record in words: "step 3/12 · loss 2.31 · learning rate 1e-04 · epoch 0.50"."""
    names = {"loss": "loss", "learning_rate": "learning rate", "grad_norm": "gradient norm", "epoch": "epoch",
             "train_loss": "mean loss", "train_runtime": "seconds", "train_samples_per_second": "samples/s"}
    parts = [f"step {state_step}/{max_steps}" if max_steps else f"step {state_step}"]
    for key, label in names.items():
        value = logs.get(key)
        if isinstance(value, (int, float)):
            text = f"{value:.0e}" if key == "learning_rate" else f"{value:.2f}" if key == "epoch" else f"{value:.4g}"
            parts.append(f"{label} {text}")
    return " · ".join(parts)


def _plain_progress():
    from transformers.trainer_callback import ProgressCallback

    class PlainProgress(ProgressCallback):
        """transformers' progress bar, with log records as words instead of dicts."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None:
                self.training_bar.write(log_line(state.global_step, state.max_steps, logs or {}))

    return PlainProgress()


def _callbacks(run: RunFolder):
    from transformers import TrainerCallback

    class RunLog(TrainerCallback):
        """Appends each log record to train_log.jsonl (the UI tails it) and honours CANCEL."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **(logs or {})}
            with open(run.train_log, "a") as handle:
                handle.write(json.dumps(record) + "\n")

        def on_step_end(self, args, state, control, **kwargs):
            if run.cancel.exists():
                control.should_training_stop = True
                control.should_save = True  # keep the progress: a later --resume continues from here
            write_json(run.status, {"state": "running", "step": state.global_step, "max_steps": state.max_steps})

    return [RunLog()]


# ------------------------------------------------------------------------------- main
def finetune(config, engine_config, layout: DataLayout, *, resume: bool = False) -> RunFolder:
    """Train one run; returns its folder (its adapter/ exists unless cancelled).

    The dataset is checked before the run folder is made, so a mistyped dataset leaves
    no run behind; a failure after that marks the run failed in its status.json.
    """
    dataset = load_dataset(config.dataset, layout)
    if problem := dataset.lacks("train"):
        raise DatasetError(problem)
    train_rows = dataset.split("train")
    run = RunFolder.of(config, layout.runs)
    config = dataclasses.replace(config, run_name=run.name)  # saved so --resume finds this folder
    if resume:
        _check_resume(run, config, engine_config)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.finetune_config, config.to_dict())
    write_json(run.engine_config, engine_config.to_dict())
    write_json(run.status, {"state": "starting"})
    # Which process owns the run, also when started from the command line (the app writes
    # the same for its children): a run whose process died reads "interrupted", not
    # "starting" forever, and can be resumed or deleted.
    process = read_json(run.process)
    if process.get("pid") != os.getpid():
        write_json(run.process, {**process, "kind": "train", "pid": os.getpid(), "started": time.time()})
    try:
        return _train(config, engine_config, dataset, train_rows, run, resume=resume)
    except BaseException as exc:
        if run.read_status().get("state") in ("starting", "running"):
            message = str(exc) if isinstance(exc, SignLensError) else f"{type(exc).__name__}: {exc}"
            write_json(run.status, {**run.read_status(), "state": "failed", "message": message[:300]})
        raise


def _check_resume(run: RunFolder, config, engine_config) -> None:
    """Refuse to continue a run on settings other than those it was started with.

    A resumed run mixing two learning rates, or trained on one model and continued on
    another, is an adapter nobody can reproduce from its folder. A run that never saved
    its settings has nothing to differ from: it starts from scratch.
    """
    changes = []
    for path, requested in ((run.finetune_config, config.to_dict()), (run.engine_config, engine_config.to_dict())):
        if path.is_file():
            changes += _changes(read_json(path), json.loads(json.dumps(requested)))
    if changes:
        shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
        raise FinetuneConfigError(f"The run {run.name} was started with other settings ({shown}): resume it without "
                                  "--config, --engine-config and --set, or start a new run under another name.")


def _changes(saved: dict, requested: dict, prefix: str = "") -> list[str]:
    """"key: saved, not requested" for each setting that differs (nested sections as section.key)."""
    out = []
    for key in sorted(set(saved) | set(requested)):
        old, new = saved.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += _changes(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}: {old!r}, not {new!r}")
    return out


def _train(config, engine_config, dataset, train_rows, run: RunFolder, *, resume: bool) -> RunFolder:
    import torch
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    import datasets as hf_datasets
    from engine import frame_tile, load_model, sized_processor
    from training.finetune.collator import ClipCollator

    # Libraries' deprecation notices are for their callers, not for people reading a run's log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    set_seed(config.seed)
    glosses = dataset.glosses()

    # --- model
    loaded = load_model(base_model_config(engine_config, config))
    model = loaded.model
    if loaded.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    profile = training_profile(engine_config, dataset)
    tile = frame_tile(loaded.model.config, profile.image_scale, profile=profile.name)
    log.info("Input profile %s: %d frames per clip, %d px tiles (%d tokens each)",
             profile.name, profile.frames_per_clip, tile.pixels, tile.tokens)
    collator = ClipCollator(sized_processor(loaded.processor, tile), dataset, engine_config.recognition.prompt,
                            pixel_dtype=loaded.device.dtype)
    # The run's log says what the model is trained on: the check that train and serve agree.
    log.info("First training example: %s", collator.describe(train_rows[0]))

    # --- trainer
    on_cpu = loaded.device.kind == "cpu"
    args = SFTConfig(
        output_dir=str(run.checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        warmup_steps=config.warmup_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        # Below 1, transformers reads a share of the total steps (rounded up to whole steps).
        logging_steps=config.logging_steps or AUTO_LOG_SHARE,
        logging_first_step=True,
        optim=config.optimizer,
        save_strategy=config.save_strategy,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=loaded.device.kind == "cuda" and loaded.device.dtype == torch.bfloat16,
        use_cpu=on_cpu,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        dataloader_num_workers=0,
        report_to=[],
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=hf_datasets.Dataset.from_list([{"clip": r["clip"], "gloss": r["gloss"]} for r in train_rows]),
        data_collator=collator,
        processing_class=loaded.processor,
        peft_config=lora_config(config),
        callbacks=_callbacks(run),
    )
    # The log the app shows: one plain line per log record instead of a Python dict.
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_plain_progress())
    checkpoint = last_complete_checkpoint(run.checkpoints) if resume else None
    if resume and checkpoint is None:
        log.info("No checkpoint in run %s: starting from scratch", run.name)
    run.cancel.unlink(missing_ok=True)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started

    if trainer.state.global_step < trainer.state.max_steps and run.cancel.exists():
        write_json(run.status, {"state": "cancelled", "step": trainer.state.global_step})
        return run

    # --- save: everything into a temp folder, then one rename
    metrics = {
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_seconds": seconds,
        "samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_clips": len(train_rows),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
    }
    staging = Path(tempfile.mkdtemp(prefix=".adapter.", dir=run.path))
    trainer.model.save_pretrained(staging)
    (staging / "vocabulary.txt").write_text("# glosses of the dataset this adapter was trained on\n" + "\n".join(glosses) + "\n")
    write_json(staging / ADAPTER_PROFILE, profile.to_dict())
    write_json(staging / "finetune_config.json", config.to_dict())
    write_json(staging / "metrics.json", metrics)
    plot_loss(run.train_log, staging / "loss_curve.png")
    if run.adapter.exists():
        shutil.rmtree(run.adapter)
    os.replace(staging, run.adapter)
    write_json(run.status, {"state": "done", "step": trainer.state.global_step, **metrics})
    log.info("Adapter of run %s saved (%.0f s, loss %.3f)", run.name, seconds, result.training_loss)
    return run

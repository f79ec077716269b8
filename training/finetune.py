"""LoRA fine-tuning of the recognizer on a built dataset: TRL's SFTTrainer + PEFT.

    python -m training.finetune --dataset wlasl100
    python -m training.finetune --dataset wlasl100 --set epochs=3 --set learning_rate=1e-4
    python -m training.finetune --config runs/wlasl100-20261125-1200/finetune_config.json --resume
    SIGNLENS_MODEL=/tmp/tiny-internvl python -m training.finetune --dataset demo --set max_steps=20

Every run writes runs/<name>/: finetune_config.json + engine_config.json (the resolved
settings: rerun from them alone), train_log.jsonl (one line per log step), status.json,
checkpoints/ (resume after a crash with --resume), and at the end adapter/ (the LoRA
weights with vocabulary.txt, metrics.json and loss_curve.png), moved into place only when
complete. `touch runs/<name>/CANCEL` stops a run at the next step (the UI does that).
QLoRA (4-bit base) on CUDA, plain LoRA elsewhere; the base model is the engine's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from training.atomic import write_json

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
    from engine.device import choose_device

    device = choose_device(engine_config.model.device, "auto")
    if device.kind == "cuda":
        quantization = "4bit" if config.quantization in ("auto", "4bit") else "none"
        return dataclasses.replace(engine_config.model, quantization=quantization, dtype="auto", adapter="")
    if config.quantization == "4bit":
        return dataclasses.replace(engine_config.model, quantization="4bit", dtype="float32", adapter="")
    # Plain LoRA in fp32: bf16 training on CPU is slower here and less stable (README).
    return dataclasses.replace(engine_config.model, quantization="none", dtype="float32", adapter="")


def run_folder(config) -> Path:
    name = config.run_name or f"{Path(config.dataset).name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    return Path(config.output_dir) / name


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written to the end, or None.

    The Trainer creates `checkpoint-N/` first and fills it file by file, so a kill during
    a save leaves a folder without its trainer state; resuming from it fails. The state
    file is written last, so a readable one marks a complete checkpoint.
    """
    if not folder.is_dir():
        return None
    steps = sorted((int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*") if p.name.split("-")[1].isdigit())
    for _, path in reversed(steps):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            log.warning("Skipping incomplete checkpoint %s (interrupted while saving)", path)
    return None


def _callbacks(run_dir: Path):
    from transformers import TrainerCallback

    class RunLog(TrainerCallback):
        """Appends each log record to train_log.jsonl (the UI tails it) and honours CANCEL."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            record = {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **(logs or {})}
            with open(run_dir / "train_log.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

        def on_step_end(self, args, state, control, **kwargs):
            if (run_dir / "CANCEL").exists():
                control.should_training_stop = True
                control.should_save = True  # keep the progress: a later --resume continues from here
            write_json(run_dir / "status.json", {"state": "running", "step": state.global_step, "max_steps": state.max_steps})

    return [RunLog()]


def read_losses(log_file: Path) -> list[tuple[int, float]]:
    """(step, loss) from train_log.jsonl, for the plot here and the UI's live curve.

    After a resume the repeated steps keep their latest value; a line being written right
    now (or cut by a kill) is skipped rather than failing a finished run.
    """
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    points: dict[int, float] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
            if "loss" in record:
                points[int(record["step"])] = float(record["loss"])
        except (ValueError, TypeError, KeyError):
            continue
    return sorted(points.items())


def plot_loss(log_file: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = read_losses(log_file)
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    if points:
        axis.plot(*zip(*points), marker="o", markersize=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title("Loss on the answer tokens")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


# ------------------------------------------------------------------------------- main
def finetune(config, *, engine_config=None, resume: bool = False, data_root: Path | None = None) -> Path:
    """Train one run; returns the run folder (its adapter/ exists unless cancelled)."""
    import torch
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    import datasets as hf_datasets
    from engine.config import load_config
    from engine.model import load_model
    from training.dataset import load_dataset
    from training.sft_data import ClipCollator

    engine_config = engine_config or load_config()
    run_dir = run_folder(config)
    config = dataclasses.replace(config, run_name=run_dir.name)  # saved so --resume finds this folder
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "finetune_config.json", config.to_dict())
    write_json(run_dir / "engine_config.json", engine_config.to_dict())
    write_json(run_dir / "status.json", {"state": "starting"})
    set_seed(config.seed)

    # --- data
    dataset = load_dataset(config.dataset, data_root)
    train_rows = dataset.split("train")
    if not train_rows:
        raise ValueError(f"The dataset {dataset.folder.name} has no training clips.")
    glosses = sorted({row["gloss"] for row in dataset.rows})

    # --- model
    loaded = load_model(base_model_config(engine_config, config))
    model = loaded.model
    if loaded.quantization == "4bit":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    collator = ClipCollator(loaded.processor, dataset, engine_config.recognition.prompt,
                            pixel_dtype=loaded.device.dtype)

    # --- trainer
    on_cpu = loaded.device.kind == "cpu"
    args = SFTConfig(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accumulation,
        warmup_steps=config.warmup_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
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
        callbacks=_callbacks(run_dir),
    )
    checkpoint = last_complete_checkpoint(run_dir / "checkpoints") if resume else None
    if resume and checkpoint is None:
        log.info("No checkpoint in %s: starting from scratch", run_dir)
    (run_dir / "CANCEL").unlink(missing_ok=True)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.perf_counter() - started

    if trainer.state.global_step < trainer.state.max_steps and (run_dir / "CANCEL").exists():
        write_json(run_dir / "status.json", {"state": "cancelled", "step": trainer.state.global_step})
        return run_dir

    # --- save: everything into a temp folder, then one rename
    metrics = {
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_seconds": seconds,
        "samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_clips": len(train_rows),
        "resumed_from": checkpoint,
    }
    staging = Path(tempfile.mkdtemp(prefix=".adapter.", dir=run_dir))
    trainer.model.save_pretrained(staging)
    (staging / "vocabulary.txt").write_text("# glosses of the dataset this adapter was trained on\n" + "\n".join(glosses) + "\n")
    write_json(staging / "finetune_config.json", config.to_dict())
    write_json(staging / "metrics.json", metrics)
    plot_loss(run_dir / "train_log.jsonl", staging / "loss_curve.png")
    final = run_dir / "adapter"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    write_json(run_dir / "status.json", {"state": "done", "step": trainer.state.global_step, **metrics})
    log.info("Adapter saved to %s (%.0f s, loss %.3f)", final, seconds, result.training_loss)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    from training.finetune_config import FinetuneConfigError, load_finetune_config, parse_overrides

    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="finetune YAML or a run's finetune_config.json (default: assets/config/finetune.yml)")
    parser.add_argument("--dataset", help="dataset name or folder (overrides the config)")
    parser.add_argument("--run-name", help="run folder name (overrides the config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides = parse_overrides(args.set)
        if args.dataset:
            overrides["dataset"] = args.dataset
        if args.run_name:
            overrides["run_name"] = args.run_name
        config = load_finetune_config(args.config, overrides=overrides)
        if not config.dataset:
            raise FinetuneConfigError("No dataset: pass --dataset NAME (see python -m training.curate list).")
        run_dir = finetune(config, resume=args.resume)
    except (FinetuneConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

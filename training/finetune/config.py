"""Fine-tuning settings: one typed dataclass, read from YAML, overridable from the CLI.

The resolved config is saved next to every run (`<data>/runs/<name>/finetune_config.json`),
so a run can be repeated from that file alone: `--config <data>/runs/<name>/finetune_config.json`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from engine import EngineConfig, build_config, load_config, project_path, read_config_file
from training.errors import FinetuneConfigError

DEFAULT_FINETUNE_CONFIG = "assets/config/finetune.yml"


@dataclass(frozen=True)
class FinetuneConfig:
    # Dataset name under <data>/datasets/, or a folder holding dataset.jsonl (training/dataset.py).
    dataset: str = ""
    # Runs are written to <output_dir>/<run_name>/ (checkpoints, adapter, logs, plots);
    # "" = <data>/runs/, beside the datasets they were trained on.
    output_dir: str = ""
    # Empty: "<dataset>-<UTC timestamp>"; a fixed name lets a crashed run resume.
    run_name: str = ""
    epochs: float = 1.0
    # > 0 stops after this many optimizer steps whatever `epochs` says (smoke runs, tests).
    max_steps: int = -1
    batch_size: int = 1
    # Effective batch = batch_size x grad_accumulation: 1 x 4 fits a 2B model on 8 GB.
    grad_accumulation: int = 4
    warmup_steps: int = 10
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    # A loss point every this many steps; 0 = about 50 points whatever the run's length
    # (a 12-step run then logs every step instead of plotting 2 points).
    logging_steps: int = 0
    optimizer: str = "adamw_torch"
    # When checkpoints are written: "epoch", "steps" (every save_steps) or "no".
    save_strategy: str = "epoch"
    save_steps: int = 500
    # Older checkpoints are deleted beyond this many (disk is finite on a Space).
    save_total_limit: int = 2
    # Seeds data order, LoRA init and dropout: same config, same adapter.
    seed: int = 42
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # Regex matched against full module names; must not reach the vision tower, whose
    # attention layers share the short names q_proj/k_proj/v_proj.
    lora_targets: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
    # Also train the projector from vision features to the language model (fully, saved
    # with the adapter): helps when the new signs need visual detail the base ignored.
    train_projector: bool = False
    # "auto": QLoRA (NF4 base) on CUDA, plain LoRA elsewhere; "4bit" or "none" to force.
    quantization: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.epochs <= 0 and self.max_steps <= 0:
            problems.append(f"epochs must be positive (got {self.epochs}) unless max_steps is set")
        if self.logging_steps < 0:
            problems.append(f"logging_steps must be 0 (automatic) or more (got {self.logging_steps})")
        for name in ("batch_size", "grad_accumulation", "save_steps", "lora_r", "lora_alpha"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be between 0 and 1 (got {self.learning_rate})")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1) (got {self.lora_dropout})")
        if self.save_strategy not in ("epoch", "steps", "no"):
            problems.append(f"save_strategy must be epoch, steps or no (got {self.save_strategy!r})")
        if self.quantization not in ("auto", "4bit", "none"):
            problems.append(f"quantization must be auto, 4bit or none (got {self.quantization!r})")
        try:
            pattern = re.compile(self.lora_targets)
        except re.error as exc:
            problems.append(f"lora_targets is not a valid regex ({exc})")
        else:
            if pattern.fullmatch("model.vision_tower.encoder.layer.0.attention.q_proj"):
                problems.append("lora_targets matches the vision tower; restrict it to the language model")
        if problems:
            raise FinetuneConfigError("; ".join(problems) + ".")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_finetune_config(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None) -> FinetuneConfig:
    """YAML (or a saved finetune_config.json) first, then `overrides` (CLI `--set k=v`)."""
    path = project_path(path or DEFAULT_FINETUNE_CONFIG)
    known = [f.name for f in dataclasses.fields(FinetuneConfig)]
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:  # a mistyped --set is the user's, not the config file's
        raise FinetuneConfigError(f"There is no setting called {', '.join(unknown)}; the settings are {', '.join(known)}.")
    raw = {**read_config_file(path, FinetuneConfigError), **(overrides or {})}
    return build_config(FinetuneConfig, raw, path.name, FinetuneConfigError)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["learning_rate=1e-4", "epochs=3"]` -> dict; values are coerced by the loader."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise FinetuneConfigError(f"--set expects key=value, got {pair!r}.")
        out[key.strip()] = value.strip()
    return out


def load_engine_config(path: str | Path | None) -> EngineConfig:
    """The engine config a run trains or evaluates with.

    A file (a run's saved engine_config.json, written by the server that started it) is
    taken as it is, with no SIGNLENS_* variables on top: the child must run exactly what
    the server serves. Without one, the app's own defaults and variables.
    """
    return load_config(path, env={}) if path else load_config()

"""The run folder format: every file a fine-tuning run writes, named once, and their readers.

    <data>/runs/<name>/finetune_config.json   the resolved fine-tune config (rerun from it alone)
    <data>/runs/<name>/engine_config.json     the resolved engine config the run trains with:
                                              model, device, prompt, frames, crop, limits
    <data>/runs/<name>/train_log.jsonl        one line per logging step (loss, lr, epoch)
    <data>/runs/<name>/status.json            state: starting | running | done | cancelled | failed
    <data>/runs/<name>/checkpoints/           trainer checkpoints (resume after a crash)
    <data>/runs/<name>/adapter/               the LoRA adapter, vocabulary.txt, metrics.json,
                                              loss_curve.png; moved in whole when complete
    <data>/runs/<name>/CANCEL                 present: stop at the end of the step
    <data>/runs/<name>/process.log, eval.log  the trainer's and the evaluator's output
    <data>/runs/<name>/process.json           pid, command and start time of the last process
    <data>/runs/<name>/report.md, report.json an evaluation of the adapter (report.md for people,
                                              report.json for the app's tables)
    <data>/runs/<name>/confusion_<model>.png  its confusion matrices ("adapter", "base")

The trainer (`training.finetune.train`) writes these; the run manager (`runs.py`) and the
web app only read them. Nothing here imports torch.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def default_run_name(dataset: str) -> str:
    """"<dataset>-<UTC timestamp>": the name of a run started without one."""
    return f"{Path(dataset).name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def of(cls, config, runs: Path) -> "RunFolder":
        """The folder of a fine-tune config's run: <output_dir or `runs`>/<run_name or a default name>."""
        name = config.run_name or default_run_name(config.dataset)
        return cls((Path(config.output_dir) if config.output_dir else runs) / name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def finetune_config(self) -> Path:
        return self.path / "finetune_config.json"

    @property
    def engine_config(self) -> Path:
        return self.path / "engine_config.json"

    @property
    def train_log(self) -> Path:
        return self.path / "train_log.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    def finished_adapter(self) -> Path | None:
        """adapter/ once training finished (PEFT's adapter_config.json is in it), else None."""
        return self.adapter if (self.adapter / "adapter_config.json").is_file() else None

    @property
    def cancel(self) -> Path:
        return self.path / "CANCEL"

    @property
    def process(self) -> Path:
        return self.path / "process.json"

    @property
    def report(self) -> Path:
        return self.path / "report.json"

    @property
    def report_text(self) -> Path:
        return self.path / "report.md"

    def confusion(self, model: str) -> Path:
        """The confusion matrix of "adapter" or "base" in the last evaluation."""
        return self.path / f"confusion_{model}.png"

    def log(self, kind: str) -> Path:
        """The output of the last "train" or "eval" process."""
        return self.path / ("process.log" if kind == "train" else "eval.log")

    def read_status(self) -> dict[str, Any]:
        return read_json(self.status)

    def read_report(self, *, heading_depth: int = 0) -> "Report | None":
        """The last evaluation for a page, or None when the run was not evaluated (or report.md is unreadable).

        The text is report.md without its image links (a page shows the confusion matrix
        itself), its headings `heading_depth` levels deeper so they sit under the page's own.
        """
        try:
            text = self.report_text.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        text = re.sub(r"^!\[[^\]]*\]\([^)]*\)\s*$", "", text, flags=re.M)
        text = re.sub(r"^(#+) ", lambda m: "#" * heading_depth + m.group(1) + " ", text, flags=re.M)
        matrix = next((path for path in map(self.confusion, ("adapter", "base")) if path.is_file()), None)
        return Report(text, matrix)


@dataclass(frozen=True)
class Report:
    # report.md without its image links, headings moved down as asked.
    text: str
    # The confusion matrix to show: the adapter's, else the base model's; None when neither was drawn.
    confusion: Path | None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when it is missing, being written or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_losses(log_file: Path) -> list[tuple[int, float]]:
    """(step, loss) from train_log.jsonl, for the plot and the UI's live curve.

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
    from matplotlib.ticker import MaxNLocator

    points = read_losses(log_file)
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    if points:
        axis.plot(*zip(*points), marker="o", markersize=3)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title("Loss on the answer tokens")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


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
            log.warning("Skipping incomplete checkpoint %s (interrupted while saving)", path.name)
    return None

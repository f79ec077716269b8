"""The Fine-tune tab: train a LoRA adapter on a curated dataset, watch it, evaluate it, use it.

UI only. Training and evaluation run as background processes (`training/finetune/runs.py`: one
at a time, server-wide; the server keeps serving); this tab starts them, polls their
files with a `gr.Timer` and shows the log, the loss curve and the reports. Activating an
adapter hot-swaps it into the running engine, which every tab shares, so Upload and
Live answer with it at once. `FineTuner` holds the event functions as plain methods so
tests call them directly; `build_finetune_tab` lays out the components inside an open
`gr.Tab`:

    with gr.Tab("Fine-tune"):
        build_finetune_tab(engine, layout)

No torch or transformers here, nor in training/finetune/runs.py: the processes import them.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import gradio as gr

from training.dataset import EVAL_SPLIT, list_datasets, load_dataset
from training.errors import DatasetError, RunError
from training.finetune.config import FinetuneConfig, load_finetune_config
from training.finetune.run_folder import RunFolder, read_json
from training.finetune.runs import RunInfo, RunManager, check_name
from training.layout import DataLayout
from webapp.access import LOCAL, Access
from webapp.status import public_text
from webapp.common import current_blocks, datasets_if_changed, first_cell

ADAPTER_COLUMNS = ["run", "dataset", "steps", "train loss", "samples/s", "top-1", "top-5", "base top-1", "active"]
# The config fields the tab lets users edit; the rest come from assets/config/finetune.yml.
FIELDS = ("epochs", "max_steps", "learning_rate", "lora_r", "train_projector")
NO_ADAPTER = "Choose an adapter first."
# The log box shows the last lines whole (it grows up to 40 rows for wrapped ones), so the
# newest line is always in view without scrolling.
LOG_LINES = 15


class FineTuner:
    """The tab's event functions over one engine and one data folder (its runs/)."""

    def __init__(self, engine: Any, layout: DataLayout, *, config: FinetuneConfig | None = None,
                 manager: RunManager | None = None) -> None:
        self.engine = engine
        self.layout = layout
        defaults = load_finetune_config()
        self.config = config or defaults
        self.manager = manager or RunManager(layout, engine_config=engine.config)
        # What `config` changes from the YAML: passed to every run besides the tab's fields.
        self._base = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(FinetuneConfig)
                      if f.name not in ("dataset", "run_name", "output_dir")
                      and getattr(self.config, f.name) != getattr(defaults, f.name)}

    # --- training ---------------------------------------------------------------------

    def start(self, dataset: str | None, run_name: str | None, epochs: float | None, max_steps: float | None,
              learning_rate: float | None, lora_r: float | None, train_projector: bool | None,
              logging_steps: float | None = None):
        if not dataset:
            raise RunError("Choose a built dataset first (build one in the Curate tab).")
        values = dict(zip(FIELDS, (epochs, max_steps, learning_rate, lora_r, bool(train_projector))))
        for key, value in values.items():
            if value is None:
                raise RunError(f"Fill in {key.replace('_', ' ')} first.")
        if logging_steps is not None:
            values["logging_steps"] = int(logging_steps)
        name = self.manager.launch(dataset, run_name=run_name or "", overrides={**self._base, **values})
        return self.job_status(), self._run_choices(name)

    def dataset_note(self, dataset: str | None) -> str:
        """What the chosen dataset lacks, said before training rather than when Evaluate fails."""
        if not dataset:
            return ""
        try:
            data = load_dataset(dataset, self.layout)
        except DatasetError as exc:
            return f"⚠️ {exc}"
        splits = data.splits()
        missing = [s for s in ("val", EVAL_SPLIT) if data.lacks(s)]
        if not missing:
            return f"Splits: {', '.join(splits)}."
        effect = (f"it can be trained on but not evaluated (Evaluate needs a {EVAL_SPLIT} split)" if EVAL_SPLIT in missing
                  else "training reports no validation loss")
        return (f"⚠️ {dataset} has no {' and no '.join(missing)} clips (splits: {', '.join(splits) or 'none'}): "
                f"{effect}. Rebuild it in Curate with more clips or the signer split rule.")

    def delete(self, run: str | None):
        if not run:
            raise RunError("Choose the run to delete.")
        name = self.manager.delete(run)
        return f"Deleted the run {name} and its folder.", self._run_choices()

    def cancel(self) -> str:
        run = self.manager.cancel()
        return f"Stopping {run}..." if run else "Nothing is running."

    def resume(self, run: str | None) -> str:
        if not run:
            raise RunError("Choose the run to resume.")
        self.manager.resume(run)
        return self.job_status()

    def job_status(self) -> str:
        job = self.manager.job()
        if not job.kind:
            return "No training or evaluation has run since the app started."
        if job.kind == "eval":
            head = f"**Evaluation of {job.run}: {job.state}**, {job.elapsed_s:.0f} s"
            if job.state == "done":
                head += " (report below)"
        else:
            try:
                info = self.manager.run(job.run)
            except RunError:  # its folder was deleted under it
                return f"**Training {job.run}: {job.state}** (its folder is gone)"
            progress = f"step {info.step}/{info.max_steps}" if info.max_steps > 0 else f"step {info.step}"
            losses = self.manager.losses(job.run)
            state = info.state if job.running else job.state  # starting (loading the model) / running / cancelling
            head = f"**Training {job.run}: {state}**, {progress}" + (
                f", loss {losses[-1][1]:.4g}" if losses else "") + f", {job.elapsed_s:.0f} s"
        return head + (f"  \n{public_text(job.message)}" if job.message and job.state in ("failed", "cancelled") else "")

    def loss_plot(self, run: str | None):
        import pandas as pd

        points = self.manager.losses(run) if run else []
        # Typed even when empty: the plot's first value fixes its axes as numeric, not categories.
        return pd.DataFrame({"step": pd.Series([p[0] for p in points], dtype="int64"),
                             "loss": pd.Series([p[1] for p in points], dtype="float64")})

    # --- adapters ---------------------------------------------------------------------

    def adapter_table(self, runs: list[RunInfo] | None = None) -> list[list[Any]]:
        """Finished adapters with their metrics, newest first (from `runs` when already read)."""
        active = self.engine.status().adapter
        runs = self.manager.runs() if runs is None else runs
        return [_adapter_row(r, active) for r in runs if r.adapter is not None]

    def adapters(self, runs: list[RunInfo] | None = None):
        """The table and the adapter picker's choices (an event's outputs: builds a component)."""
        rows = self.adapter_table(runs)
        return rows, gr.Dropdown(choices=[row[0] for row in rows])

    def evaluate(self, run: str | None) -> str:
        if not run:
            raise RunError(NO_ADAPTER)
        self.manager.evaluate(run)
        return self.job_status()

    def report(self, run: str | None):
        """The run's last evaluation (report.md without its image links) and its confusion matrix."""
        if not run:
            return "", None
        folder = RunFolder(self.manager.runs_root / check_name(run))
        report = folder.read_report(heading_depth=2)  # under the tab's own headings
        if report is not None:
            return report.text, _load_image(report.confusion) if report.confusion else None
        dataset = str(read_json(folder.finetune_config).get("dataset", ""))
        try:
            problem = load_dataset(dataset, self.layout).lacks(EVAL_SPLIT) if dataset else ""
        except DatasetError:
            problem = ""  # the dataset is gone: Evaluate will say so
        if problem:
            return f"{run} cannot be evaluated. {problem}", None
        return f"{run} has not been evaluated yet: press Evaluate.", None

    def activate(self, run: str | None):
        if not run:
            raise RunError(NO_ADAPTER)
        self.engine.load_adapter(self.manager.adapter_path(run))
        return self.active(), self.adapter_table()

    def deactivate(self):
        self.engine.unload_adapter()
        return self.active(), self.adapter_table()

    def active(self) -> str:
        status = self.engine.status()
        if not status.adapter:
            return f"Active: **the base model** ({status.vocabulary_size} glosses)."
        path = Path(status.adapter)
        name = path.parent.name if path.parent.parent == self.manager.runs_root else path.name  # never a server path
        return f"Active adapter: **{name}** ({status.vocabulary_size} glosses). Upload and Live use it now."

    # --- polling ----------------------------------------------------------------------

    def tick(self, run: str | None, adapter: str | None, seen: dict | None):
        """Everything the timer refreshes; parts that did not change are skipped (no flicker)."""
        seen = dict(seen or {})
        run, adapter = _valid(run or self.manager.job().run), _valid(adapter)
        root = self.manager.runs_root
        runs = self.manager.runs()
        keys = {
            "plot": (run, _stamp(RunFolder(root / run).train_log) if run else None),
            "adapters": (self.engine.status().adapter, *((r.name, r.state, _stamp(RunFolder(r.folder).report))
                                                        for r in runs)),
            "report": (adapter, _stamp(RunFolder(root / adapter).report_text) if adapter else None),
        }
        changed = {part for part, key in keys.items() if seen.get(part) != key}
        seen.update({part: keys[part] for part in changed})
        skip = gr.skip()
        plot = self.loss_plot(run) if "plot" in changed else skip
        table, choices = self.adapters(runs) if "adapters" in changed else (skip, skip)
        report, confusion = self.report(adapter) if "report" in changed else (skip, skip)
        log = public_text(self.manager.log_tail(run, LOG_LINES)) if run else ""  # no server paths on the page
        return self.job_status(), log, plot, table, choices, report, confusion, self.active(), seen

    def _run_choices(self, value: str | None = None):
        names = [r.name for r in self.manager.runs()]
        return gr.Dropdown(choices=names, value=value) if value else gr.Dropdown(choices=names)

    def refresh(self):
        names = list_datasets(self.layout)
        return gr.Dropdown(choices=names), self._run_choices()


def _valid(name: str | None) -> str | None:
    try:
        return check_name(name) if name else None
    except RunError:
        return None


def _stamp(path: Path) -> tuple[float, int]:
    try:
        stat = path.stat()
        return stat.st_mtime, stat.st_size
    except OSError:
        return 0.0, 0


def _load_image(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def _percent(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else ""


def _adapter_row(run: RunInfo, active: str) -> list[Any]:
    m, ev = run.metrics, run.evaluation
    loss, speed = m.get("train_loss"), m.get("samples_per_second")
    return [run.name, run.dataset, m.get("steps", ""), round(loss, 4) if isinstance(loss, (int, float)) else "",
            round(speed, 2) if isinstance(speed, (int, float)) else "",
            _percent(ev.get("adapter", {}).get("top1")), _percent(ev.get("adapter", {}).get("top5")),
            _percent(ev.get("base", {}).get("top1")), "yes" if active and Path(active) == run.adapter else ""]


def build_finetune_tab(engine: Any, layout: DataLayout, *, access: Access = LOCAL,
                       config: FinetuneConfig | None = None) -> FineTuner:
    """Lay out the Fine-tune tab in the current `gr.Tab` context and wire its events.

    Runs live in the data folder's runs/; `config` defaults to assets/config/finetune.yml.
    Returns the `FineTuner` (tests drive it directly).
    """
    tuner = FineTuner(engine, layout, config=config)
    cfg = tuner.config
    errors = access.guard  # one sentence per error, and admins only (checked on every call)
    names = list_datasets(layout)
    rows = tuner.adapter_table()

    gr.Markdown("Train a LoRA adapter on a dataset built in the Curate tab, watch it learn, evaluate it, and switch "
                "the running model to it. Runs live in the data folder's `runs/`; command line: "
                "`python -m training.finetune --help`.")
    gr.Markdown("### Train")
    with gr.Row():
        # Choices come from disk and change while the page is open; every handler checks the
        # name, so a dataset, run or adapter made after the page was built can still be named.
        dataset = gr.Dropdown(names, value=names[0] if names else None, label="Dataset", scale=2,
                              allow_custom_value=True)
        run_name = gr.Textbox(label="Run name", placeholder="empty: <dataset>-<time>", scale=2)
        refresh = gr.Button("Refresh lists", scale=1)
    with gr.Row():
        epochs = gr.Number(cfg.epochs, label="Epochs", minimum=0, step=0.5)
        max_steps = gr.Number(cfg.max_steps, label="Max steps", info="-1: as many as the epochs take", precision=0)
        logging_steps = gr.Number(cfg.logging_steps, label="Log every (steps)", info="0: about 50 loss points per run",
                                  minimum=0, precision=0)
        learning_rate = gr.Number(cfg.learning_rate, label="Learning rate", minimum=0, step=1e-6)
        lora_r = gr.Number(cfg.lora_r, label="LoRA rank", minimum=1, precision=0)
        train_projector = gr.Checkbox(cfg.train_projector, label="Train the projector too")
    with gr.Row():
        start = gr.Button("Start training", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
        resume = gr.Button("Resume")
        delete = gr.Button("Delete run")
        run = gr.Dropdown([r.name for r in tuner.manager.runs()], value=None, label="Run (log, loss; resume)", scale=2,
                          allow_custom_value=True)
    split_note = gr.Markdown(tuner.dataset_note(dataset.value), elem_id="finetune-dataset-note")
    job = gr.Markdown(tuner.job_status())
    with gr.Row():
        plot = gr.LinePlot(tuner.loss_plot(None), x="step", y="loss", label="Training loss", height=300, scale=1,
                           x_axis_format="d")  # whole steps: no "0.5" ticks on a short run
        log = gr.Textbox(label="Log (end)", lines=LOG_LINES, max_lines=40, interactive=False, scale=1)

    gr.Markdown("### Adapters")
    table = gr.Dataframe(rows, headers=ADAPTER_COLUMNS, label="Finished adapters (click a row to choose it)",
                         interactive=False, max_height=320)
    with gr.Row():
        adapter = gr.Dropdown([r[0] for r in rows], value=None, label="Adapter", scale=2, allow_custom_value=True)
        evaluate = gr.Button("Evaluate")
        activate = gr.Button("Activate", variant="primary")
        deactivate = gr.Button("Deactivate")
    active = gr.Markdown(tuner.active())
    with gr.Row():
        report = gr.Markdown()
        confusion = gr.Image(type="pil", label="Confusion matrix", interactive=False)
    seen = gr.State({})
    timer = gr.Timer(2.0)

    watched = [job, log, plot, table, adapter, report, confusion, active, seen]
    poll = dict(fn=access.guard(tuner.tick, quiet=len(watched)), inputs=[run, adapter, seen], outputs=watched,
                show_progress="hidden", queue=False)
    start.click(errors(tuner.start), [dataset, run_name, epochs, max_steps, learning_rate, lora_r, train_projector,
                                      logging_steps], [job, run], api_name="finetune_start")
    cancel.click(errors(tuner.cancel), None, job, api_name="finetune_cancel", queue=False)
    resume.click(errors(tuner.resume), run, job, api_name="finetune_resume")
    refresh.click(errors(tuner.refresh), None, [dataset, run], api_name="finetune_refresh")
    timer.tick(**poll, api_name="finetune_status")
    run.change(**poll, api_name="finetune_watch", api_visibility="private")
    adapter.change(**poll, api_name="finetune_choose", api_visibility="private")
    table.select(first_cell, None, adapter, api_name="finetune_select", api_visibility="private", queue=False)
    evaluate.click(errors(tuner.evaluate), adapter, job, api_name="finetune_evaluate")
    activate.click(errors(tuner.activate), adapter, [active, table], api_name="finetune_activate")
    deactivate.click(errors(tuner.deactivate), None, [active, table], api_name="finetune_deactivate")
    gr.on([], errors(tuner.adapter_table), None, table, api_name="finetune_adapters")
    delete.click(errors(tuner.delete), run, [job, run], api_name="finetune_delete")
    # The dataset list follows the data (page load; a build finishing while the page is open),
    # and the chosen dataset's missing splits are said before training.
    dataset_names = gr.State(None)
    gr.on([timer.tick, current_blocks().load], access.guard(functools.partial(datasets_if_changed, tuner.layout), quiet=2), [dataset_names, dataset],
          [dataset, dataset_names],
          api_name="finetune_datasets_watch", api_visibility="private", queue=False, show_progress="hidden")
    dataset.change(access.guard(tuner.dataset_note, quiet=1), dataset, split_note, api_name="finetune_dataset_note", api_visibility="private",
                   queue=False, show_progress="hidden")
    return tuner

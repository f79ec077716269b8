"""Evaluate the recognizer on a dataset split: base model vs adapter, side by side.

    python -m training.evaluate --dataset wlasl100 --adapter data/runs/wlasl100-20261125-1200/adapter
    python -m training.evaluate --dataset wlasl100 --split val --no-base --out /tmp/val-report

Writes <out>/report.md, report.json and confusion_<model>.png (default out: the adapter's
run folder, or <data>/reports/<dataset>). Recognition runs through the engine exactly as the app
does (score mode over the dataset's glosses, the dataset's frames per clip, the adapter's
own input profile once it is active), so the numbers are what users get; each result
names the profile it was measured at. Top-1/top-5 follow WLASL's per-instance convention.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine import SignLensError
from training.atomic import write_json, write_text
from training.dataset import EVAL_SPLIT, SPLITS, load_dataset
from training.errors import DatasetError
from training.finetune import metrics, records
from training.finetune.run_folder import RunFolder
from training.layout import DataLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    # "base" or "adapter".
    model: str
    clips: int
    top1: float
    top5: float
    mean_class_accuracy: float
    per_gloss: dict[str, float]
    confusions: list[tuple[str, str, int]]
    latency_ms: dict[str, float]
    # The input profile the model saw: name, frames_per_clip, image_scale, tile_px.
    profile: dict[str, Any]
    # (clip, true gloss, top-5 glosses) per instance, for error analysis.
    predictions: list[tuple[str, str, list[str]]]


def evaluate_rows(engine, dataset, rows, *, model: str) -> EvalResult:
    """Recognize every row with the engine as it is now (vocabulary, adapter)."""
    truth, ranked, latencies, predictions = [], [], [], []
    for row in tqdm(rows, desc=f"evaluating {model}", unit="clip", file=sys.stderr):
        result = engine.recognize(dataset.clip_path(row), top_k=5)
        guesses = [p.gloss for p in result.top]
        truth.append(row["gloss"])
        ranked.append(guesses)
        latencies.append(result.timings.total_ms)
        predictions.append((row["clip"], row["gloss"], guesses))
    top1 = [r[0] for r in ranked]
    return EvalResult(
        model=model,
        clips=len(rows),
        top1=metrics.top_k_accuracy(truth, ranked, 1),
        top5=metrics.top_k_accuracy(truth, ranked, 5),
        mean_class_accuracy=metrics.mean_per_class_accuracy(truth, top1),
        per_gloss=metrics.per_class_accuracy(truth, top1),
        confusions=metrics.top_confusions(truth, top1),
        latency_ms=metrics.latency_percentiles(latencies),
        profile={**engine.profile.to_dict(), "tile_px": engine.status().tile_px},
        predictions=predictions,
    )


def evaluate(dataset_name: str, engine_config, layout: DataLayout, *, split: str = EVAL_SPLIT, adapter: str | None = None,
             compare_base: bool = True, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run base and/or adapter on one split; write the report; return it as a dict."""
    from engine import Engine

    dataset = load_dataset(dataset_name, layout)
    if problem := dataset.lacks(split):
        raise DatasetError(problem)
    rows = dataset.split(split)
    glosses = dataset.glosses()
    out = Path(out_dir) if out_dir else (Path(adapter).parent if adapter else layout.reports / dataset.folder.name)
    out.mkdir(parents=True, exist_ok=True)
    vocabulary = out / "eval_vocabulary.txt"
    write_text(vocabulary, "\n".join(glosses) + "\n")

    engine_config = dataclasses.replace(
        engine_config,
        model=dataclasses.replace(engine_config.model, adapter=""),
        video=dataclasses.replace(engine_config.video, frames_per_clip=dataset.config.frames_per_clip),
        recognition=dataclasses.replace(engine_config.recognition, mode="score", vocabulary=str(vocabulary.resolve())),
    )
    engine = Engine(engine_config).start()
    results = []
    if compare_base or not adapter:
        results.append(evaluate_rows(engine, dataset, rows, model="base"))
    if adapter:
        engine.load_adapter(adapter)
        # Both models ranked over the same glosses: the adapter brings its training
        # glosses, which differ when evaluating on another dataset.
        engine.set_vocabulary(vocabulary)
        results.append(evaluate_rows(engine, dataset, rows, model="adapter"))
    engine.close()

    report = {
        "dataset": dataset.folder.name,
        "split": split,
        # The run's name (the folder above adapter/): no server path in a report people share.
        "adapter": Path(adapter).parent.name if adapter else "",
        "glosses": len(glosses),
        "chance_top1": 1 / len(glosses),
        "results": [dataclasses.asdict(r) for r in results],
        # Published results on this standard subset, or why they are not compared (None: not one).
        "beside_records": records.records_for(dataset.config, split=split),
    }
    files = RunFolder(out)  # a report folder holds the report files of a run folder, named alike
    for result in results:
        plot_confusion(result, glosses, files.confusion(result.model))
    write_json(files.report, report)
    write_text(files.report_text, render_markdown(report, results, files))
    return report


def render_markdown(report: dict[str, Any], results: list[EvalResult], files: RunFolder) -> str:
    lines = [
        f"# Evaluation: {report['dataset']} / {report['split']}",
        "",
        f"{results[0].clips} clips, {report['glosses']} glosses (chance top-1 {report['chance_top1']:.1%})."
        + (f" Adapter: run `{report['adapter']}`." if report["adapter"] else ""),
        "",
        "| model | profile | top-1 | top-5 | mean per-class | latency p50 ms | p90 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.model} | {describe_profile(r.profile)} | {r.top1:.1%} | {r.top5:.1%} | {r.mean_class_accuracy:.1%} | "
                     f"{r.latency_ms.get('p50', 0):.0f} | {r.latency_ms.get('p90', 0):.0f} |")
    lines += records.render_markdown(report.get("beside_records"), [dataclasses.asdict(r) for r in results])
    for r in results:
        lines += ["", f"## {r.model}: top confusions (true → predicted, count)", ""]
        lines += [f"- {t} → {p}: {c}" for t, p, c in r.confusions] or ["- none"]
        lines += ["", f"![confusion matrix]({files.confusion(r.model).name})"]
    if len(results) == 2:
        base, tuned = results
        lines += ["", "## Per-gloss top-1 (base → adapter)", "", "| gloss | base | adapter |", "|---|---|---|"]
        for gloss in sorted(tuned.per_gloss):
            lines.append(f"| {gloss} | {base.per_gloss.get(gloss, 0):.0%} | {tuned.per_gloss[gloss]:.0%} |")
    return "\n".join(lines) + "\n"


def describe_profile(profile: dict[str, Any]) -> str:
    """"fast (4 frames, 224 px)": the inputs a result was measured at, in a report's words."""
    return f"{profile['name']} ({profile['frames_per_clip']} frames, {profile['tile_px']} px)"


def plot_confusion(result: EvalResult, glosses: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = [t for _, t, _ in result.predictions]
    predicted = [g[0] for _, _, g in result.predictions]
    labels = glosses if len(glosses) <= 40 else sorted(set(truth))[:40]  # readable at most 40 x 40
    matrix = metrics.confusion_matrix(truth, predicted, labels)
    size = max(4, 0.3 * len(labels) + 2)
    figure, axis = plt.subplots(figsize=(size, size), dpi=100)
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(len(labels)), labels, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{result.model}: top-1 {result.top1:.0%}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name or folder")
    parser.add_argument("--split", default=EVAL_SPLIT, choices=SPLITS, help="the split to evaluate on")
    parser.add_argument("--adapter", help="LoRA adapter folder (a run's adapter/)")
    parser.add_argument("--no-base", action="store_true", help="skip the base model")
    parser.add_argument("--out", help="report folder")
    parser.add_argument("--data", help="data root (default: $SIGNLENS_DATA or ./data)")
    parser.add_argument("--engine-config", help="engine YAML or a run's engine_config.json (taken as is); "
                        "default: the adapter's run's engine_config.json, else the app's settings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from training.finetune.config import load_engine_config

    try:
        engine_file = args.engine_config
        if not engine_file and args.adapter and RunFolder(Path(args.adapter).parent).engine_config.is_file():
            engine_file = str(RunFolder(Path(args.adapter).parent).engine_config)  # the model it was trained on
        report = evaluate(args.dataset, load_engine_config(engine_file), DataLayout.at(args.data), split=args.split,
                          adapter=args.adapter, compare_base=not args.no_base, out_dir=args.out)
    except SignLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for result in report["results"]:
        print(f"{result['model']} at {describe_profile(result['profile'])}: top-1 {result['top1']:.1%}, top-5 {result['top5']:.1%}, "
              f"mean per-class {result['mean_class_accuracy']:.1%} ({result['clips']} clips)")
    return 0

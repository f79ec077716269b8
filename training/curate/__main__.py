"""Dataset curation from the command line: ingest, download, build, stats, export, edit.

Every command reads the same selection (assets/config/dataset.yml, or --config FILE,
with flags on top) as the Curate tab, and edits clips with the same actions
(training/curate/actions.py), so the CLI and the UI build the same dataset.

Examples (data goes to --data, else $SIGNLENS_DATA, else ./data):

    python -m training.curate ingest --subset WLASL100
    python -m training.curate download --subset WLASL100 --limit 20
    python -m training.curate build --name wlasl100 --subset WLASL100 --splits signer
    python -m training.curate stats wlasl100
    python -m training.curate stats --plan --subset WLASL300 --png /tmp/wlasl300.png
    python -m training.curate export wlasl100
    python -m training.curate build --config data/datasets/wlasl100/config.json
    python -m training.curate import ~/WLASL/start_kit/videos
    python -m training.curate relabel wlasl:07069 drink
    python -m training.curate exclude wlasl:07070
    python -m training.curate restore wlasl:07070
    python -m training.curate accept user:1f2e3d4c5b6a
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

EXAMPLES = __doc__.split("Examples", 1)[1].split(":", 1)[1].rstrip()
_SELECTION_FLAGS = {  # flag dest -> DatasetConfig field
    "name": "name", "glossary": "glossary", "subset": "subset", "sources": "sources", "splits": "splits",
    "seed": "seed", "frames": "frames_per_clip", "max_per_gloss": "max_clips_per_gloss",
    "user_clips": "include_user_clips", "user_statuses": "user_statuses", "metadata": "metadata",
}


def _parser() -> argparse.ArgumentParser:
    selection = argparse.ArgumentParser(add_help=False)
    group = selection.add_argument_group("selection (overrides the config file)")
    group.add_argument("--config", type=Path, default=None, help="dataset YAML, or a built dataset's config.json "
                       "(default: assets/config/dataset.yml)")
    group.add_argument("--data", type=Path, default=None, help="data root (default: $SIGNLENS_DATA or ./data)")
    group.add_argument("--name", help="dataset folder name under <data>/datasets/")
    group.add_argument("--glossary", help="glossary file; '' for every WLASL gloss")
    group.add_argument("--subset", help="WLASL100 | WLASL300 | WLASL1000 | WLASL2000 | '' (all)")
    group.add_argument("--sources", nargs="*", help="only these WLASL source sites")
    group.add_argument("--splits", choices=("official", "signer"), help="official split, or no signer in two splits")
    group.add_argument("--seed", type=int)
    group.add_argument("--frames", type=int, help="frames per clip for training (0 = the engine's)")
    group.add_argument("--max-per-gloss", type=int, help="cap clips per gloss and split (0 = none)")
    group.add_argument("--user-clips", action=argparse.BooleanOptionalAction, default=None,
                       help="include the user's own clips")
    group.add_argument("--user-statuses", nargs="+", choices=("pending", "accepted"),
                       help="which user clips (default: accepted)")
    group.add_argument("--metadata", help="WLASL_v0.3.json[.gz] (default: the shipped copy)")

    parser = argparse.ArgumentParser(
        prog="python -m training.curate", description="Curate sign datasets: WLASL + your own clips.",
        epilog="examples:" + EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("ingest", parents=[selection], help="show what the selection holds (no download)")

    down = commands.add_parser("download", parents=[selection], help="download the selection's WLASL clips")
    down.add_argument("--limit", type=int, default=None, help="at most this many clips (a trial run)")
    down.add_argument("--workers", type=int, default=8)
    down.add_argument("--per-host", type=int, default=2)
    down.add_argument("--timeout", type=float, default=30.0)
    down.add_argument("--retries", type=int, default=3)

    build = commands.add_parser("build", parents=[selection], help="trim, crop and write the dataset")
    build.add_argument("--workers", type=int, default=None, help="clips encoded in parallel")
    build.add_argument("--max-side", type=int, default=None, help="longest side of stored clips (px)")

    stats = commands.add_parser("stats", parents=[selection], help="counts per gloss/split/source/signer")
    stats.add_argument("dataset", nargs="?", help="a built dataset's name (or use --plan)")
    stats.add_argument("--plan", action="store_true", help="stats of the selection instead of a built dataset")
    stats.add_argument("--png", type=Path, default=None, help="also write the plot here")
    stats.add_argument("--json", action="store_true", help="print the counts as JSON")

    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", type=Path, default=None, help="data root (default: $SIGNLENS_DATA or ./data)")
    export = commands.add_parser("export", parents=[data], help="zip a built dataset to <data>/exports/<name>.zip")
    export.add_argument("dataset")
    commands.add_parser("list", parents=[data], help="built datasets")
    importing = commands.add_parser("import", parents=[data],
                                    help="bring in WLASL videos you already have (files named <video_id>.<ext>)")
    importing.add_argument("folder", help="a folder of videos, or of per-gloss folders of videos")
    importing.add_argument("--metadata", help="WLASL_v0.3.json[.gz] (default: the shipped copy)")

    relabel = commands.add_parser("relabel", parents=[data], help="give a clip another gloss")
    relabel.add_argument("ref", help="wlasl:<video_id> or user:<id>")
    relabel.add_argument("gloss")
    for verb, text in (("exclude", "leave a clip out of every dataset"),
                       ("restore", "take an excluded clip back (your clips: back to pending review)"),
                       ("accept", "accept one of your own clips after review")):
        commands.add_parser(verb, parents=[data], help=text).add_argument("ref", help="wlasl:<video_id> or user:<id>")
    return parser


def _config(args: argparse.Namespace):
    from training.dataset import load_dataset_config

    overrides = {field: getattr(args, dest) for dest, field in _SELECTION_FLAGS.items()
                 if getattr(args, dest, None) is not None}
    if getattr(args, "workers", None) is not None and args.command == "build":
        overrides["workers"] = args.workers
    if getattr(args, "max_side", None) is not None:
        overrides["max_side"] = args.max_side
    return load_dataset_config(args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from engine import SignLensError
    from training.layout import DataLayout

    layout = DataLayout.at(args.data)
    try:
        return _run(args, layout)
    except SignLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing half-written was kept; run the command again", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, layout) -> int:
    from engine import load_config
    from training.curate import stats
    from training.curate.actions import Curation
    from training.curate.build import build_dataset, export_dataset
    from training.curate.plan import plan_dataset, plan_rows
    from training.dataset import ROWS_FILE, dataset_folder, list_datasets, load_dataset

    if args.command == "list":
        for name in list_datasets(layout):
            rows = sum(1 for _ in open(dataset_folder(layout, name) / ROWS_FILE))
            print(f"{name}\t{rows} clips")
        return 0
    if args.command == "export":
        print(layout.relative(export_dataset(args.dataset, layout)))
        return 0
    if args.command == "import":
        from training.curate.importer import import_videos
        from training.curate.plan import load_instances

        report = import_videos(args.folder, layout, load_instances(args.metadata or ""))
        print(report.summary())
        return 0
    if args.command in ("relabel", "exclude", "restore", "accept"):
        curation = Curation(layout, engine_config=None)
        verb = getattr(curation, args.command)
        print((verb(args.ref, args.gloss) if args.command == "relabel" else verb(args.ref)).replace("**", ""))
        return 0
    config = _config(args)
    if args.command == "ingest":
        return _ingest(config, layout)
    if args.command == "download":
        return _download(config, layout, args)
    if args.command == "build":
        report = build_dataset(config, layout, engine_config=load_config())
        print(report.summary())
        print()
        print(stats.format_table(stats.compute_stats(load_dataset(report.folder, layout).rows)))
        return 0
    if args.command == "stats":
        if args.plan:
            rows, title = plan_rows(plan_dataset(config, layout)), f"selection {config.name}"
        elif args.dataset:
            rows, title = list(load_dataset(args.dataset, layout).rows), args.dataset
        else:
            print("error: name a built dataset, or pass --plan for the selection", file=sys.stderr)
            return 2
        counts = stats.compute_stats(rows)
        print(json.dumps(counts.to_dict(), indent=1) if args.json else stats.format_table(counts))
        if args.png:
            print(f"plot: {stats.plot_stats(counts, args.png, title=title)}")
        return 0
    return 2


def _ingest(config, layout) -> int:
    from training.curate import stats, wlasl
    from training.curate.plan import plan_dataset, plan_rows

    plan = plan_dataset(config, layout)
    wlasl_clips = [c for c in plan.clips if c.origin == "wlasl"]
    included = plan.included()
    print(f"WLASL metadata: {config.metadata or wlasl.DEFAULT_METADATA.name}")
    print(f"selection: glossary={config.glossary or '(all)'} subset={config.subset or '(all)'} "
          f"sources={list(config.sources) or '(all)'} splits={config.splits}")
    print(f"{len(wlasl_clips)} WLASL clips ({sum(c.downloaded for c in wlasl_clips)} downloaded, "
          f"{sum(c.status == 'excluded' for c in wlasl_clips)} excluded), "
          f"{len(plan.clips) - len(wlasl_clips)} user clips; {len(included)} included")
    if plan.missing_glosses:
        shown = ", ".join(plan.missing_glosses[:20])
        print(f"{len(plan.missing_glosses)} glossary glosses have no clip: {shown}"
              + (" ..." if len(plan.missing_glosses) > 20 else ""))
    print()
    print(stats.format_table(stats.compute_stats(plan_rows(plan))))
    return 0


def _download(config, layout, args: argparse.Namespace) -> int:
    from training.curate.download import DownloadConfig, download_instances
    from training.curate.plan import plan_dataset

    # Checked before planning: a bad flag is said at once, not after reading the metadata.
    settings = DownloadConfig(workers=args.workers, per_host=args.per_host, timeout_s=args.timeout,
                              retries=args.retries)
    wanted = [c for c in plan_dataset(config, layout).included() if c.origin == "wlasl"]
    if args.limit is not None:
        wanted = wanted[: args.limit]
    summary = download_instances(wanted, layout.videos, config=settings, manifest_path=layout.download_manifest)
    print(summary.format_summary())
    print(f"manifest: {summary.manifest_path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())

"""Fine-tune the recognizer on a built dataset from the command line.

    python -m training.finetune --dataset wlasl100
    python -m training.finetune --dataset wlasl100 --set epochs=3 --set learning_rate=1e-4
    python -m training.finetune --dataset wlasl100 --run-name first --resume    # after a crash
    SIGNLENS_MODEL=/tmp/tiny-internvl python -m training.finetune --dataset demo --set max_steps=20

The model, prompt, frames and crop come from --engine-config (a YAML, or a run's saved
engine_config.json, taken as it is) or else from assets/config/engine.yml with the
SIGNLENS_* variables on top, as the app reads them. --resume continues on the settings
the run saved (its finetune_config.json and engine_config.json; no SIGNLENS_* on top)
and refuses a --config, --engine-config or --set that would change them.
`touch <run>/CANCEL` stops a run at the end of the step; the web app does that.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="finetune YAML or a run's finetune_config.json (default: assets/config/finetune.yml)")
    parser.add_argument("--engine-config", help="engine YAML or a run's engine_config.json (taken as is, no SIGNLENS_* on top)")
    parser.add_argument("--data", help="data root (default: $SIGNLENS_DATA or ./data)")
    parser.add_argument("--dataset", help="dataset name or folder (overrides the config)")
    parser.add_argument("--run-name", help="run folder name (overrides the config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from engine import SignLensError
    from training.errors import FinetuneConfigError
    from training.finetune.config import load_engine_config, load_finetune_config, parse_overrides
    from training.finetune.run_folder import RunFolder
    from training.finetune.train import finetune
    from training.layout import DataLayout

    layout = DataLayout.at(args.data)
    try:
        overrides = parse_overrides(args.set)
        if args.dataset:
            overrides["dataset"] = args.dataset
        if args.run_name:
            overrides["run_name"] = args.run_name
        config_file, engine_file = args.config, args.engine_config
        if args.resume:  # the run's own settings, read back from its folder (finetune() refuses changes)
            config = load_finetune_config(config_file, overrides=overrides)
            if not config.run_name:
                raise FinetuneConfigError("--resume needs the run: pass --run-name NAME.")
            run = RunFolder.of(config, layout.runs)
            if not run.path.is_dir():  # a typo must not start a new run on the defaults
                raise FinetuneConfigError(f"There is no run named {config.run_name} to resume: check --run-name "
                                          "(and output_dir, if the run was started with one).")
            config_file = config_file or (run.finetune_config if run.finetune_config.is_file() else None)
            engine_file = engine_file or (run.engine_config if run.engine_config.is_file() else None)
        config = load_finetune_config(config_file, overrides=overrides)
        if not config.dataset:
            raise FinetuneConfigError("No dataset: pass --dataset NAME (see python -m training.curate list).")
        run = finetune(config, load_engine_config(engine_file), layout, resume=args.resume)
    except SignLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # Relative to the data folder where it is inside (the app shows this log: no server paths).
    print(run.path.relative_to(layout.root) if run.path.is_relative_to(layout.root) else run.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

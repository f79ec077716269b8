"""Command line: recognize clips, show what the engine would run on, build a tiny model.

    python -m engine info
    python -m engine recognize clip1.mp4 clip2.webm --top-k 5
    python -m engine recognize clips/*.mp4 --json > predictions.jsonl
    python -m engine make-tiny /tmp/tiny-internvl [--like 1b]
    SIGNLENS_MODEL=/tmp/tiny-internvl python -m engine recognize assets/samples/*.mp4

A batch keeps going when one file fails, and says which one and why; the exit status
is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from tqdm import tqdm

from engine import SignLensError, load_config, load_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="engine YAML (default: assets/config/engine.yml)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print the resolved config and load the model once")
    recognize = commands.add_parser("recognize", help="recognize the sign in each clip or image")
    recognize.add_argument("clips", nargs="+")
    recognize.add_argument("--top-k", type=int, default=5)
    recognize.add_argument("--mode", choices=["score", "generate"])
    recognize.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    tiny = commands.add_parser("make-tiny", help="write a tiny random-weight InternVL folder (tests, UI work)")
    tiny.add_argument("folder")
    tiny.add_argument("--like", choices=["2b", "1b"], default="2b", help="which InternVL3 model's shape to shrink (default 2b)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # The engine logs a failed load for servers; here `error: ...` below says it once.
    logging.getLogger("engine.core").addFilter(lambda record: record.levelno < logging.ERROR)

    if args.command == "make-tiny":
        from engine.tiny import TINY_VARIANTS, build_tiny_model
        from engine.vocabulary import DEFAULT_VOCABULARY, load_vocabulary

        glosses = list(load_vocabulary(DEFAULT_VOCABULARY).glosses)
        print(build_tiny_model(args.folder, extra_words=glosses, **TINY_VARIANTS[args.like]))
        return 0
    try:
        config = load_config(args.config)
        if args.command == "info":
            print(json.dumps(config.to_dict(), indent=2))
        engine = load_engine(config)
    except SignLensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "info":
        print(json.dumps(dataclasses.asdict(engine.status()), indent=2))
        return 0

    failures = 0
    for path in tqdm(args.clips, desc="recognizing", unit="clip", disable=len(args.clips) < 2, file=sys.stderr):
        try:
            result = engine.recognize(path, top_k=args.top_k, mode=args.mode)
        except SignLensError as exc:
            failures += 1
            record = {"clip": path, "error": str(exc)}
            print(json.dumps(record) if args.json else f"{path}: FAILED: {exc}", flush=True)
            continue
        if args.json:
            print(json.dumps({
                "clip": path,
                "gloss": result.text,
                "top": [{"gloss": p.gloss, "probability": round(p.probability, 6)} for p in result.top],
                "frames": list(result.clip.indices),
                "latency_ms": round(result.timings.total_ms, 1),
            }), flush=True)
        else:
            guesses = ", ".join(f"{p.gloss} {p.probability:.0%}" for p in result.top)
            print(f"{path}: {result.text}  ({guesses}; {result.timings.total_ms:.0f} ms)", flush=True)
    if failures:
        print(f"{failures} of {len(args.clips)} file(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

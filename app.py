"""Start SignLens: `python app.py [--host 0.0.0.0] [--port 7860] [--max-file-mb 200]`.

The page is served at once; the model loads in the background and the status panel
says when it is ready (or why it failed). Settings: assets/config/engine.yml,
assets/config/live.yml and the SIGNLENS_* environment variables (see README).
"""

from __future__ import annotations

import argparse
import logging
import os

# Before gradio is imported: no usage statistics leave the machine unless asked for.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    parser = argparse.ArgumentParser(description="SignLens web app")
    parser.add_argument("--host", default=os.environ.get("SIGNLENS_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIGNLENS_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))))
    parser.add_argument("--config", default=None, help="engine YAML (default: assets/config/engine.yml)")
    parser.add_argument("--live-config", default=None, help="live YAML (default: assets/config/live.yml)")
    parser.add_argument("--max-file-mb", type=float, default=None, help="largest upload in MB (default: limits.max_file_mb)")
    parser.add_argument("--data", default=None, help="data folder (default: $SIGNLENS_DATA or ./data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from engine import Engine, load_config, load_dotenv, load_live_config
    from training.layout import DataLayout
    from webapp.app import build_app, serve

    load_dotenv()
    overrides = {"limits": {"max_file_mb": args.max_file_mb}} if args.max_file_mb else None
    engine = Engine(load_config(args.config, overrides=overrides))
    app = build_app(engine, layout=DataLayout.at(args.data), live_config=load_live_config(args.live_config))
    serve(app, engine, host=args.host, port=args.port, prevent_thread_lock=True)
    # The model loads only once the page is served: a loader thread started earlier would
    # compete with Gradio's start-up for the GIL and delay the first page (benchmarks/bench_coldstart.py).
    engine.start(background=True)
    app.block_thread()


if __name__ == "__main__":
    main()

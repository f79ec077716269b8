"""Start SignLens: `python app.py [--host 0.0.0.0] [--port 7860]`.

The page is served at once; the model loads in the background and the status panel
says when it is ready (or why it failed). Settings: assets/config/engine.yml and the
SIGNLENS_* environment variables (see README).
"""

from __future__ import annotations

import argparse
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    parser = argparse.ArgumentParser(description="SignLens web app")
    parser.add_argument("--host", default=os.environ.get("SIGNLENS_HOST", os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIGNLENS_PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))))
    parser.add_argument("--config", default=None, help="engine YAML (default: assets/config/engine.yml)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from engine import load_engine
    from webapp.app import build_app

    engine = load_engine(args.config, background=True)
    build_app(engine).queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()

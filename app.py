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
    parser.add_argument("--public", action="store_true", help="recognition only, even on loopback (or SIGNLENS_PUBLIC=1)")
    parser.add_argument("--auth", default=None, help="users file from `python -m webapp.users add` (or SIGNLENS_AUTH_FILE)")
    parser.add_argument("--server-config", default=None, help="server YAML (default: assets/config/server.yml)")
    args = parser.parse_args()

    from engine import Engine, SignLensError, load_config, load_dotenv, load_live_config, one_line_per_warning, prepare_hub

    load_dotenv()
    try:
        overrides = {"limits": {"max_file_mb": args.max_file_mb}} if args.max_file_mb else None
        config = load_config(args.config, overrides=overrides)
    except SignLensError as exc:
        raise SystemExit(f"error: {exc}") from None
    offline_reason = prepare_hub(config.model.id)  # before anything below imports huggingface_hub

    from webapp.cache import claim_upload_folder
    from webapp.settings import load_server_config

    try:
        server = load_server_config(args.server_config)
        # Before gradio is imported (some of its modules read these once): uploads go to a
        # folder of this process's own, and uvicorn trusts X-Forwarded-For from these peers.
        uploads, gone = claim_upload_folder(server.upload_root())
    except SignLensError as exc:
        raise SystemExit(f"error: {exc}") from None
    os.environ["GRADIO_TEMP_DIR"] = str(uploads)
    os.environ.setdefault("FORWARDED_ALLOW_IPS", server.forwarded_allow_ips)

    from training.layout import DataLayout, remove_leftovers
    from webapp.access import choose_access
    from webapp.app import build_app, serve
    from webapp.ops import configure_logging

    try:
        configure_logging(server.log_format)
        one_line_per_warning()
        engine = Engine(config)
        access = choose_access(args.host, public=args.public, auth_file=args.auth, environ=os.environ)
        live_config = load_live_config(args.live_config)
    except SignLensError as exc:  # users files included (UsersError is one)
        raise SystemExit(f"error: {exc}") from None
    log = logging.getLogger("signlens")
    if offline_reason:
        log.info("%s", offline_reason)
    log.info("access: %s (%s)", access.posture, access.reason)
    layout = DataLayout.at(args.data)
    for leftover in remove_leftovers(layout):
        log.info("removed what a killed process left behind: %s", leftover)
    for folder in gone:
        log.info("removed the uploads of a process that is gone: %s", folder.name)
    app = build_app(engine, layout=layout, access=access, live_config=live_config, server=server)
    serve(app, engine, access=access, host=args.host, port=args.port, prevent_thread_lock=True)
    # The model loads only once the page is served: a loader thread started earlier would
    # compete with Gradio's start-up for the GIL and delay the first page (benchmarks/bench_coldstart.py).
    engine.start(background=True)
    app.block_thread()


if __name__ == "__main__":
    main()

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

# huggingface_hub reads its settings once, when it is imported (gradio imports it):
# https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables
# It retries a failed request 5 times with back-off, per file, and that count has no
# variable; offline, that was ~2.5 minutes of retries before the header said "failed".
# So: a model in a local folder never asks the hub (HF_HUB_OFFLINE=1), a hub that does
# not answer within HUB_PROBE_S means offline (the cached copy loads, or the load fails
# at once with the engine's sentence), and each request waits at most 10 s. An explicit
# HF_HUB_OFFLINE (0 or 1) is always honoured.
HUB_PROBE_S = 3.0
os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")


def hub_reachable(endpoint: str, timeout_s: float = HUB_PROBE_S) -> bool:
    """Whether a TCP connection to the hub opens within `timeout_s` (DNS included)."""
    import socket
    import threading
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def decide_offline(model_id: str, environ=os.environ, reachable=hub_reachable) -> str:
    """Set HF_HUB_OFFLINE where the hub cannot help; returns why, for the log ("" = left as is)."""
    if environ.get("HF_HUB_OFFLINE", environ.get("TRANSFORMERS_OFFLINE")) is not None:
        return ""
    from pathlib import Path

    if model_id and Path(model_id).expanduser().is_dir():
        environ["HF_HUB_OFFLINE"] = "1"
        return f"model {model_id} is a local folder: the hub is not asked"
    endpoint = environ.get("HF_ENDPOINT", "https://huggingface.co")
    if not reachable(endpoint):
        environ["HF_HUB_OFFLINE"] = "1"
        return (f"{endpoint} did not answer within {HUB_PROBE_S:.0f} s: working offline, from the local cache "
                "(set HF_HUB_OFFLINE=0 to insist on the hub)")
    return ""


def one_line_per_warning() -> None:
    """huggingface_hub adds its own stderr handler and still propagates to the root one:
    every hub warning was printed twice. The root handler (with a timestamp) is enough."""
    hub = logging.getLogger("huggingface_hub")
    for handler in list(hub.handlers):
        if type(handler) is logging.StreamHandler:
            hub.removeHandler(handler)


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
    # Which model, before anything imports huggingface_hub: SIGNLENS_MODEL, else the YAML's model.id.
    offline_reason = decide_offline(os.environ.get("SIGNLENS_MODEL") or _configured_model(args.config))

    from engine import Engine, SignLensError, load_config, load_dotenv, load_live_config
    from training.layout import DataLayout, remove_leftovers
    from webapp.access import choose_access
    from webapp.app import build_app, serve
    from webapp.ops import configure_logging
    from webapp.settings import load_server_config
    from webapp.users import UsersError

    load_dotenv()
    try:
        server = load_server_config(args.server_config)
        configure_logging(server.log_format)
        one_line_per_warning()
        overrides = {"limits": {"max_file_mb": args.max_file_mb}} if args.max_file_mb else None
        engine = Engine(load_config(args.config, overrides=overrides))
        access = choose_access(args.host, public=args.public, auth_file=args.auth, environ=os.environ)
        live_config = load_live_config(args.live_config)
    except (SignLensError, UsersError) as exc:
        raise SystemExit(f"error: {exc}") from None
    log = logging.getLogger("signlens")
    if offline_reason:
        log.info("%s", offline_reason)
    log.info("access: %s (%s)", access.posture, access.reason)
    layout = DataLayout.at(args.data)
    for leftover in remove_leftovers(layout):
        log.info("removed what a killed process left behind: %s", leftover)
    app = build_app(engine, layout=layout, access=access, live_config=live_config, server=server)
    serve(app, engine, access=access, host=args.host, port=args.port, prevent_thread_lock=True)
    # The model loads only once the page is served: a loader thread started earlier would
    # compete with Gradio's start-up for the GIL and delay the first page (benchmarks/bench_coldstart.py).
    engine.start(background=True)
    app.block_thread()


def _configured_model(config_path: str | None) -> str:
    """model.id of the engine YAML, read without importing the engine (nor huggingface_hub)."""
    import yaml
    from pathlib import Path

    path = Path(config_path) if config_path else Path(__file__).resolve().parent / "assets" / "config" / "engine.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return str((data.get("model") or {}).get("id") or "")
    except (OSError, yaml.YAMLError, AttributeError):
        return ""


if __name__ == "__main__":
    main()

"""Reaching the Hugging Face hub, decided before anything imports huggingface_hub.

huggingface_hub reads its settings once, when it is imported (gradio and transformers
import it): https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables
So the app calls `prepare_hub` first thing. Nothing here imports huggingface_hub.
"""

from __future__ import annotations

import logging
import os

# huggingface_hub reads its settings once, when it is imported (gradio imports it):
# https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables
# It retries a failed request 5 times with back-off, per file, and that count has no
# variable; offline, that was ~2.5 minutes of retries before the header said "failed".
# So: a model in a local folder never asks the hub (HF_HUB_OFFLINE=1), a hub that does
# not answer within HUB_PROBE_S means offline (the cached copy loads, or the load fails
# at once with the engine's sentence), and each request waits at most 10 s. An explicit
# HF_HUB_OFFLINE (0 or 1) is always honoured.
HUB_PROBE_S = 3.0


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


def prepare_hub(model_id: str, environ=os.environ) -> str:
    """Bounded waits for the hub, offline where it cannot help; returns why, for the log."""
    environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    return decide_offline(model_id, environ)

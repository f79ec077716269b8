"""Shared fixtures: a tiny same-architecture InternVL on disk, and an engine over it.

The tiny model is built once and cached under `.cache/` keyed by the builder's source
and the vocabulary, so every test session after the first reuses it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under `../shared` (test data that must never be committed).

    Users clone the repository alone, so a test that needs it skips with a reason where
    it is absent; CI always has it beside the clone, so there its absence is a failure.
    """
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"needs ../shared/{'/'.join(parts)} beside the repository (test data that is never committed)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def tiny_model_folder(like: str = "2b") -> Path:
    """The tiny model shaped like InternVL3-2B (default) or InternVL3-1B (`like="1b"`)."""
    from engine.tiny import TINY_VARIANTS, build_tiny_model
    from engine.vocabulary import DEFAULT_VOCABULARY, load_vocabulary

    digest = hashlib.sha256((ROOT / "engine" / "tiny.py").read_bytes() + DEFAULT_VOCABULARY.read_bytes()).hexdigest()[:12]
    folder = ROOT / ".cache" / f"tiny-internvl{'' if like == '2b' else '-' + like}-{digest}"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, extra_words=list(load_vocabulary(DEFAULT_VOCABULARY).glosses), **TINY_VARIANTS[like])
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return tiny_model_folder()


def tiny_config(folder: Path, **sections):
    """Engine config for the tiny model: CPU, fp32, unquantized, unless overridden."""
    from engine.config import load_config

    overrides = {"model": {"id": str(folder), "device": "cpu", "dtype": "float32", "quantization": "none"}}
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(env={}, overrides=overrides)


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from engine import Engine

    engine = Engine(tiny_config(tiny_model_dir)).start()
    yield engine
    engine.close()


@pytest.fixture
def loading_engine(tiny_model_dir, monkeypatch):
    """An engine whose background load waits until the test sets the returned event."""
    import threading

    import engine.model
    from engine import Engine

    release = threading.Event()
    real_load = engine.model.load_model
    monkeypatch.setattr(engine.model, "load_model", lambda *a, **k: (release.wait(30), real_load(*a, **k))[1])
    loading = Engine(tiny_config(tiny_model_dir)).start(background=True)
    yield loading, release
    release.set()
    loading.close()


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") while nothing listens there yet."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def webapp_server(tiny_model_dir, tmp_path_factory):
    """The web app over the tiny model on a free 127.0.0.1 port; uploads capped at 1 MB.

    Shared by the API (gradio_client) and browser tests; `.url`, `.engine`, `.layout`.
    """
    from types import SimpleNamespace

    from engine import Engine
    from training.layout import DataLayout
    from webapp.app import build_app, serve
    from webapp.settings import ServerConfig

    engine = Engine(tiny_config(tiny_model_dir, limits={"max_file_mb": 1})).start()
    layout = DataLayout.at(tmp_path_factory.mktemp("webapp-data"))
    # Many tests share this server from one address: a limit of its own (test_ops.py tests the limit).
    app = build_app(engine, layout=layout, server=ServerConfig(rate_limit="10000/minute"))
    serve(app, engine, host="127.0.0.1", port=free_port(), prevent_thread_lock=True)
    yield SimpleNamespace(url=app.local_url.rstrip("/"), engine=engine, layout=layout, app=app)
    app.close()
    engine.close()

"""SignLens engine: the one place that holds the model.

    from engine import load_engine
    engine = load_engine()                      # assets/config/engine.yml + SIGNLENS_* env
    result = engine.recognize("clip.mp4")       # frozen RecognitionResult, top-k glosses
    engine.sentence(["i", "want", "drink"])     # English from a gloss sequence
    engine.load_adapter("runs/my-lora")         # hot-swap a LoRA adapter
    engine.close()

Nothing is loaded or downloaded at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from engine.config import EngineConfig, load_config, load_dotenv
from engine.core import Engine, EngineStatus, Prediction, RecognitionResult, Timings
from engine.errors import (
    AdapterError,
    ClipError,
    ConfigError,
    DeviceError,
    ModelLoadError,
    ModelNotReadyError,
    SignLensError,
)
from engine.video import Clip

__all__ = [
    "AdapterError",
    "Clip",
    "ClipError",
    "ConfigError",
    "DeviceError",
    "Engine",
    "EngineConfig",
    "EngineStatus",
    "ModelLoadError",
    "ModelNotReadyError",
    "Prediction",
    "RecognitionResult",
    "SignLensError",
    "Timings",
    "load_config",
    "load_engine",
]


def load_engine(
    config: EngineConfig | str | Path | None = None,
    *,
    background: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Engine:
    """Build the engine from a config (object or YAML path) and start loading the model.

    With `background=True` it returns at once; `engine.status().state` tells when the
    model is "ready" (or "failed", with the reason in `detail`).
    """
    load_dotenv()
    if not isinstance(config, EngineConfig):
        config = load_config(config, overrides=overrides)
    return Engine(config).start(background=background)

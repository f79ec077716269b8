"""SignLens engine: the one place that holds the model.

    from engine import load_engine
    engine = load_engine()                      # assets/config/engine.yml + SIGNLENS_* env
    result = engine.recognize("clip.mp4")       # frozen RecognitionResult, top-k glosses
    engine.sentence(["i", "want", "drink"])     # English from a gloss sequence
    engine.load_adapter("runs/my-lora")         # hot-swap a LoRA adapter
    engine.close()

Nothing is loaded or downloaded at import time, and torch is not imported either: the
names that need it (`load_model`, `choose_device`) are imported on first use. The web app and `training/` use only the
names listed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import importlib

from engine.config import (
    EngineConfig,
    InputProfile,
    LimitsConfig,
    ProfileConfig,
    build_config,
    load_config,
    load_dotenv,
    project_path,
    read_config_file,
)
from engine.core import ADAPTER_PROFILE, EncodedFrame, Engine, EngineStatus, Prediction, RecognitionResult, Timings, adapter_profile
from engine.errors import (
    AdapterError,
    ClipError,
    ConfigError,
    DeviceError,
    ModelLoadError,
    ModelNotReadyError,
    SignLensError,
)
from engine.hub import one_line_per_warning, prepare_hub
from engine.prompt import FrameTile, answer_ids, encode_clip, frame_tile, sized_processor
from engine.tiny import build_tiny_model
from engine.live import LiveEntry, LiveRecognizer
from engine.segmentation import LiveConfig, Segmenter, SegmenterConfig, load_live_config
from engine.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Clip, crop_square, load_clip
from engine.vocabulary import Vocabulary, VocabularyError, load_vocabulary

# Names whose modules import torch: loaded when first asked for (PEP 562).
_LAZY = {
    "load_model": "engine.model",
    "choose_device": "engine.device",
}

__all__ = [
    "ADAPTER_PROFILE",
    "AdapterError",
    "Clip",
    "ClipError",
    "ConfigError",
    "DeviceError",
    "EncodedFrame",
    "Engine",
    "EngineConfig",
    "EngineStatus",
    "FrameTile",
    "InputProfile",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "LimitsConfig",
    "LiveConfig",
    "LiveEntry",
    "LiveRecognizer",
    "ModelLoadError",
    "ModelNotReadyError",
    "Prediction",
    "ProfileConfig",
    "RecognitionResult",
    "Segmenter",
    "SegmenterConfig",
    "SignLensError",
    "Timings",
    "Vocabulary",
    "VocabularyError",
    "build_config",
    "crop_square",
    "load_clip",
    "load_config",
    "load_dotenv",
    "load_engine",
    "load_live_config",
    "load_vocabulary",
    "adapter_profile",
    "answer_ids",
    "build_tiny_model",
    "encode_clip",
    "frame_tile",
    "project_path",
    "read_config_file",
    "sized_processor",
    *_LAZY,
    "one_line_per_warning",
    "prepare_hub",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


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

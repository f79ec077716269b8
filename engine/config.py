"""Typed engine configuration: YAML in, environment overrides on top.

`assets/config/engine.yml` holds the defaults a Space or a laptop runs with; a few
environment variables (`SIGNLENS_MODEL`, `SIGNLENS_DEVICE`, ...) override single fields
so a deployment needs no edited file. Unknown keys are an error, because a misspelt key
that is silently ignored is a setting the user believes in and does not have.

`HF_TOKEN` may come from a `.env` file; it goes straight into the process environment
for huggingface_hub and is never stored in the config, so no log, error or UI can show it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "assets" / "config" / "engine.yml"

DEVICES = ("auto", "cuda", "directml", "mps", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = ("auto", "4bit", "8bit", "none")
MODES = ("score", "generate")


@dataclass(frozen=True)
class ModelConfig:
    # Hub id ("OpenGVLab/InternVL3-2B-hf") or a local folder with config + weights +
    # processor files; a folder lets offline machines run without the hub.
    id: str = "OpenGVLab/InternVL3-2B-hf"
    # Hub revision (branch, tag or commit) so a deployment can pin exact weights.
    revision: str = "main"
    # Where to run: "auto" picks the best available accelerator (see engine/device.py).
    device: str = "auto"
    # "auto" picks bf16/fp16/fp32 by device; explicit values are honoured or refused.
    dtype: str = "auto"
    # "auto": NF4 4-bit on CUDA, dynamic int8 on CPU (measured fastest, keeps adapters;
    # bf16 instead where it timed faster), none elsewhere (engine/model.py).
    quantization: str = "auto"
    # LoRA adapter folder applied after loading; empty for the base model.
    adapter: str = ""
    # With `quantization: 8bit` on CPU, int8 the vision tower's linear layers too: the
    # vision tower is half of a clip's work on CPU, but int8 blurs the fine visual detail
    # handshapes need, so it is off unless asked for (numbers in README, Benchmarks).
    quantize_vision: bool = False

    def __post_init__(self) -> None:
        _check_choice("model.device", self.device, DEVICES)
        _check_choice("model.dtype", self.dtype, DTYPES)
        _check_choice("model.quantization", self.quantization, QUANTIZATIONS)
        if self.quantize_vision and self.quantization != "8bit":
            raise ConfigError(f"model.quantize_vision needs model.quantization 8bit, got {self.quantization!r}.")
        if not self.id.strip():
            raise ConfigError("model.id is empty: give a hub id such as OpenGVLab/InternVL3-2B-hf or a local folder.")


@dataclass(frozen=True)
class ProfileConfig:
    """One entry of `profiles:`: how much of the sign the model looks at, and how sharply.

    Frames and tile size are most of a clip's cost on CPU (vision tower ~ frames x tile
    side^4 / patch^4, prefill ~ frames x tokens per frame): the `fast` profile is 4 frames
    at half the tile, about 1/8 of `quality`'s work (docs/benchmarks.md). A LoRA adapter
    learns the inputs of one profile, so it records it and activating it switches to it.
    """

    # Frames sampled evenly over the sign's span; each costs one vision-tower pass and its
    # tokens in the prefill. 8 is what the CPU latency budget was first measured at.
    frames_per_clip: int = 8
    # Tile side as a share of the model's native tile (448 px on InternVL3, 32 px on the
    # tiny test model): a share, not pixels, so one profile fits every model. The tile must
    # split into an even grid of the model's patches (224 px = 16 x 14 px on InternVL3);
    # the vision tower resizes its position embeddings to it.
    image_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.frames_per_clip <= 64:
            raise ConfigError(f"frames_per_clip must be between 1 and 64, got {self.frames_per_clip}.")
        if not 0 < self.image_scale <= 2:
            raise ConfigError(f"image_scale must be above 0 and at most 2, got {self.image_scale}.")


# The shipped profiles; `profiles:` in a YAML file adds to them or replaces one by name.
DEFAULT_PROFILES = {
    # Today's inputs: 8 frames at the model's own 448 px tile (256 tokens per frame).
    "quality": ProfileConfig(frames_per_clip=8, image_scale=1.0),
    # 4 frames at 224 px (64 tokens per frame): ~1/8 of quality's seconds per clip on CPU.
    "fast": ProfileConfig(frames_per_clip=4, image_scale=0.5),
}


@dataclass(frozen=True)
class InputProfile:
    """The profile the engine runs: a named `ProfileConfig` with any frames override applied.

    Recorded in an adapter folder (`profile.json`) by training and read back on activation.
    """

    # The profile's name ("quality", "fast", a user's own); an adapter's recorded name.
    name: str
    frames_per_clip: int
    image_scale: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str) -> "InputProfile":
        """A recorded profile, checked like a config entry (a hand-edited file fails clearly)."""
        values = dict(values)
        name = str(values.pop("name", "") or "").strip()
        if not name:
            raise ConfigError(f"{where}: the profile has no name.")
        settings = _profile_config(values, where)
        return cls(name, settings.frames_per_clip, settings.image_scale)


@dataclass(frozen=True)
class VideoConfig:
    # The input profile (see `profiles`): frames per clip and tile size. SIGNLENS_PROFILE.
    profile: str = "quality"
    # 0 uses the profile's frames; a number overrides them (SIGNLENS_FRAMES, and configs
    # written before profiles existed, which set 8 here). An adapter records the result.
    frames_per_clip: int = 0
    # Crop each frame to the signer's bounding box (when one is given, e.g. WLASL's)
    # so the hands fill more of the model's tile.
    crop_to_bbox: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.frames_per_clip <= 64:
            raise ConfigError(f"video.frames_per_clip must be between 1 and 64 (0: the profile's), got {self.frames_per_clip}.")


@dataclass(frozen=True)
class RecognitionConfig:
    # The question asked with the frames; training uses the same text (engine/prompt.py).
    prompt: str = "These frames show one sign of American Sign Language. Which word is signed? Answer with the word only."
    # Gloss list, one per line (`## category` headers allowed); relative paths are from the repo root.
    vocabulary: str = "assets/glossaries/asl_core_320.txt"
    # "score": rank every gloss of the vocabulary (closed set, calibrated top-k);
    # "generate": free text answer, the original behaviour, for open vocabularies.
    mode: str = "score"
    # How many ranked glosses a result carries.
    top_k: int = 5
    # Candidates scored per forward pass; bounds memory on long vocabularies.
    score_batch: int = 512
    # Score glosses best first-token bound first and stop once no other gloss can reach
    # the top k (engine/scoring.py): the same top k for a fraction of the candidate pass.
    # Probabilities are then lower bounds (never overconfident); false scores every gloss,
    # for exact probabilities over the whole vocabulary.
    pruned_ranking: bool = True
    # Generation length for "generate" mode answers (one word plus end token).
    max_new_tokens: int = 8
    # Instruction for turning a gloss sequence into English.
    sentence_prompt: str = (
        "These are ASL glosses in signing order: {glosses}. "
        "Write them as one natural English sentence. Reply with the sentence only."
    )
    # Room for a short sentence.
    sentence_max_new_tokens: int = 48

    def __post_init__(self) -> None:
        _check_choice("recognition.mode", self.mode, MODES)
        if self.top_k < 1:
            raise ConfigError(f"recognition.top_k must be at least 1, got {self.top_k}.")
        if self.score_batch < 1:
            raise ConfigError(f"recognition.score_batch must be at least 1, got {self.score_batch}.")
        if "{glosses}" not in self.sentence_prompt:
            raise ConfigError("recognition.sentence_prompt must contain {glosses}.")


@dataclass(frozen=True)
class LimitsConfig:
    # Uploads larger than this are refused before decoding (protects memory and disk).
    max_file_mb: float = 200.0
    # A single sign lasts seconds; a long video is a mistake or an abuse, not a sign.
    max_clip_seconds: float = 60.0
    # Longest side in pixels; bigger frames are refused (decompression bombs, 8K files).
    max_resolution: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_file_mb", "max_clip_seconds", "max_resolution"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"limits.{name} must be positive, got {getattr(self, name)}.")


@dataclass(frozen=True)
class EngineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    recognition: RecognitionConfig = field(default_factory=RecognitionConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # Named input profiles (frames per clip, tile size); `video.profile` picks one.
    profiles: Mapping[str, ProfileConfig] = field(default_factory=lambda: dict(DEFAULT_PROFILES))

    def __post_init__(self) -> None:
        if self.video.profile not in self.profiles:
            raise ConfigError(f"There is no profile called {self.video.profile!r}; the profiles are "
                              f"{', '.join(sorted(self.profiles))}.")

    def input_profile(self) -> InputProfile:
        """The profile `video.profile` names, with `video.frames_per_clip` applied when set."""
        chosen = self.profiles[self.video.profile]
        return InputProfile(self.video.profile, self.video.frames_per_clip or chosen.frames_per_clip, chosen.image_scale)

    def vocabulary_path(self) -> Path:
        return project_path(self.recognition.vocabulary)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Environment variable -> (section, field). Values are parsed to the field's type.
ENV_OVERRIDES = {
    "SIGNLENS_MODEL": ("model", "id"),
    "SIGNLENS_REVISION": ("model", "revision"),
    "SIGNLENS_DEVICE": ("model", "device"),
    "SIGNLENS_DTYPE": ("model", "dtype"),
    "SIGNLENS_QUANTIZATION": ("model", "quantization"),
    "SIGNLENS_ADAPTER": ("model", "adapter"),
    "SIGNLENS_PROFILE": ("video", "profile"),
    "SIGNLENS_FRAMES": ("video", "frames_per_clip"),
    "SIGNLENS_VOCABULARY": ("recognition", "vocabulary"),
    "SIGNLENS_MODE": ("recognition", "mode"),
}

_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(EngineConfig) if f.name != "profiles"}


def project_path(value: str | Path) -> Path:
    """A path from a config or a flag: absolute as given; relative from the working
    directory when it exists there, else from the project (where `assets/` is, also in a
    non-editable install, which ships `assets` as package data beside `engine`)."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return ROOT / path


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> EngineConfig:
    """Read the YAML file, then apply environment overrides, then explicit `overrides`.

    `env` defaults to `os.environ`; tests pass a dict. `overrides` is a nested mapping
    like the YAML (`{"model": {"id": "/tmp/tiny"}}`) for callers that build configs in code.
    """
    path = project_path(path) if path else DEFAULT_CONFIG
    env = os.environ if env is None else env
    environment: dict[str, dict[str, str]] = {}
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            environment.setdefault(section, {})[key] = env[var]
    merged = merge_sections(str(path), [*_SECTIONS, "profiles"], read_config_file(path), environment, overrides)
    sections = {name: build_config(type(factory()), merged[name], f"{path}: {name}") for name, factory in _SECTIONS.items()}
    profiles = dict(DEFAULT_PROFILES)
    for name, values in merged["profiles"].items():
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{path}: profiles: {name} must hold frames_per_clip and image_scale, got {values!r}.")
        profiles[str(name)] = _profile_config(values or {}, f"{path}: profiles: {name}")
    return EngineConfig(**sections, profiles=profiles)


def merge_sections(where: str, names: Iterable[str], *layers: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Layers of `{section: {key: value}}` (file, environment, code) merged in order.

    A section that is not in `names` is an error, like an unknown key.
    """
    merged: dict[str, dict[str, Any]] = {name: {} for name in names}
    for layer in layers:
        _reject_unknown(layer or {}, merged, where, ConfigError)
        for section, values in (layer or {}).items():
            if values is not None and not isinstance(values, Mapping):
                raise ConfigError(f"{where}: {section} must hold keys, got {values!r}.")
            merged[section].update(values or {})
    return merged


def read_config_file(path: Path, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The mapping a YAML config (or a saved JSON copy of one) holds, or one clear `error`.

    Every typed config of the product (engine, live, dataset, fine-tune) is read here and
    built by `build_config`, so all of them accept and refuse values the same way.
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        raise error(f"Config file {path} does not exist.") from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise error(f"Config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"Config file {path} must hold a mapping of keys.")
    return raw


def build_config(cls: type, values: Mapping[str, Any], where: str, error: type[Exception] = ConfigError) -> Any:
    """`cls(**values)`, each value turned into its field's type; unknown keys are an error.

    Values arrive as YAML scalars, environment strings, CLI `key=value` text or UI
    numbers, so "8", 8.0 and 8 all become the int 8, "yes" the bool True and "a,b" a
    tuple; a value that cannot be turned into its type is refused, never truncated.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(values, fields, where, error)
    defaults = cls()
    parsed = {key: _coerce(value, getattr(defaults, key), f"{where}: {key}", error) for key, value in values.items()}
    try:
        return cls(**parsed)
    except TypeError as exc:
        raise error(f"{where}: {exc}") from None


def load_dotenv(path: str | Path = ROOT / ".env", *, environ: dict[str, str] | None = None) -> list[str]:
    """Copy `KEY=value` lines of a `.env` file into the environment, never overwriting.

    Returns the names it set (never the values). Exists for `HF_TOKEN` on laptops; on a
    Space the token comes from the Space's secrets, which are already environment variables.
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    if not path.is_file():
        return []
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        key, value = key.strip(), value.strip().strip("'\"")
        if key and key not in environ:
            environ[key] = value
            names.append(key)
    return names


def _coerce(value: Any, default: Any, where: str, error: type[Exception]) -> Any:
    kind = type(default)
    if kind is tuple:
        items = [] if value is None else value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise error(f"{where} must be a list, got {value!r}.")
        item_default = default[0] if default else ""
        return tuple(_coerce(item.strip() if isinstance(item, str) else item, item_default, where, error)
                     for item in items if not (isinstance(item, str) and not item.strip()))
    if isinstance(value, float) and not math.isfinite(value):
        pass  # NaN and infinities are never a setting anyone meant: refused below
    elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    elif kind is bool and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    elif kind in (int, float) and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None and not math.isfinite(number):
            number = None  # NaN and infinities are never a setting anyone meant
        if number is not None and kind is float:
            return number
        if number is not None and number.is_integer():
            return int(number)
    elif kind is str and value is None:
        return ""
    elif kind is str and isinstance(value, (int, float)):
        return str(value)
    raise error(f"{where} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}.")


_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}


def _reject_unknown(values: Mapping[str, Any], known: Mapping[str, Any], where: str, error: type[Exception]) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(known)}.")


def _profile_config(values: Mapping[str, Any], where: str) -> ProfileConfig:
    """`build_config` for one profile; its range errors say which profile they are about."""
    try:
        return build_config(ProfileConfig, values, where)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")

"""Loading the vision-language model and its processor, quantized where it pays.

Quantization by device (see README "Benchmarks" for the measurements behind it):
- CUDA: NF4 4-bit with double quantization (bitsandbytes) by default: 2B parameters fit
  in ~2 GB of VRAM and QLoRA fine-tuning uses the same load.
- CPU: unquantized by default. bitsandbytes' 4-bit kernels are slower than plain
  weights on CPU; torch's dynamic int8 ("8bit" here) was the fastest and smallest
  option measured on the full-size model (README, Benchmarks). PEFT cannot put LoRA
  layers on int8 modules, so on "8bit" an adapter is merged into fp32 language-model
  weights read again from the model files and the result quantized
  (`reload_language_model`): swapping costs a reload, unquantized swaps are instant.
- MPS / DirectML: bitsandbytes has no kernels there; the model runs in fp16.
The vision tower and projector stay unquantized: they are ~15 % of the weights, and
quantizing them costs accuracy on fine visual detail (handshapes) for little memory. On
CPU int8, `quantize_vision` trades that detail for speed where asked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.config import ModelConfig
from engine.device import Accelerators, DeviceChoice, choose_device
from engine.errors import ConfigError, ModelLoadError

log = logging.getLogger(__name__)

# Both spellings: transformers 5.x matches skip names from the start of the full module
# name ("model.vision_tower..."), 4.x matches them anywhere in it.
UNQUANTIZED_MODULES = ["model.vision_tower", "model.multi_modal_projector", "vision_tower", "multi_modal_projector", "lm_head"]


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    processor: Any
    device: DeviceChoice
    # "4bit" | "8bit" | "none": what was actually applied.
    quantization: str
    # Why that quantization (shown in the status panel).
    quantization_reason: str
    # Bytes held by parameters and buffers after loading and quantization.
    memory_bytes: int
    load_seconds: float


def resolve_quantization(requested: str, device_kind: str, dtype: Any = None) -> tuple[str, str]:
    """Turn `auto` into a concrete choice and refuse combinations that cannot run.

    On CPU, `auto` is dynamic int8 on the language model: measured 1.4x faster than fp32
    at the `quality` profile and 2.2x at `fast` on the full-size 2B (docs/benchmarks.md),
    and adapters still work (merged into a re-quantized copy on activation). Where the
    start-up timing found bf16 faster than fp32 (AVX512-BF16/AMX, about 2x), bf16 is
    kept instead: int8's kernels take fp32 activations.
    """
    if requested == "auto":
        if device_kind == "cuda":
            return "4bit", "auto: NF4 4-bit on CUDA (smallest memory, QLoRA-ready)"
        if device_kind == "cpu" and dtype == torch.bfloat16:
            return "none", "auto: bf16 on this CPU, timed faster than fp32 (int8 kernels take fp32)"
        if device_kind == "cpu":
            return "8bit", "auto: dynamic int8 on CPU, 1.4-2.2x faster than fp32; adapters are merged in on activation"
        return "none", f"auto: no quantization on {device_kind} (bitsandbytes has no kernels there)"
    if requested == "4bit" and device_kind not in ("cuda", "cpu"):
        raise ConfigError(f"4-bit quantization needs CUDA or CPU; bitsandbytes has no {device_kind} kernels.")
    if requested == "8bit" and device_kind not in ("cuda", "cpu"):
        raise ConfigError(f"8-bit quantization needs CUDA or CPU, not {device_kind}.")
    return requested, f"{requested} requested"


def load_model(config: ModelConfig, *, accelerators: Accelerators | None = None) -> LoadedModel:
    """Load processor + model from a hub id or a local folder, once."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    started = time.perf_counter()
    device = choose_device(config.device, config.dtype, accelerators=accelerators)
    quantization, why = resolve_quantization(config.quantization, device.kind, device.dtype)
    dtype = device.dtype
    if quantization == "8bit" and device.kind == "cpu":
        dtype = torch.float32  # dynamic int8 kernels take fp32 activations
    kwargs: dict[str, Any] = {"revision": config.revision, "dtype": dtype}
    if device.kind == "directml":
        kwargs["attn_implementation"] = "eager"  # SDPA fails on DirectML (docs/windows-directml.md)
    quantization_config = _bitsandbytes_config(quantization, device, dtype)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device.torch_device}
    try:
        processor = AutoProcessor.from_pretrained(config.id, revision=config.revision)
        model = AutoModelForImageTextToText.from_pretrained(config.id, **kwargs)
    except Exception as exc:  # hub, network, disk and format errors all end up here
        raise ModelLoadError(_load_failure_message(config.id, exc)) from None
    if quantization_config is None:
        model = model.to(device.torch_device)
    if quantization == "8bit" and device.kind == "cpu":
        model = quantize_language_model(model)
        if config.quantize_vision:
            torch.ao.quantization.quantize_dynamic(model.model.vision_tower, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            why += "; vision tower int8 too"
    elif config.quantize_vision:
        raise ConfigError(f"model.quantize_vision needs int8 on CPU; this machine runs {quantization} on {device.kind}.")
    model.eval()
    memory = model.get_memory_footprint() if hasattr(model, "get_memory_footprint") else 0
    seconds = time.perf_counter() - started
    # A local folder by its name only: logs are shipped and read elsewhere, server paths stay here.
    shown = Path(config.id).name if Path(config.id).is_absolute() else config.id
    log.info("Loaded %s on %s in %.1f s (%s, %.0f MB)", shown, device.kind, seconds, quantization, memory / 2**20)
    return LoadedModel(model, processor, device, quantization, why, memory, seconds)


def _bitsandbytes_config(quantization: str, device: DeviceChoice, dtype: torch.dtype) -> Any:
    """BitsAndBytesConfig for 4-bit anywhere and 8-bit on CUDA; None otherwise."""
    if quantization == "none" or (quantization == "8bit" and device.kind == "cpu"):
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=UNQUANTIZED_MODULES,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)


def quantize_language_model(model: Any) -> Any:
    """Quantize the language model's linear layers to int8 (weights), fp32 activations.

    In place, so that each fp32 layer is freed as its int8 one replaces it: the peak stays
    near the fp32 model's size. Quantizing the same fp32 weights gives the same int8 ones.
    """
    torch.ao.quantization.quantize_dynamic(model.model.language_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return model


def reload_language_model(config: ModelConfig) -> Any:
    """A fresh fp32 copy of the language model, read again from the model's files.

    For merging a LoRA adapter on an int8 model: the fp32 weights are gone after
    quantization, and keeping a copy would cost 4 bytes per parameter for as long as the
    engine runs (6 GB on InternVL3-2B) to save a reload at each adapter swap.
    """
    from transformers import AutoModelForImageTextToText

    try:
        model = AutoModelForImageTextToText.from_pretrained(config.id, revision=config.revision, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(_load_failure_message(config.id, exc)) from None
    return model.model.language_model


def _load_failure_message(model_id: str, exc: Exception) -> str:
    """One sentence naming the model and what to do; never the token, never a traceback."""
    name = type(exc).__name__
    text = str(exc)
    if "gated" in text.lower() or name in ("GatedRepoError",) or "401" in text:
        hint = "the model needs access rights: accept its licence on the hub and set HF_TOKEN (in the environment or a .env file)"
    elif name in ("RepositoryNotFoundError", "RevisionNotFoundError") or "404" in text:
        hint = "no such model or revision on the hub: check the id, or point SIGNLENS_MODEL at a local folder"
    elif name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectTimeout") or "offline" in text.lower() or "connect" in text.lower():
        hint = "the hub cannot be reached: go online once to download it, or set SIGNLENS_MODEL to a local folder with the model"
    elif isinstance(exc, (OSError, ValueError)):
        hint = "the files could not be read as an InternVL model: check the folder or id, or set SIGNLENS_MODEL to a local folder"
    else:
        hint = f"{name} while loading"
    return f"Could not load the model {model_id}: {hint}."

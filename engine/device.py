"""Where the model runs and in which precision: the only module that decides it.

`auto` tries the accelerators in the order a user expects (CUDA, then DirectML on
Windows AMD/Intel GPUs, then Apple MPS, then CPU) and says why it chose what it chose.
An explicitly requested device that is missing is an error rather than a silent CPU
fallback: a user who asked for the GPU wants to know it is not used.

Availability is read through `Accelerators`, so tests can inject any machine.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from engine.errors import DeviceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accelerators:
    """What this machine offers; built by `detect_accelerators()` or by a test."""

    # CUDA device present and usable by this torch build.
    cuda: bool
    # Compute capability major version (8 = Ampere: first with fast bf16); 0 without CUDA.
    cuda_major: int
    # `torch_directml` imports and reports at least one device.
    directml: bool
    # Apple Metal backend built and available.
    mps: bool


@dataclass(frozen=True)
class DeviceChoice:
    """The outcome: what to pass to torch, in which dtype, and why (for logs and the UI)."""

    # "cuda" | "directml" | "mps" | "cpu"
    kind: str
    # What `.to()` takes: "cuda:0", "cpu", "mps", or a torch_directml device object.
    torch_device: Any
    dtype: torch.dtype
    # One sentence a user can read in the status panel.
    reason: str


def detect_accelerators() -> Accelerators:
    cuda = torch.cuda.is_available()
    return Accelerators(
        cuda=cuda,
        cuda_major=torch.cuda.get_device_capability(0)[0] if cuda else 0,
        directml=_directml_available(),
        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
    )


def choose_device(
    requested: str = "auto",
    dtype: str = "auto",
    *,
    accelerators: Accelerators | None = None,
    cpu_bf16_faster: Callable[[], bool] | None = None,
) -> DeviceChoice:
    """Resolve the configured device and dtype against what this machine has."""
    acc = accelerators or detect_accelerators()
    available = {"cuda": acc.cuda, "directml": acc.directml, "mps": acc.mps, "cpu": True}
    if requested == "auto":
        kind = next(k for k in ("cuda", "directml", "mps", "cpu") if available[k])
        why = "auto: " + ", ".join(
            f"{k} {'found' if available[k] else 'not found'}" for k in ("cuda", "directml", "mps")
        )
    elif requested in available:
        if not available[requested]:
            raise DeviceError(_missing_message(requested))
        kind, why = requested, f"{requested} requested"
    else:
        raise DeviceError(f"Unknown device {requested!r}; choose auto, cuda, directml, mps or cpu.")

    chosen_dtype, dtype_why = _choose_dtype(kind, dtype, acc, cpu_bf16_faster or cpu_prefers_bf16)
    choice = DeviceChoice(kind, _torch_device(kind), chosen_dtype, f"{why}; {dtype_why}")
    log.info("Device: %s (%s)", kind, choice.reason)
    return choice


def _choose_dtype(kind: str, dtype: str, acc: Accelerators, cpu_bf16_faster: Callable[[], bool]) -> tuple[torch.dtype, str]:
    if dtype != "auto":
        chosen = getattr(torch, dtype)
        if kind == "cpu" and chosen is torch.float16:
            # fp16 matmuls on CPU are emulated and far slower than fp32 (whisper warns the same way).
            log.warning("float16 is not supported well on CPU; using float32 instead")
            return torch.float32, "float16 requested but slow on CPU: float32"
        return chosen, f"{dtype} requested"
    if kind == "cuda":
        if acc.cuda_major >= 8:
            return torch.bfloat16, "bfloat16 (GPU supports it natively)"
        return torch.float16, "float16 (GPU older than Ampere has no fast bfloat16)"
    if kind == "directml":
        return torch.float16, "float16 (DirectML has no bfloat16)"
    if kind == "mps":
        return torch.float16, "float16 (widest support on Apple GPUs)"
    if cpu_bf16_faster():
        return torch.bfloat16, "bfloat16 (measured faster than float32 on this CPU)"
    return torch.float32, "float32 (bfloat16 measured slower on this CPU)"


@functools.cache
def cpu_prefers_bf16() -> bool:
    """Time one prefill-sized linear layer in both dtypes; ~0.2 s, once per process.

    Whether bf16 pays on a CPU depends on the chip: with AVX512-BF16/AMX it runs about
    2x faster than fp32; without them (seen on an AMD EPYC here) bf16 linear layers ran
    2-9x slower. Measuring beats guessing from CPU flags. The shape is a prefill's
    (hundreds of tokens), where recognition spends its time.
    """
    x32 = torch.randn(256, 1536)
    w32 = torch.randn(1536, 1536)
    timings = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = x32.to(dtype), w32.to(dtype)
        torch.nn.functional.linear(x, w)  # warm-up: first call pays for kernel selection
        start = time.perf_counter()
        for _ in range(3):
            torch.nn.functional.linear(x, w)
        timings[dtype] = (time.perf_counter() - start) / 3
    log.info("CPU linear 256x1536x1536: fp32 %.1f ms, bf16 %.1f ms", timings[torch.float32] * 1e3, timings[torch.bfloat16] * 1e3)
    return timings[torch.bfloat16] < timings[torch.float32]


def _torch_device(kind: str) -> Any:
    if kind == "cuda":
        return "cuda:0"
    if kind == "directml":
        import torch_directml

        return torch_directml.device()
    return kind


def _directml_available() -> bool:
    try:
        import torch_directml
    except ImportError:
        return False
    try:
        return torch_directml.device_count() > 0
    except Exception:  # a broken driver install must not stop a CPU fallback
        return False


def _missing_message(kind: str) -> str:
    return {
        "cuda": "CUDA was requested but no NVIDIA GPU is usable by this PyTorch build; set device to auto or cpu.",
        "directml": "DirectML was requested but torch-directml is not installed or sees no GPU (see docs/windows-directml.md).",
        "mps": "MPS was requested but this machine has no Apple GPU available to PyTorch; set device to auto or cpu.",
    }[kind]

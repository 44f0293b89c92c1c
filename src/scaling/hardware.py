"""What the machine computes fast: bf16 where the hardware has it, fp32 elsewhere.

Training (``trainer.precision: auto``) and decoding (``decode.dtype: auto``) both ask here,
so one rule decides, and ``results.json`` records what it chose.

- **CUDA**: bf16 when the GPU supports it (Ampere and later), the usual ``bf16-mixed``.
- **CPU**: bf16 only where the CPU has bf16 dot-product instructions (x86 ``avx512_bf16`` or
  AMX). There oneDNN's bf16 matmul runs ~3.6x fp32 per CPU-second (BENCHMARKS.md, "Matmul
  rate"); without them bf16 is emulated and slower than fp32, so fp32 stays.
"""

from __future__ import annotations

import ctypes
import gc
import os

import torch

from scaling.cpu import cpu_flags, cpu_record

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags that mean native bf16 dot products."""


def cpu_bf16_flags() -> tuple[str, ...]:
    """The native-bf16 flags this CPU reports (empty off Linux/x86, where we do not guess)."""
    flags = cpu_flags()
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


def fast_bf16(device: torch.device | str) -> bool:
    """Does ``device`` run bf16 matmuls faster than fp32?"""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_flags())
    return False


def resolve_precision(precision: str | int, accelerator: str) -> str:
    """A Lightning ``precision`` for ``trainer.precision``; ``auto`` picks ``bf16-mixed`` (fp32
    master weights and optimizer, bf16 matmuls under autocast) where bf16 is fast, else
    ``32-true``."""
    precision = str(precision)
    if precision != "auto":
        return precision
    device = "cuda" if accelerator in ("gpu", "cuda") else "cpu"
    if accelerator == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16-mixed" if fast_bf16(device) else "32-true"


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64}


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """``decode.dtype``: ``auto`` is bf16 where :func:`fast_bf16`, else fp32."""
    if name == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype {name!r}: expected auto, float32, bfloat16 or float16") from None


def machine_bf16_record() -> dict:
    """What the precision rule saw (recorded in results.json ``machine``)."""
    return {"cpu": cpu_record(), "cpu_bf16_flags": list(cpu_bf16_flags()),
            "cuda_bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())}


def _glibc_malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library is another (musl, macOS)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_host_memory() -> float | None:
    """Hand memory freed by Python back to the operating system; returns the resident set
    size in MiB after it (None where /proc is not readable).

    Training frees its activations, gradients and optimizer state when it ends, but glibc keeps
    the freed pages in its arenas: a 135M job stayed at ~20 GB resident through evaluation,
    the size of its training peak, on a 24 GiB machine. ``malloc_trim(0)`` returns them (other
    C libraries: nothing to trim); CUDA's cache is emptied too."""
    gc.collect()  # Lightning's trainer and module hold each other: freed only by the collector
    trim = _glibc_malloc_trim()
    if trim is not None:
        trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return None

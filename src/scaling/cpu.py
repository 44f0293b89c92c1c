"""What CPU this is, read once from the operating system (no torch: the llama.cpp worker and
the deploy tools import it too).

Machines differ here and on a cluster: AMD EPYC (``avx512_bf16``, no AMX) and Intel Xeon
with AMX tiles both occur. Code that picks a kernel path by CPU (bf16 training, llama.cpp's
AMX buffers) asks here, and results record what it saw (:func:`cpu_record`).
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
"""The instruction-set flags that decide which kernels run (x86 and Arm); results name these."""

AMX_FLAG = "amx_tile"
"""Intel Advanced Matrix Extensions: the flag whose llama.cpp path crashes (see
:func:`scaling.deploy.llamacpp.use_extra_buffers`)."""


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) from ``/proc/cpuinfo``; ("", empty) where there is none."""
    if platform.system() != "Linux":
        return platform.processor() or platform.machine(), frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.machine(), frozenset()
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # x86 / Arm
            flags = frozenset(value.split())
        if model and flags:
            break
    return model or platform.machine(), flags


def cpu_model() -> str:
    """The CPU's model name (``Intel(R) Xeon(R) Processor``, ``AMD EPYC 9R14``...)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """Every flag the CPU reports (empty where the OS does not say)."""
    return _cpuinfo()[1]


def has_amx(flags: frozenset[str] | set[str] | None = None) -> bool:
    """Whether the CPU (or the given ``flags``) has AMX tiles."""
    return AMX_FLAG in (cpu_flags() if flags is None else flags)


def cpu_record() -> dict:
    """What results record about the CPU: model, core count and the kernel-relevant flags."""
    flags = cpu_flags()
    return {"model": cpu_model(), "machine": platform.machine(), "cores": os.cpu_count(),
            "isa": [f for f in ISA_FLAGS if f in flags]}

"""scaling.hardware.release_host_memory: memory freed after training goes back to the system."""

from __future__ import annotations

import gc

import pytest
import torch

from scaling.hardware import _glibc_malloc_trim, release_host_memory


@pytest.mark.skipif(_glibc_malloc_trim() is None, reason="needs glibc's malloc_trim")
def test_freed_tensors_leave_the_resident_set():
    # Tensors under glibc's mmap threshold come from its arenas and stay resident when freed,
    # as a training job's activations and optimizer state did through evaluation.
    start = release_host_memory()
    assert start is not None and start > 0
    small = [torch.ones(20_000) for _ in range(4_000)]   # 4,000 x 80 kB = 305 MiB
    pins = [torch.ones(8) for _ in range(4_000)]          # interleaved: the heap cannot just shrink
    held = release_host_memory()
    assert held - start > 250
    del small
    gc.collect()
    freed = release_host_memory()
    assert held - freed > 200, (start, held, freed)
    del pins

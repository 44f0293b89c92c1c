"""The optimiser's settings (``finetune.optim`` in ``conf/finetune/*.yaml``).

Its own module, without torch: the config tree's schema (:mod:`scaling.jobs.config`) is built
from it before Hydra composes. The optimiser itself is made in :mod:`scaling.finetune`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from scaling.typed_config import dataclass_from_config


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay (``conf/finetune/*.yaml: optim``)."""

    lr: float = 5e-5
    """Peak learning rate. Full fine-tuning of ~100M-param pretrained models: 1e-5..1e-4;
    LoRA adapters: ~1e-4..5e-4; from-scratch tiny models: ~1e-3..3e-3."""
    weight_decay: float = 0.0
    """Decoupled weight decay on matrices only (norms, biases and embeddings excluded)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's moment decay rates. 0.95 for the second moment (as in Llama and GPT-3 training),
    not PyTorch's 0.999: it follows a shifting gradient scale faster in a short fine-tune."""
    eps: float = 1e-8
    """AdamW's denominator floor (PyTorch's default)."""
    warmup_ratio: float = 0.05
    """Fraction of optimiser steps spent warming up linearly from 0."""
    min_lr_ratio: float = 0.1
    """Cosine decays to ``lr * min_lr_ratio`` at the last step."""
    fused: bool | None = None
    """torch's fused AdamW kernel (one pass over each parameter's state instead of a dozen
    elementwise ops); ``None``: fused where torch has it for the parameters' device (CPU and
    CUDA since torch 2.4) and no fp16 gradient scaler is in use. Same update up to rounding."""

    @classmethod
    def from_config(cls, cfg: Any) -> "OptimConfig":
        made = dataclass_from_config(cls, cfg, "finetune.optim")
        return replace(made, betas=tuple(made.betas))

"""LoRA adapters (``finetune=lora``): peft's low-rank adapters on a built model.

One function, used by the training job and by ``bench/train_step.py`` (the ``lora`` variant),
so the bench times exactly the adapters a run trains. peft is imported here only: full
fine-tuning never pays for it.
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn


def lora_wrap(model: nn.Module, lora: Mapping[str, Any] | None) -> nn.Module:
    """``model`` with LoRA adapters as ``finetune.lora`` sets them (``r``, ``alpha``,
    ``dropout``, ``target_modules``); only the adapters require grad afterwards."""
    from peft import LoraConfig, get_peft_model

    lora = dict(lora or {})
    config = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)

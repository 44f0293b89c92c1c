"""Model registry: hub / gguf / random / local sources, MiniModel-200M port, parameter counts."""

from scaling.models.registry import (
    CATEGORY_BOUNDS,
    ModelLoadError,
    ModelSpec,
    ParamCounts,
    build_model,
    build_tokenizer,
    category_for,
    count_parameters,
    gguf_tokenizer,
    train_bpe_tokenizer,
)

__all__ = [
    "CATEGORY_BOUNDS",
    "ModelLoadError",
    "ModelSpec",
    "ParamCounts",
    "build_model",
    "build_tokenizer",
    "category_for",
    "count_parameters",
    "gguf_tokenizer",
    "train_bpe_tokenizer",
]

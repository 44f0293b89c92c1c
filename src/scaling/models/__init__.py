"""Model registry: hub / gguf / random / local sources, MiniModel-200M port, parameter counts.

``resolved_revision(spec, model)`` is the hub commit a model was loaded from (``results.json``'s
``model.revision_resolved``)."""

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
    resolved_revision,
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
    "resolved_revision",
    "train_bpe_tokenizer",
]

"""Model registry: hub / gguf / random / local sources, MiniModel-200M port, parameter counts.

``resolved_revision(spec, model)`` is the hub commit a model was loaded from (``results.json``'s
``model.revision_resolved``)."""

from typing import TYPE_CHECKING

from scaling.models.errors import ModelLoadError
from scaling.models.spec import ModelSpec
from scaling.results import CATEGORY_BOUNDS, category_for

if TYPE_CHECKING:
    from scaling.models.registry import (
        ParamCounts,
        build_model,
        build_tokenizer,
        count_parameters,
        gguf_tokenizer,
        resolved_revision,
        train_bpe_tokenizer,
    )

# Imported on first use: the config tree's schema (scaling.jobs.config) reads ModelSpec, and
# --help / --cfg must not pay for torch.
_LAZY = ("ParamCounts", "build_model", "build_tokenizer", "count_parameters", "gguf_tokenizer", "resolved_revision",
         "train_bpe_tokenizer")


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from scaling.models import registry

    return getattr(registry, name)


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

"""Decoding: from prompts to answers, fast and scorer-consistent.

- :mod:`~scaling.decode.config`: ``DecodeConfig`` (``conf/decode/*.yaml``) and the caps
  derived from the data (run-wide ``max_new_tokens``, per-row prompt-bounded caps);
- :mod:`~scaling.decode.stopping`: when a row is done (EOS, the scorer's JSON extraction
  succeeds, a repeated block, its cap);
- :mod:`~scaling.decode.grammar`: schema-constrained decoding (xgrammar);
- :mod:`~scaling.decode.kv_cache`: the preallocated per-row KV cache;
- :mod:`~scaling.decode.engine`: the continuous-batching engine and the ``hf`` reference.
"""

from typing import TYPE_CHECKING

from scaling.decode.config import DecodeConfig, answer_prompt_ratio, derive_max_new_tokens, row_caps

if TYPE_CHECKING:
    from scaling.decode.engine import (Generation, GenerationStats, generate_batched, length_grouped_batches,
                                       prefill_chunks)
    from scaling.decode.grammar import SchemaGrammars, without_formats
    from scaling.decode.stopping import RowStop, TokenText, is_loop, json_complete, repeated_tail

# Imported on first use: the config tree's schema (scaling.jobs.config) reads DecodeConfig,
# and --help / --cfg must not pay for torch and transformers.
_LAZY = {
    "engine": ("Generation", "GenerationStats", "generate_batched", "length_grouped_batches", "prefill_chunks"),
    "grammar": ("SchemaGrammars", "without_formats"),
    "stopping": ("RowStop", "TokenText", "is_loop", "json_complete", "repeated_tail"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "DecodeConfig", "Generation", "GenerationStats", "RowStop", "SchemaGrammars", "TokenText", "answer_prompt_ratio",
    "derive_max_new_tokens", "generate_batched", "is_loop", "json_complete", "length_grouped_batches",
    "prefill_chunks", "repeated_tail", "row_caps", "without_formats",
]

"""Decoding settings (``conf/decode/*.yaml``) and the caps derived from the data."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from scaling.typed_config import dataclass_from_config

ENGINES = ("continuous", "hf")
MODES = ("greedy", "constrained")


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding settings (``conf/decode/*.yaml``)."""

    mode: str = "greedy"
    """``greedy`` or ``constrained`` (greedy under the record's JSON Schema via xgrammar)."""
    max_new_tokens: int | None = None
    """Cap on generated tokens; ``None`` derives it from the data: longest target (test and
    train) in tokens x ``margin_factor`` + ``margin_tokens``."""
    margin_factor: float = 1.25
    """Head-room over the longest target: a model may legitimately write a longer answer."""
    margin_tokens: int = 32
    """Tokens added to the cap after ``margin_factor``: room for a short answer's closing
    brackets and EOS, where 25% of a few tokens is none."""
    prompt_cap: bool = True
    """Also cap each row by its own prompt: an extraction answer copies values from its prompt,
    so its length is bounded by what the prompt holds. The cap is ``ceil(ratio x
    margin_factor x prompt tokens) + margin_tokens``, where ``ratio`` is the largest answer /
    prompt token ratio of the *training* records (0.79 for EdgeJSON v3 with the field-list
    prompt). A short prompt's runaway answer then ends at a few hundred tokens, not at the
    run's cap of ~2,850."""
    batch_size: int = 32
    """Rows decoded together. On a 2-core CPU one decode step of SmolLM2-135M per token is ~8x
    cheaper at 32 rows than at 1 (BENCHMARKS.md); GPUs gain more still."""
    max_batch_tokens: int = 196608
    """KV-cache positions reserved at most (rows x cache width): bounds the cache's memory
    (SmolLM2-135M: 23 KB per position in bf16, 46 KB in fp32, so ~4.5 GB in bf16). A long
    row widens the cache for every row, so fewer rows are admitted beside it."""
    stop_at_json_end: bool = True
    """Stop a sequence once the text holds the JSON value the score will extract (besides EOS)."""
    loop_min_tokens: int | None = 256
    """Stop a sequence whose tail is one block repeated: at least ``loop_min_tokens`` tokens,
    and at least ``loop_min_repeats`` copies, of a block of at most ``loop_max_period``
    tokens. Such a row would run to its cap and hold its batch; its output stays what it is
    (unclosed JSON scores as a syntax error, as at the cap). ``None`` disables."""
    loop_max_period: int = 768
    """Longest repeated block caught. Runaway answers repeat whole records (70-150 tokens);
    a 64-token limit missed them and they ran to the cap."""
    loop_min_repeats: int = 3
    """Copies of a long block that count as a loop. No EdgeJSON v3 answer (train or test)
    holds a block of >= 256 tokens repeated 3 times (tested on the real data)."""
    row_attention_waste: int | None = 512
    """On a CPU, a decode step attends row by row over each row's own cache columns instead of
    over the widest row's columns with a mask, when the rows' mean masked columns exceed this
    (see :mod:`scaling.decode.attention`: the loop's fixed cost is ~1.3 ms per row per step,
    a masked column ~2.5 us per row per step for SmolLM2-135M here). ``0``: always row by
    row; ``None``: never. GPUs always take the masked path."""
    prefill_tokens: int = 4096
    """Most padded prompt positions per prefill call: waiting prompts are prefilled in
    length-sorted chunks up to this size, then decode beside the running rows."""
    engine: str = "continuous"
    """``continuous``: a preallocated KV cache with a slot per row; a row that stops frees its
    slot at once and a waiting prompt takes it, so one long answer never holds idle rows,
    and no step copies the cache. ``hf``: fixed batches through ``model.generate`` (each
    batch runs until its longest row stops); kept as the reference the continuous engine is
    tested and benchmarked against."""
    dtype: str = "auto"
    """Weights and activations while decoding: ``auto`` (bf16 on GPUs and on CPUs with native
    bf16, ``avx512_bf16``/AMX; fp32 elsewhere: see :mod:`scaling.hardware`), ``float32`` or
    ``bfloat16``. Recorded in results.json; the model is cast back afterwards."""
    grammar_formats: bool = False
    """Constrained mode: enforce JSON Schema ``format`` (date-time, email, ...) in the grammar.
    Off, like format checking in the score: EdgeJSON v3's date-times have no timezone."""
    grammar_strict: bool = False
    """Constrained mode: allow only the properties a schema declares, also in nested objects
    that do not say ``additionalProperties: false`` (where JSON Schema allows any extra key
    with any value). No EdgeJSON v3 record has an undeclared key; a loose grammar lets a model
    nest a sibling object inside the wrong parent as an "extra" property, where the schema
    no longer constrains it."""
    grounded: bool = False
    """Also keep every string value and number of the answer inside the prompt: the characters
    of a string value (not a key) or a number must be a substring of the prompt as it reads in
    JSON (:mod:`scaling.decode.grounded`), on top of the grammar in constrained mode. Every
    medium and complex leaf of EdgeJSON v3 test is such a substring (4 of 239 simple strings
    are not). Off: the headline, comparable with the published study, is the strict grammar
    alone. ``continuous`` engine only."""
    compact_separators: bool = True
    """Constrained mode: allow no whitespace between JSON tokens (matches compact targets)."""
    progress: bool = True
    """Show a progress bar while generating."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"decode.mode={self.mode!r}: expected greedy or constrained")
        if self.engine not in ENGINES:
            raise ValueError(f"decode.engine={self.engine!r}: expected continuous or hf")
        if self.batch_size < 1:
            raise ValueError(f"decode.batch_size={self.batch_size}: must be >= 1")
        if self.loop_min_repeats < 2:
            raise ValueError(f"decode.loop_min_repeats={self.loop_min_repeats}: must be >= 2")
        if self.dtype not in ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "float64"):
            raise ValueError(f"decode.dtype={self.dtype!r}: expected auto, float32 or bfloat16")

    @classmethod
    def from_config(cls, cfg: Any) -> "DecodeConfig":
        return dataclass_from_config(cls, cfg, "decode")


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def derive_max_new_tokens(tokenizer, targets: Sequence[str], cfg: DecodeConfig) -> int:
    """``cfg.max_new_tokens`` or the longest target in tokens x margin_factor + margin_tokens."""
    if cfg.max_new_tokens is not None:
        return int(cfg.max_new_tokens)
    longest = max((_n_tokens(tokenizer, t) for t in targets), default=64)
    return int(math.ceil(longest * cfg.margin_factor)) + cfg.margin_tokens + 1  # +1: EOS


def answer_prompt_ratio(tokenizer, prompts: Sequence[str], targets: Sequence[str]) -> float | None:
    """Largest answer / prompt token ratio over (training) examples; None without examples."""
    ratios = [_n_tokens(tokenizer, t) / max(1, _n_tokens(tokenizer, p)) for p, t in zip(prompts, targets)]
    return max(ratios) if ratios else None


def row_caps(prompt_lengths: Sequence[int], max_new_tokens: int, ratio: float | None, cfg: DecodeConfig) -> list[int]:
    """Each row's cap: the run's ``max_new_tokens``, and with ``prompt_cap`` (and a measured
    ``ratio``) also ``ceil(ratio x margin_factor x prompt tokens) + margin_tokens + 1``."""
    if not cfg.prompt_cap or ratio is None:
        return [max_new_tokens] * len(prompt_lengths)
    return [min(max_new_tokens, int(math.ceil(ratio * cfg.margin_factor * n)) + cfg.margin_tokens + 1)
            for n in prompt_lengths]

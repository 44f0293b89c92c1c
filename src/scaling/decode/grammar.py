"""Schema-constrained decoding: xgrammar grammars from JSON Schemas, compiled once per schema.

The grammar is never stricter than the score: JSON Schema ``format`` keywords are left out
unless asked for (:func:`without_formats`), as the score checks formats only when asked.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import torch

# xgrammar 0.2 writes the characters of a length-bounded string (minLength/maxLength) as
# [^"\\\r\n], which admits raw control characters; JSON forbids them (json.loads rejects the
# answer). Its unbounded strings already exclude \0-\x1f: give bounded ones the same class.
_LOOSE_STRING_CHAR = r'[^\"\\\r\n]'
_STRICT_STRING_CHAR = r'[^\0-\x1f\"\\\r\n]'


def _strict_json_strings(xgr, grammar):
    text = str(grammar)
    if _LOOSE_STRING_CHAR not in text:
        return grammar
    return xgr.Grammar.from_ebnf(text.replace(_LOOSE_STRING_CHAR, _STRICT_STRING_CHAR))


def without_formats(schema: Any) -> Any:
    """``schema`` without its string ``format`` keywords (date-time, email, uuid, ...).

    Scoring checks formats only when asked (``scaling.metrics``, off by default), and the
    grammar must not be stricter than the score: EdgeJSON v3's expected date-times carry no
    timezone, which RFC 3339 requires, so a ``date-time`` grammar forbids closing the string
    where the reference answer closes it, and a model that learned the data writes digits
    until it loops (measured: 56 of 158 fine-tuned answers).
    """
    if isinstance(schema, dict):
        # A property *named* "format" maps to a schema (a dict), so only the keyword goes.
        return {k: without_formats(v) for k, v in schema.items() if not (k == "format" and isinstance(v, str))}
    if isinstance(schema, list):
        return [without_formats(v) for v in schema]
    return schema


class SchemaGrammars:
    """xgrammar grammars for JSON Schemas, compiled once per schema per run."""

    def __init__(self, tokenizer, vocab_size: int, compact: bool = True, formats: bool = False,
                 strict: bool = False) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=[tokenizer.eos_token_id]
        )
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2)
        self.compact = compact
        self.formats = formats
        self.strict = strict
        self.compiled: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.compile_s = 0.0

    def get(self, schema_id: str, schema: dict):
        """The compiled grammar, or None when this schema cannot be compiled (recorded)."""
        if schema_id in self.compiled:
            return self.compiled[schema_id]
        if schema_id in self.failed:
            return None
        t0 = time.perf_counter()
        try:
            grammar = self.xgr.Grammar.from_json_schema(
                json.dumps(schema if self.formats else without_formats(schema)),
                any_whitespace=not self.compact,
                separators=(",", ":") if self.compact else None,
                strict_mode=self.strict,  # loose: extra keys wherever the schema allows them
            )
            grammar = self.compiler.compile_grammar(_strict_json_strings(self.xgr, grammar))
        except Exception as exc:  # xgrammar raises several types for unsupported schemas
            self.failed[schema_id] = f"{type(exc).__name__}: {exc}"
            grammar = None
        self.compile_s += time.perf_counter() - t0
        self.compiled[schema_id] = grammar
        return grammar


class GrammarLogitsProcessor:
    """Masks logits to tokens the row's grammar allows (rows without grammar are free).

    For the ``hf`` engine (``model.generate``). Unlike xgrammar's contrib processor it
    tolerates rows that the stopping criterion (``stopper.done``) has already finished:
    their pad tokens are not fed to the matcher.
    """

    def __init__(self, grammars: Sequence[Any], stopper) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
        self.stopper = stopper
        self.bitmask = None
        self.first = True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        xgr = self.xgr
        if self.bitmask is None:
            self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), scores.shape[-1])
        last = input_ids[:, -1].tolist()
        constrained = []
        for row, matcher in enumerate(self.matchers):
            if matcher is None or matcher.is_terminated():
                continue
            if not self.first and not bool(self.stopper.done[row]):
                matcher.accept_token(last[row])
            if matcher.is_terminated():
                continue
            matcher.fill_next_token_bitmask(self.bitmask, row)
            constrained.append(row)
        self.first = False
        if constrained:
            idx = torch.tensor(constrained, dtype=torch.long)
            sub = scores[idx].float().cpu()
            xgr.apply_token_bitmask_inplace(sub, self.bitmask[idx])
            scores[idx] = sub.to(scores.device, scores.dtype)
        return scores



def mask_to_grammars(scores: torch.Tensor, matchers: Sequence[Any], bitmask: torch.Tensor) -> torch.Tensor:
    """Mask ``scores`` (rows x vocab, float32) in place to the tokens each row's matcher
    allows; rows whose matcher is None or terminated are left free. ``bitmask`` is a CPU
    tensor with at least ``len(matchers)`` rows (``xgrammar.allocate_token_bitmask``); it goes
    to the scores' device in one copy per step, not one per row."""
    import xgrammar as xgr

    rows = [k for k, m in enumerate(matchers) if m is not None and not m.is_terminated()]
    if rows:
        for k in rows:
            matchers[k].fill_next_token_bitmask(bitmask, k)
        xgr.apply_token_bitmask_inplace(scores, bitmask[: len(matchers)].to(scores.device, non_blocking=True),
                                        indices=rows)
    return scores

"""Evaluation harness: batched greedy generation over a split, then scoring.

What it does differently from the published study's harness (one example at a time,
``generate(max_new_tokens=512)``, no stop before the cap):

- batches of prompts grouped by length, left-padded, greedy with the KV cache;
- each sequence stops at EOS *or as soon as its first JSON value has closed*
  (:class:`JsonCloseStopper`), so a model that never learned EOS does not burn the cap;
- ``max_new_tokens`` comes from the data (longest target in tokens plus a margin) because
  complex targets exceed 2,000 tokens; a fixed 512 truncates them;
- optional schema-constrained decoding (xgrammar), each schema compiled once per run;
- wall time, generated tokens, tokens/s and latency are measured, never estimated.

``python -m scaling.evaluate model=... data=...`` evaluates a model without training and
writes ``predictions.jsonl``, ``metrics.json`` and ``results.json`` (see ``scaling.results``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from scaling.configs import dataclass_from_config
from scaling.data.prompts import PromptFormat, format_prompt, format_target
from scaling.score import score_predictions


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
    batch_size: int = 32
    """Sequences decoded together (rows of the running batch)."""
    max_batch_tokens: int = 98304
    """Upper bound on rows x (prompt + max_new_tokens): keeps the KV cache of long
    complex-tier rows in memory by admitting fewer of them."""
    stop_at_json_end: bool = True
    """Stop a sequence once its first JSON value closes (besides EOS)."""
    loop_min_tokens: int | None = 256
    """Stop a sequence whose last ``loop_min_tokens`` generated tokens are one block of at most
    ``loop_max_period`` tokens repeated (at least 4 times): a degenerate loop that would run to
    ``max_new_tokens`` and hold its whole batch. Its output stays what it is (unclosed JSON
    scores as a syntax error, as it would at the cap); ``None`` disables."""
    loop_max_period: int = 64
    prefill_tokens: int = 4096
    """Most padded prompt positions per prefill call (``continuous`` engine): waiting prompts
    are prefilled in length-sorted chunks up to this size, then merged into the running batch."""
    engine: str = "continuous"
    """``continuous``: a sequence that stops leaves the batch at once and a waiting prompt takes
    its place (the KV cache is shrunk and merged), so one long answer never holds idle rows.
    ``hf``: fixed batches through ``model.generate`` (each batch runs until its longest row
    stops); kept as the reference the continuous engine is tested and benchmarked against."""
    grammar_formats: bool = False
    """Constrained mode: enforce JSON Schema ``format`` (date-time, email, ...) in the grammar.
    Off, like format checking in the score: EdgeJSON v3's date-times have no timezone."""
    grammar_strict: bool = False
    """Constrained mode: allow only the properties a schema declares, also in nested objects
    that do not say ``additionalProperties: false`` (where JSON Schema allows any extra key
    with any value). No EdgeJSON v3 record has an undeclared key; a loose grammar lets a model
    nest a sibling object inside the wrong parent as an "extra" property, where the schema
    no longer constrains it."""
    compact_separators: bool = True
    """Constrained mode: allow no whitespace between JSON tokens (matches compact targets)."""
    progress: bool = True
    """Show a progress bar while generating."""

    def __post_init__(self) -> None:
        if self.mode not in ("greedy", "constrained"):
            raise ValueError(f"decode.mode={self.mode!r}: expected greedy or constrained")
        if self.engine not in ("continuous", "hf"):
            raise ValueError(f"decode.engine={self.engine!r}: expected continuous or hf")
        if self.batch_size < 1:
            raise ValueError(f"decode.batch_size={self.batch_size}: must be >= 1")

    @classmethod
    def from_config(cls, cfg: Any) -> "DecodeConfig":
        return dataclass_from_config(cls, cfg, "decode")


# --------------------------------------------------------------------------------------
# stopping at the end of the first JSON value
# --------------------------------------------------------------------------------------


class JsonCloseTracker:
    """Incremental scanner: has the first JSON object/array in a text stream closed?

    Feeds on text pieces; tracks nesting depth outside strings, string state and escapes.
    Only the characters ``{ } [ ] " \\`` matter, so it is exact for any tokenizer.
    """

    __slots__ = ("depth", "in_string", "escape", "started", "closed")

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.started = False
        self.closed = False

    def feed(self, piece: str) -> bool:
        """Consume ``piece``; return True once the first JSON value has closed."""
        if self.closed:
            return True
        for ch in piece:
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.in_string = False
            elif ch in "{[":
                self.started = True
                self.depth += 1
            elif not self.started:
                continue
            elif ch == '"':
                self.in_string = True
            elif ch in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.closed = True
                    return True
        return False


class TokenText:
    """Decoded text of single token ids, cached (decode is the slow part of tracking)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        text = self.cache.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=True)
            self.cache[token_id] = text
        return text


class RowStop:
    """When one generated sequence is done: at EOS, once its first JSON value has closed
    (``stop_at_json_end``), or once its last ``loop_min_tokens`` tokens are one short block
    repeated (a degenerate loop, recorded as ``looped``)."""

    __slots__ = ("token_text", "eos_ids", "stop_at_json_end", "loop_min_tokens", "loop_max_period",
                 "tracker", "ids", "done", "hit_eos", "looped")

    def __init__(self, token_text: TokenText, eos_ids: set[int], stop_at_json_end: bool = True,
                 loop_min_tokens: int | None = None, loop_max_period: int = 64) -> None:
        self.token_text = token_text
        self.eos_ids = eos_ids
        self.stop_at_json_end = stop_at_json_end
        self.loop_min_tokens = loop_min_tokens
        self.loop_max_period = loop_max_period
        self.tracker = JsonCloseTracker()
        self.ids: list[int] = []
        self.done = self.hit_eos = self.looped = False

    @property
    def n_generated(self) -> int:
        return len(self.ids)

    def push(self, tok: int) -> bool:
        """Record one generated token; return True when the sequence is done."""
        if self.done:
            return True
        self.ids.append(tok)
        if tok in self.eos_ids:
            self.hit_eos = self.done = True
        elif self.stop_at_json_end and self.tracker.feed(self.token_text(tok)):
            self.done = True
        elif self.loop_min_tokens:
            n = len(self.ids)
            # Checked every 16 tokens: the cost stays negligible beside a forward pass.
            if n >= self.loop_min_tokens and n % 16 == 0 and is_loop(self.ids[-self.loop_min_tokens:],
                                                                      self.loop_max_period):
                self.looped = self.done = True
        return self.done


class JsonCloseStopper:
    """A transformers StoppingCriteria over a fixed batch: one :class:`RowStop` per row."""

    def __init__(self, token_text: TokenText, batch_size: int, prompt_len: int, eos_ids: set[int],
                 stop_at_json_end: bool = True, loop_min_tokens: int | None = None,
                 loop_max_period: int = 64) -> None:
        self.rows = [RowStop(token_text, eos_ids, stop_at_json_end, loop_min_tokens, loop_max_period)
                     for _ in range(batch_size)]
        self.prompt_len = prompt_len
        self.done = torch.zeros(batch_size, dtype=torch.bool)

    @property
    def n_generated(self) -> list[int]:
        return [r.n_generated for r in self.rows]

    @property
    def hit_eos(self) -> list[bool]:
        return [r.hit_eos for r in self.rows]

    @property
    def looped(self) -> list[bool]:
        return [r.looped for r in self.rows]

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        for row, tok in enumerate(input_ids[:, -1].tolist()):
            if not self.done[row] and self.rows[row].push(tok):
                self.done[row] = True
        return self.done.clone().to(input_ids.device)


def is_loop(tokens: Sequence[int], max_period: int) -> bool:
    """True when ``tokens`` is one block of at most ``max_period`` tokens repeated >= 4 times."""
    n = len(tokens)
    for period in range(1, min(max_period, n // 4) + 1):
        if all(tokens[i] == tokens[i - period] for i in range(period, n)):
            return True
    return False


# --------------------------------------------------------------------------------------
# schema-constrained decoding
# --------------------------------------------------------------------------------------


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

    Unlike xgrammar's contrib processor it tolerates rows that the stopping criterion has
    already finished (their pad tokens are not fed to the matcher).
    """

    def __init__(self, grammars: Sequence[Any], stopper: JsonCloseStopper) -> None:
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


# --------------------------------------------------------------------------------------
# batched generation
# --------------------------------------------------------------------------------------


@dataclass
class Generation:
    """One generated answer."""

    text: str
    n_tokens: int
    hit_eos: bool
    latency_s: float
    """Seconds from the prompt's prefill to its last token (``hf`` engine: its batch's time)."""
    looped: bool = False


@dataclass
class GenerationStats:
    wall_s: float = 0.0
    generated_tokens: int = 0
    n: int = 0
    batches: int = 0
    """Prefill calls (``hf`` engine: generate() calls)."""
    steps: int = 0
    """Decode forward passes (``continuous`` engine)."""
    row_steps: int = 0
    """Sum over decode steps of the rows in the batch: ``row_steps / steps`` is the mean batch."""
    prefill_tokens: int = 0
    """Prompt tokens run through prefill (``continuous`` engine)."""
    prefill_s: float = 0.0
    """Seconds in prefill forward passes (``continuous`` engine); the rest of ``wall_s`` is decoding."""
    max_new_tokens: int = 0
    grammar_compile_s: float = 0.0
    grammar_failures: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "wall_s": round(self.wall_s, 3),
            "generated_tokens": self.generated_tokens,
            "tokens_per_s": round(self.generated_tokens / self.wall_s, 2) if self.wall_s > 0 else None,
            "latency_s_per_example": round(self.wall_s / self.n, 4) if self.n else None,
            "n": self.n,
            "batches": self.batches,
            "steps": self.steps,
            "mean_batch_rows": round(self.row_steps / self.steps, 2) if self.steps else None,
            "prefill_tokens": self.prefill_tokens,
            "prefill_s": round(self.prefill_s, 3),
            "max_new_tokens": self.max_new_tokens,
            "grammar_compile_s": round(self.grammar_compile_s, 3),
            "grammar_failures": self.grammar_failures,
        }


def length_grouped_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int,
                           new_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length (longest first).

    Longest first so an out-of-memory shows at once, not after an hour.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = (lengths[current[0]] if current else lengths[i]) + new_tokens
        if current and (len(current) >= batch_size or (len(current) + 1) * width > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def derive_max_new_tokens(tokenizer, targets: Sequence[str], cfg: DecodeConfig) -> int:
    """``cfg.max_new_tokens`` or the longest target in tokens x margin_factor + margin_tokens."""
    if cfg.max_new_tokens is not None:
        return int(cfg.max_new_tokens)
    longest = max((len(tokenizer(t, add_special_tokens=False).input_ids) for t in targets), default=64)
    return int(math.ceil(longest * cfg.margin_factor)) + cfg.margin_tokens + 1  # +1: EOS


@torch.inference_mode()
def generate_batched(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, cfg: DecodeConfig,
                     grammars: Sequence[Any] | None = None, desc: str = "generate") -> tuple[list[Generation], GenerationStats]:
    """Greedy-decode every prompt; returns generations in input order and measured stats.

    ``cfg.engine`` picks continuous batching (default) or fixed ``model.generate`` batches;
    both give the same greedy tokens (tested), they differ in how long rows wait.
    """
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    encoded = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    stats = GenerationStats(n=len(prompts), max_new_tokens=max_new_tokens)
    bar = tqdm(total=len(prompts), desc=desc, disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True)
    t_start = time.perf_counter()
    results: list[Generation | None] = [None] * len(prompts)

    def finish(i: int, row: RowStop, latency_s: float) -> None:
        n = row.n_generated
        results[i] = Generation(text=tokenizer.decode(row.ids, skip_special_tokens=True), n_tokens=n,
                                hit_eos=row.hit_eos, latency_s=latency_s, looped=row.looped)
        stats.generated_tokens += n
        bar.update(1)
        show_rate()

    def show_rate(in_flight: int = 0) -> None:
        """Tokens/s so far, counting rows still generating (a long answer shows progress too)."""
        bar.set_postfix(tok_s=f"{(stats.generated_tokens + in_flight) / (time.perf_counter() - t_start):.0f}")

    engine = cfg.engine if cfg.engine == "hf" or _cache_is_mergeable(model) else "hf"
    try:
        run = _generate_continuous if engine == "continuous" else _generate_fixed_batches
        run(model, tokenizer, encoded, max_new_tokens, cfg, grammars, stats, finish, show_rate)
    finally:
        bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    stats.wall_s = time.perf_counter() - t_start
    return [r for r in results if r is not None], stats


def _new_row(tokenizer, token_text: TokenText, cfg: DecodeConfig) -> RowStop:
    return RowStop(token_text, {tokenizer.eos_token_id}, cfg.stop_at_json_end, cfg.loop_min_tokens,
                   cfg.loop_max_period)


def _generate_fixed_batches(model, tokenizer, encoded, max_new_tokens, cfg, grammars, stats, finish,
                            show_rate=None) -> None:
    """``engine=hf``: length-grouped fixed batches through ``model.generate``."""
    device = next(model.parameters()).device
    batches = length_grouped_batches([len(e) for e in encoded], cfg.batch_size, cfg.max_batch_tokens, max_new_tokens)
    token_text = TokenText(tokenizer)
    pad = tokenizer.pad_token_id
    for batch in batches:
        t0 = time.perf_counter()
        width = max(len(encoded[i]) for i in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids = encoded[i]
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention[row, width - len(ids):] = 1
        stopper = JsonCloseStopper(token_text, len(batch), width, {tokenizer.eos_token_id}, cfg.stop_at_json_end,
                                   cfg.loop_min_tokens, cfg.loop_max_period)
        processors = []
        if grammars is not None:
            processors.append(GrammarLogitsProcessor([grammars[i] for i in batch], stopper))
        model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, use_cache=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
            stopping_criteria=[stopper], logits_processor=processors or None,
            temperature=None, top_p=None, top_k=None,
        )
        elapsed = time.perf_counter() - t0
        stats.batches += 1
        for row, i in enumerate(batch):
            r = stopper.rows[row]
            del r.ids[max_new_tokens:]
            finish(i, r, elapsed)


# --------------------------------------------------------------------------------------
# continuous batching
# --------------------------------------------------------------------------------------


def _cache_layers(cache) -> list | None:
    layers = getattr(cache, "layers", None)
    if not layers or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        return None
    return layers


def _cache_is_mergeable(model) -> bool:
    """The continuous engine edits the KV cache's per-layer ``keys`` / ``values`` tensors
    ([batch, heads, time, dim]); models with another cache layout (sliding windows,
    recurrent state) fall back to ``engine=hf``."""
    cfg = getattr(model, "config", None)
    return not (getattr(cfg, "sliding_window", None) or getattr(cfg, "layer_types", None) and
                any(t != "full_attention" for t in cfg.layer_types))


def _prefill(model, prompts: list[list[int]], pad: int, device):
    """Forward left-padded prompts; returns (cache, attention mask, last-position logits)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        mask[row, width - len(ids):] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    # logits_to_keep=1: only the last position's logits (all of them would be rows x width x vocab).
    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                use_cache=True, logits_to_keep=1)
    # transformers 5 names the output field `cache` (`past_key_values` is a deprecated alias).
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    return cache, mask.to(device), out.logits[:, -1, :]


def _left_pad_time(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    extra = width - t.shape[dim]
    if extra == 0:
        return t
    shape = list(t.shape)
    shape[dim] = extra
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _merge_into(cache, mask: torch.Tensor, new_cache, new_mask: torch.Tensor) -> torch.Tensor:
    """Append ``new_cache``'s rows to ``cache`` in place (left-padding the shorter in time);
    returns the merged attention mask."""
    width = max(mask.shape[1], new_mask.shape[1])
    for layer, new in zip(_cache_layers(cache), _cache_layers(new_cache)):
        layer.keys = torch.cat([_left_pad_time(layer.keys, width, 2), _left_pad_time(new.keys, width, 2)])
        layer.values = torch.cat([_left_pad_time(layer.values, width, 2), _left_pad_time(new.values, width, 2)])
    return torch.cat([_left_pad_time(mask, width, 1), _left_pad_time(new_mask, width, 1)])


def _select_rows(cache, mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep rows ``keep`` of the cache and mask; drop time columns that are padding in every
    remaining row (a long prompt that has left should not widen attention for the rest)."""
    mask = mask[keep]
    used = mask.any(0).nonzero()
    first = int(used[0]) if len(used) else 0
    mask = mask[:, first:]
    for layer in _cache_layers(cache):
        layer.keys = layer.keys[keep, :, first:]
        layer.values = layer.values[keep, :, first:]
    return mask


def prefill_chunks(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Split prompts (given longest first) into prefill calls of at most ``max_tokens`` padded
    positions each: one call over prompts of very different lengths would pad every short
    prompt to the longest and compute that padding (a complex-tier prompt is ~10x a simple one)."""
    chunks: list[list[int]] = []
    for k, n in enumerate(lengths):
        if chunks:
            width = max(lengths[j] for j in chunks[-1])
            if (len(chunks[-1]) + 1) * max(width, n) <= max_tokens:
                chunks[-1].append(k)
                continue
        chunks.append([k])
    return chunks


class _Active:
    """One sequence being decoded: its input index, stop state, grammar matcher, clock."""

    __slots__ = ("index", "stop", "matcher", "position", "t0")

    def __init__(self, index: int, stop: RowStop, matcher, position: int, t0: float) -> None:
        self.index, self.stop, self.matcher, self.position, self.t0 = index, stop, matcher, position, t0


def _generate_continuous(model, tokenizer, encoded, max_new_tokens, cfg, grammars, stats, finish,
                         show_rate=None) -> None:
    """Greedy decoding with continuous batching.

    Prompts wait in a queue, longest first (an out-of-memory shows at once). Up to
    ``cfg.batch_size`` rows decode together, within ``cfg.max_batch_tokens`` of prompt +
    ``max_new_tokens``; a row that stops leaves at once (its KV rows are dropped) and the next
    prompts are prefilled and merged into the running cache. Positions are per row, so a
    row's logits do not depend on its neighbours or its padding.
    """
    from collections import deque

    import inspect

    device = next(model.parameters()).device
    # transformers 5 renames the forward argument past_key_values -> cache (deprecated alias).
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    token_text = TokenText(tokenizer)
    pad = tokenizer.pad_token_id
    queue = deque(sorted(range(len(encoded)), key=lambda i: -len(encoded[i])))
    xgr = None
    if grammars is not None:
        import xgrammar as xgr
    active: list[_Active] = []
    cache = mask = logits = None
    bitmask = None
    while queue or active:
        # Admit waiting prompts into free rows.
        admit: list[int] = []
        budget = sum(len(encoded[a.index]) + max_new_tokens for a in active)
        while queue and len(active) + len(admit) < cfg.batch_size:
            need = len(encoded[queue[0]]) + max_new_tokens
            if (active or admit) and budget + need > cfg.max_batch_tokens:
                break
            admit.append(queue.popleft())
            budget += need
        for chunk in prefill_chunks([len(encoded[i]) for i in admit], cfg.prefill_tokens):
            t0 = time.perf_counter()
            chunk_ids = [admit[k] for k in chunk]
            new_cache, new_mask, new_logits = _prefill(model, [encoded[i] for i in chunk_ids], pad, device)
            stats.batches += 1
            stats.prefill_tokens += sum(len(encoded[i]) for i in chunk_ids)
            stats.prefill_s += time.perf_counter() - t0
            if active:
                mask = _merge_into(cache, mask, new_cache, new_mask)
                logits = torch.cat([logits, new_logits])
            else:
                cache, mask, logits = new_cache, new_mask, new_logits
            for i in chunk_ids:
                grammar = grammars[i] if grammars is not None else None
                matcher = xgr.GrammarMatcher(grammar) if grammar is not None else None
                active.append(_Active(i, _new_row(tokenizer, token_text, cfg), matcher, len(encoded[i]), t0))

        # Choose each row's next token (under its grammar, if any).
        scores = logits.float()
        if xgr is not None:
            rows = [k for k, a in enumerate(active) if a.matcher is not None and not a.matcher.is_terminated()]
            if rows:
                if bitmask is None or bitmask.shape[0] < len(active):
                    bitmask = xgr.allocate_token_bitmask(max(cfg.batch_size, len(active)), scores.shape[-1])
                for k in rows:
                    active[k].matcher.fill_next_token_bitmask(bitmask, k)
                idx = torch.tensor(rows, dtype=torch.long)
                sub = scores[idx].cpu()
                xgr.apply_token_bitmask_inplace(sub, bitmask[idx])
                scores[idx] = sub.to(scores.device)
        tokens = scores.argmax(-1).tolist()
        keep = []
        for k, (a, tok) in enumerate(zip(active, tokens)):
            if a.matcher is not None and not a.matcher.is_terminated():
                a.matcher.accept_token(tok)
            if a.stop.push(tok) or a.stop.n_generated >= max_new_tokens:
                finish(a.index, a.stop, time.perf_counter() - a.t0)
            else:
                keep.append(k)
        if not keep:
            active, cache, mask, logits = [], None, None, None
            continue
        if len(keep) < len(active):
            keep_t = torch.tensor(keep, dtype=torch.long, device=device)
            mask = _select_rows(cache, mask, keep_t)
            active = [active[k] for k in keep]
            tokens = [tokens[k] for k in keep]

        # One decode step for every remaining row.
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        position_ids = torch.tensor([[a.position] for a in active], dtype=torch.long, device=device)
        out = model(input_ids=torch.tensor(tokens, dtype=torch.long, device=device)[:, None], attention_mask=mask,
                    position_ids=position_ids, use_cache=True, **{cache_kw: cache})
        logits = out.logits[:, -1, :]
        for a in active:
            a.position += 1
        stats.steps += 1
        stats.row_steps += len(active)
        if show_rate is not None and stats.steps % 32 == 0:
            show_rate(sum(a.stop.n_generated for a in active))


# --------------------------------------------------------------------------------------
# evaluation of one split
# --------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    rows: list[dict]
    metrics: dict
    stats: dict


def evaluate_records(model, tokenizer, records, schemas, fmt: PromptFormat, cfg: DecodeConfig,
                     max_new_tokens: int | None = None, desc: str = "eval") -> EvalResult:
    """Generate an answer for every record and score it (see ``scaling.metrics``)."""
    prompts = [format_prompt(r.prompt, schemas[r.schema_id].schema, fmt, tokenizer) for r in records]
    if max_new_tokens is None:
        max_new_tokens = derive_max_new_tokens(tokenizer, [format_target(r.expected_output, fmt) for r in records], cfg)
    grammars = None
    compile_s = 0.0
    failures: dict = {}
    if cfg.mode == "constrained":
        vocab = model.get_output_embeddings().weight.shape[0]
        sg = SchemaGrammars(tokenizer, vocab_size=vocab, compact=cfg.compact_separators and fmt.compact_json,
                            formats=cfg.grammar_formats, strict=cfg.grammar_strict)
        grammars = [sg.get(r.schema_id, schemas[r.schema_id].schema) for r in records]
        compile_s, failures = sg.compile_s, dict(sg.failed)
    generations, stats = generate_batched(model, tokenizer, prompts, max_new_tokens, cfg, grammars, desc=desc)
    stats.grammar_compile_s, stats.grammar_failures = compile_s, failures
    predictions = [{"id": r.id, "output": g.text} for r, g in zip(records, generations)]
    rows, metrics = score_predictions(predictions, records, schemas)
    for row, g in zip(rows, generations):
        row["n_tokens"] = g.n_tokens
        row["hit_eos"] = g.hit_eos
        row["looped"] = g.looped
        row["truncated"] = (not g.hit_eos) and row.get("status") != "ok" and g.n_tokens >= max_new_tokens
    return EvalResult(rows=rows, metrics=metrics, stats=stats.as_dict())


def main() -> None:
    """``python -m scaling.evaluate``: the job entry point with ``finetune=none``
    (conf/evaluate.yaml), so a base-model evaluation writes the same results.json."""
    from scaling.jobs.sweep import hydra_entry  # here: scaling.jobs imports this module

    hydra_entry("evaluate")


if __name__ == "__main__":
    main()

"""Greedy decoding of many prompts: the continuous engine and the ``hf`` reference.

``continuous`` (the default) keeps up to ``decode.batch_size`` rows decoding together in a
preallocated KV cache (:class:`~scaling.decode.kv_cache.SlotKVCache`). Prompts wait longest
first (an out-of-memory shows at once, and the long complex-tier answers, which set the wall
time, start first); a row that stops frees its slot at once and waiting prompts are prefilled
in length-sorted chunks into the free slots. Each step is one forward of one token per row:
no cache copy, attention over each row's own columns (a 4D mask), per-row positions, so a
row's tokens do not depend on its neighbours. The only device-to-host transfer per step is the
chosen tokens.

``hf`` runs length-grouped fixed batches through ``model.generate``; every batch waits for
its longest row. It is the reference the continuous engine is tested against (same tokens).
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from scaling.data.sft import bos_prefix, prompt_ids
from scaling.decode.attention import SLOT_ATTENTION, set_row_ranges
from scaling.decode.config import DecodeConfig
from scaling.decode.grammar import GrammarLogitsProcessor, mask_to_grammars
from scaling.decode.grounded import mask_to_prompts
from scaling.decode.kv_cache import SlotKVCache
from scaling.decode.stopping import RowStop, TokenText
from scaling.hardware import resolve_dtype

log = logging.getLogger("scaling.decode")


@dataclass
class Generation:
    """One generated answer."""

    text: str
    n_tokens: int
    hit_eos: bool
    latency_s: float
    """Seconds from the prompt's prefill to its last token (``hf`` engine: its batch's time)."""
    looped: bool = False
    capped: bool = False
    """Stopped by its cap (the run's ``max_new_tokens`` or the row's prompt-bounded cap)."""


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
    context_steps: int = 0
    """Sum over decode steps of the attended cache columns (``continuous``): the mean context."""
    row_attention_steps: int = 0
    """Decode steps that attended row by row (``decode.row_attention_waste``)."""
    prefill_tokens: int = 0
    """Prompt tokens run through prefill (``continuous`` engine)."""
    prefill_s: float = 0.0
    """Seconds in prefill forward passes (``continuous`` engine)."""
    grammar_s: float = 0.0
    """Seconds filling and applying grammar masks (``continuous`` engine)."""
    grounding_s: float = 0.0
    """Seconds computing and applying the grounded masks (``decode.grounded``)."""
    grounding_fallbacks: int = 0
    """Row-steps where the grounded and grammar masks left no token, decoded under the grammar alone."""
    max_new_tokens: int = 0
    dtype: str = ""
    engine: str = ""
    slots: int = 0
    """Rows the continuous engine's cache holds (``decode.batch_size`` within ``max_batch_tokens``)."""
    cache_mb: float = 0.0
    """Memory of the continuous engine's KV cache."""
    looped: int = 0
    capped: int = 0
    grammar_compile_s: float = 0.0
    grammar_failures: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        decode_s = self.wall_s - self.prefill_s
        return {
            "wall_s": round(self.wall_s, 3),
            "generated_tokens": self.generated_tokens,
            "tokens_per_s": round(self.generated_tokens / self.wall_s, 2) if self.wall_s > 0 else None,
            "latency_s_per_example": round(self.wall_s / self.n, 4) if self.n else None,
            "n": self.n,
            "engine": self.engine,
            "dtype": self.dtype,
            "batches": self.batches,
            "steps": self.steps,
            "mean_batch_rows": round(self.row_steps / self.steps, 2) if self.steps else None,
            "mean_context": round(self.context_steps / self.steps, 1) if self.steps else None,
            "row_attention_steps": self.row_attention_steps,
            "ms_per_step": round(1000 * decode_s / self.steps, 2) if self.steps else None,
            "prefill_tokens": self.prefill_tokens,
            "prefill_s": round(self.prefill_s, 3),
            "grammar_s": round(self.grammar_s, 3),
            "grounding_s": round(self.grounding_s, 3),
            "grounding_fallbacks": self.grounding_fallbacks,
            "slots": self.slots,
            "cache_mb": round(self.cache_mb, 1),
            "looped": self.looped,
            "capped": self.capped,
            "max_new_tokens": self.max_new_tokens,
            "grammar_compile_s": round(self.grammar_compile_s, 3),
            "grammar_failures": self.grammar_failures,
        }


def length_grouped_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int,
                           new_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of similar prompt length, longest first (``hf`` engine)."""
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


def supports_slot_cache(model) -> bool:
    """The continuous engine needs full attention in every layer through ``Cache.update`` and
    4D masks (transformers' Llama family, our MiniModel port). Sliding windows or recurrent
    layers fall back to ``engine=hf``."""
    cfg = getattr(model, "config", None)
    return not (getattr(cfg, "sliding_window", None) or getattr(cfg, "layer_types", None) and
                any(t != "full_attention" for t in cfg.layer_types))


@torch.inference_mode()
def generate_batched(model, tokenizer, prompts: Sequence[str | list[int]], max_new_tokens: int, cfg: DecodeConfig,
                     grammars: Sequence[Any] | None = None, desc: str = "generate",
                     caps: Sequence[int] | None = None,
                     groundings: Sequence[Any] | None = None) -> tuple[list[Generation], GenerationStats]:
    """Greedy-decode every prompt; returns generations in input order and measured stats.

    A prompt is text, encoded as training encodes it (:func:`scaling.data.sft.prompt_ids`: the
    model's BOS where its tokenizer adds one), or a list of token ids used as given.

    ``caps`` bounds each row (default: ``max_new_tokens`` for all). ``cfg.dtype`` decides the
    decoding precision: a model in another dtype is decoded through a converted copy, so the
    caller's weights stay as they are.

    ``groundings``: one :class:`scaling.decode.grounded.GroundedCursor` per prompt
    (``decode.grounded``), masking each row's string and number values to its prompt on top
    of its grammar; ``continuous`` engine only.
    """
    device = next(model.parameters()).device
    dtype = resolve_dtype(cfg.dtype, device)
    run_model = model if next(model.parameters()).dtype == dtype else copy.deepcopy(model).to(dtype)
    was_training = run_model.training
    run_model.eval()
    encoded = encode_prompts(tokenizer, prompts)
    caps = [min(int(c), max_new_tokens) for c in caps] if caps is not None else [max_new_tokens] * len(prompts)
    engine = cfg.engine if cfg.engine == "hf" or supports_slot_cache(run_model) else "hf"
    if groundings is not None and engine != "continuous":
        raise ValueError(f"decode.grounded=true needs decode.engine=continuous (this run decodes with {engine}"
                         f"{'' if engine == cfg.engine else ': the model has no slot cache'})")
    if engine != cfg.engine:
        log.warning("decode.engine=%s does not support %s (sliding or non-attention layers): using hf",
                    cfg.engine, type(run_model).__name__)
    stats = GenerationStats(n=len(prompts), max_new_tokens=max_new_tokens, dtype=str(dtype).replace("torch.", ""),
                            engine=engine)
    bar = tqdm(total=len(prompts), desc=desc, disable=not cfg.progress, file=sys.stderr, dynamic_ncols=True)
    t_start = time.perf_counter()
    results: list[Generation | None] = [None] * len(prompts)

    def finish(i: int, row: RowStop, latency_s: float) -> None:
        n = row.n_generated
        results[i] = Generation(text=tokenizer.decode(row.ids, skip_special_tokens=True), n_tokens=n,
                                hit_eos=row.hit_eos, latency_s=latency_s, looped=row.looped, capped=row.capped)
        stats.generated_tokens += n
        stats.looped += row.looped
        stats.capped += row.capped
        bar.update(1)
        show_rate()

    def show_rate(in_flight: int = 0) -> None:
        """Tokens/s so far, counting rows still generating (a long answer shows progress too)."""
        bar.set_postfix(tok_s=f"{(stats.generated_tokens + in_flight) / (time.perf_counter() - t_start):.0f}")

    def new_row(i: int) -> RowStop:
        return RowStop(token_text, {tokenizer.eos_token_id}, cfg.stop_at_json_end, cfg.loop_min_tokens,
                       cfg.loop_max_period, cfg.loop_min_repeats, cap=caps[i])

    token_text = TokenText(tokenizer)
    try:
        if engine == "continuous":
            _ContinuousEngine(run_model, tokenizer, encoded, caps, cfg, grammars, stats, finish, show_rate,
                              new_row, groundings).run()
        else:
            _generate_fixed_batches(run_model, tokenizer, encoded, max(caps, default=1), cfg, grammars, stats,
                                    finish, new_row)
    finally:
        bar.close()
        run_model.train(was_training)
    stats.wall_s = time.perf_counter() - t_start
    return [r for r in results if r is not None], stats


def encode_prompts(tokenizer, prompts: Sequence[str | list[int]]) -> list[list[int]]:
    """Token ids of each prompt as the model was trained on them (text), or as given (ids)."""
    prefix = bos_prefix(tokenizer)
    return [list(p) if not isinstance(p, str) else prompt_ids(tokenizer, p, prefix) for p in prompts]


# --------------------------------------------------------------------------------------
# continuous batching over a slot cache
# --------------------------------------------------------------------------------------


class _Row:
    """One sequence being decoded: its input index, stop state, grammar matcher, its first and
    next column (the device-side ``state`` holds start column, next column and position for
    the model's inputs; these copies size the attention read without a device sync), its clock."""

    __slots__ = ("index", "stop", "matcher", "start", "col", "t0", "grounding")

    def __init__(self, index: int, stop: RowStop, matcher, start: int, col: int, t0: float, grounding=None) -> None:
        self.index, self.stop, self.matcher, self.start, self.col, self.t0 = index, stop, matcher, start, col, t0
        self.grounding = grounding


class _ContinuousEngine:
    def __init__(self, model, tokenizer, encoded, caps, cfg: DecodeConfig, grammars, stats: GenerationStats,
                 finish, show_rate, new_row, groundings=None) -> None:
        self.model, self.encoded, self.caps, self.cfg = model, encoded, caps, cfg
        self.groundings = groundings
        self.grammars, self.stats, self.finish, self.show_rate, self.new_row = grammars, stats, finish, show_rate, new_row
        self.device = next(model.parameters()).device
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # transformers 5 renames the forward argument past_key_values -> cache (deprecated alias).
        self.cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        lengths = [len(e) for e in encoded]
        # Static allocation: every row's columns end before its prefill chunk's width (at most
        # the longest prompt) plus its cap, so this width always suffices; memory is bounded by
        # max_batch_tokens, and attention reads only the columns in use.
        width = max(lengths, default=1) + max(caps, default=1) + 1
        self.slots = max(1, min(cfg.batch_size, len(encoded), cfg.max_batch_tokens // width))
        stats.slots = self.slots
        self.cache = SlotKVCache(model.config.num_hidden_layers, self.slots, width)
        # Row-by-row attention (scaling.decode.attention) for models on transformers' SDPA, on CPU.
        self.row_attention = (cfg.row_attention_waste is not None and self.device.type == "cpu"
                              and getattr(model.config, "_attn_implementation", None) in ("sdpa", SLOT_ATTENTION))
        self.rows: list[_Row] = []
        self.logits: torch.Tensor | None = None
        self.state = torch.zeros((0, 3), dtype=torch.long, device=self.device)  # start column, next column, position
        self.next_ids = torch.zeros(0, dtype=torch.long, device=self.device)
        self.bitmask = None
        if grammars is not None:
            import xgrammar as xgr

            self.xgr = xgr

    # -- admission and prefill -----------------------------------------------------------------

    def _admit(self, queue: deque) -> None:
        free = self.slots - len(self.rows)
        admit = [queue.popleft() for _ in range(min(free, len(queue)))]
        if not admit:
            return
        for chunk in prefill_chunks([len(self.encoded[i]) for i in admit], self.cfg.prefill_tokens):
            self._prefill([admit[k] for k in chunk])

    def _prefill(self, indices: list[int]) -> None:
        t0 = time.perf_counter()
        prompts = [self.encoded[i] for i in indices]
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        positions = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p):] = torch.tensor(p)
            positions[r, width - len(p):] = torch.arange(len(p))
        mask = SlotKVCache.prefill_mask(lengths, width, self.device)
        self.cache.set_prefill(first_slot=len(self.rows))
        # logits_to_keep=1: only the last position's logits (all of them would be rows x width x vocab).
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask, position_ids=positions.to(self.device),
                         use_cache=True, logits_to_keep=1, **{self.cache_kw: self.cache})
        logits = out.logits[:, -1, :].float()
        self.logits = logits if self.logits is None or not self.rows else torch.cat([self.logits, logits])
        new_state = torch.tensor([[width - n, width, n] for n in lengths], dtype=torch.long, device=self.device)
        self.state = new_state if not self.rows else torch.cat([self.state, new_state])
        for i, n in zip(indices, lengths):
            grammar = self.grammars[i] if self.grammars is not None else None
            matcher = self.xgr.GrammarMatcher(grammar) if grammar is not None else None
            grounding = self.groundings[i] if self.groundings is not None else None
            self.rows.append(_Row(i, self.new_row(i), matcher, start=width - n, col=width, t0=t0, grounding=grounding))
        self.stats.batches += 1
        self.stats.prefill_tokens += sum(lengths)
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.cache_mb = max(self.stats.cache_mb, self.cache.nbytes / 2**20)

    # -- one step ------------------------------------------------------------------------------

    def _choose(self) -> list[int]:
        """Each row's next token (under its grammar), kept on the device for the next step;
        the list returned is the step's one device-to-host transfer."""
        scores = self.logits
        if self.grammars is not None:
            t0 = time.perf_counter()
            if self.bitmask is None:
                self.bitmask = self.xgr.allocate_token_bitmask(self.slots, scores.shape[-1])
            mask_to_grammars(scores, [r.matcher for r in self.rows], self.bitmask)
            self.stats.grammar_s += time.perf_counter() - t0
        if self.groundings is not None:
            t0 = time.perf_counter()
            self.stats.grounding_fallbacks += mask_to_prompts(scores, [r.grounding for r in self.rows])
            self.stats.grounding_s += time.perf_counter() - t0
        self.next_ids = scores.argmax(-1)
        return self.next_ids.tolist()

    def _retire(self, done: list[int]) -> None:
        """Drop finished rows; the last rows move into their slots (one row's copy each), in
        the cache, the device-side row state and the chosen tokens alike."""
        n_keep = len(self.rows) - len(done)
        done_set = set(done)
        holes = [k for k in done if k < n_keep]
        movers = [k for k in range(n_keep, len(self.rows)) if k not in done_set]
        self.cache.move_slots(movers, holes)
        if holes:
            h, m = torch.tensor(holes, device=self.device), torch.tensor(movers, device=self.device)
            self.state[h] = self.state[m]
            self.next_ids[h] = self.next_ids[m]
        self.state, self.next_ids = self.state[:n_keep], self.next_ids[:n_keep]
        rows = self.rows
        for hole, mover in zip(holes, movers):
            rows[hole] = rows[mover]
        del rows[n_keep:]

    def run(self) -> None:
        if not self.row_attention:
            return self._run()
        config = self.model.config
        before = config._attn_implementation
        config._attn_implementation = SLOT_ATTENTION
        try:
            return self._run()
        finally:
            config._attn_implementation = before
            set_row_ranges(None)

    def _run(self) -> None:
        lengths = [len(e) for e in self.encoded]
        queue = deque(sorted(range(len(self.encoded)), key=lambda i: -lengths[i]))
        while queue or self.rows:
            if queue and len(self.rows) < self.slots:
                self._admit(queue)
            tokens = self._choose()
            done, now = [], time.perf_counter()
            for k, (row, tok) in enumerate(zip(self.rows, tokens)):
                if row.matcher is not None and not row.matcher.is_terminated():
                    row.matcher.accept_token(tok)
                if row.grounding is not None:
                    row.grounding.accept(tok)
                if row.stop.push(tok):
                    self.finish(row.index, row.stop, now - row.t0)
                    done.append(k)
            if done:
                self._retire(done)
            if not self.rows:
                self.logits = None
                continue
            self._step()

    def _step(self) -> None:
        """One token for every row: written at each row's next column, attending to its own."""
        rows = self.rows
        read = max(r.col for r in rows) + 1
        start, cols, positions = self.state[:, 0], self.state[:, 1], self.state[:, 2:]
        self.cache.set_decode(cols, read)
        masked = read - sum(r.col + 1 - r.start for r in rows) / len(rows)  # mean masked columns per row
        row_by_row = self.row_attention and masked > self.cfg.row_attention_waste
        set_row_ranges([(r.start, r.col + 1) for r in rows] if row_by_row else None)
        self.stats.row_attention_steps += bool(row_by_row)
        out = self.model(input_ids=self.next_ids[:, None], attention_mask=SlotKVCache.decode_mask(start, cols, read),
                         position_ids=positions, use_cache=True, **{self.cache_kw: self.cache})
        self.logits = out.logits[:, -1, :].float()
        self.state[:, 1:] += 1
        for r in rows:
            r.col += 1
        self.stats.steps += 1
        self.stats.row_steps += len(rows)
        self.stats.context_steps += read
        if self.stats.steps % 32 == 0:
            self.show_rate(sum(r.stop.n_generated for r in rows))


# --------------------------------------------------------------------------------------
# fixed batches through model.generate (the reference)
# --------------------------------------------------------------------------------------


class _BatchStopper:
    """A transformers StoppingCriteria over a fixed batch: one :class:`RowStop` per row."""

    def __init__(self, rows: list[RowStop]) -> None:
        self.rows = rows
        self.done = torch.zeros(len(rows), dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        for row, tok in enumerate(input_ids[:, -1].tolist()):
            if not self.done[row] and self.rows[row].push(tok):
                self.done[row] = True
        return self.done.clone().to(input_ids.device)


def _generate_fixed_batches(model, tokenizer, encoded, max_new_tokens, cfg, grammars, stats, finish, new_row) -> None:
    """``engine=hf``: length-grouped fixed batches through ``model.generate``."""
    device = next(model.parameters()).device
    batches = length_grouped_batches([len(e) for e in encoded], cfg.batch_size, cfg.max_batch_tokens, max_new_tokens)
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
        stopper = _BatchStopper([new_row(i) for i in batch])
        processors = []
        if grammars is not None:
            processors.append(GrammarLogitsProcessor([grammars[i] for i in batch], stopper))
        model.generate(
            input_ids=input_ids.to(device), attention_mask=attention.to(device),
            max_new_tokens=max(stopper.rows[r].cap or max_new_tokens for r in range(len(batch))),
            do_sample=False, num_beams=1, use_cache=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad,
            stopping_criteria=[stopper], logits_processor=processors or None,
            temperature=None, top_p=None, top_k=None,
        )
        elapsed = time.perf_counter() - t0
        stats.batches += 1
        for row, i in enumerate(batch):
            finish(i, stopper.rows[row], elapsed)

"""Supervised fine-tuning examples: tokenised prompt + target + EOS, completion-only labels.

Fixes the published pipeline's three training-data flaws:

- loss on prompt tokens -> prompt positions get label -100; only the answer is learned;
- no EOS learned (pad = eos, masked) -> EOS is appended to every target *as a label*;
  padding is masked by position, not by token id, so EOS stays in the loss even when the
  tokenizer pads with it;
- every example padded to max_length -> dynamic padding to the longest in a batch of
  similar lengths (:class:`LengthGroupedBatchSampler`).

Whether a sequence starts with BOS is the tokenizer's own convention, read by :func:`bos_prefix`:
BOS comes first exactly when ``tokenizer(text)`` (special tokens on) puts it first. Prompt and
answer are encoded without special tokens (so BOS never lands between them), and the prefix goes
before the prompt. SmolLM2's tokenizers (hub and GGUF) and the trained BPE add no BOS, so their
sequences start with the prompt's first token, as before. MiniModel's tokenizer adds ``<s>``
(:func:`scaling.models.minimodel.load_minimodel_tokenizer`): its pretraining started every sequence
with it. Decoding must encode prompts with :func:`prompt_ids` too, or the model sees a different
start at test time than in training.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from scaling.data.prompts import PromptFormat, format_prompt, format_target

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SFTExample:
    input_ids: list[int]
    labels: list[int]
    record_id: str
    truncated: bool


def bos_prefix(tokenizer) -> list[int]:
    """``[bos_token_id]`` if the tokenizer starts a sequence with BOS when asked to add its special
    tokens, else ``[]`` (see the module docstring)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    probe = "a"
    with_special = tokenizer(probe).input_ids
    plain = tokenizer(probe, add_special_tokens=False).input_ids
    return [bos] if with_special[:1] == [bos] and plain[:1] != [bos] else []


def prompt_ids(tokenizer, prompt: str, prefix: list[int] | None = None) -> list[int]:
    """The token ids a prompt is fed as, in training and at decoding: :func:`bos_prefix` (or the
    given ``prefix``) then the prompt without special tokens; no second BOS if the prompt text
    already starts with one (a chat template that writes ``{{ bos_token }}``)."""
    prefix = bos_prefix(tokenizer) if prefix is None else prefix
    ids = tokenizer(prompt, add_special_tokens=False).input_ids
    return ids if ids[: len(prefix)] == prefix else prefix + ids


def build_example(record, schema: dict | None, tokenizer, fmt: PromptFormat, max_length: int | None,
                  prefix: list[int] | None = None) -> SFTExample:
    """Tokenise one record (``prefix``: :func:`bos_prefix`, computed here if not given). When too
    long, the *prompt* is cut from the left, after its BOS (the answer and its EOS are what we learn
    from), and the example is flagged."""
    prefix = bos_prefix(tokenizer) if prefix is None else prefix
    prompt = format_prompt(record.prompt, schema, fmt, tokenizer)
    target = format_target(record.expected_output, fmt)
    p_ids = prompt_ids(tokenizer, prompt, prefix)  # starts with prefix
    t_ids = tokenizer(target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    truncated = False
    if max_length is not None and len(p_ids) + len(t_ids) > max_length:
        truncated = True
        body = p_ids[len(prefix):]
        keep_body = max(max_length - len(prefix) - len(t_ids), min(len(body), 16))
        p_ids = prefix + body[len(body) - keep_body:]
        t_ids = t_ids[: max_length - len(p_ids)]
    return SFTExample(
        input_ids=p_ids + t_ids,
        labels=[IGNORE_INDEX] * len(p_ids) + t_ids,
        record_id=record.id,
        truncated=truncated,
    )


class SFTDataset(Dataset):
    """Tokenised examples for a list of records (tokenised once, up front)."""

    def __init__(self, records, schemas, tokenizer, fmt: PromptFormat, max_length: int | None = None) -> None:
        prefix = bos_prefix(tokenizer)
        self.examples = [
            build_example(r, schemas[r.schema_id].schema if r.schema_id in schemas else None, tokenizer, fmt,
                          max_length, prefix)
            for r in records
        ]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> SFTExample:
        return self.examples[i]

    @property
    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.examples]

    @property
    def n_target_tokens(self) -> int:
        return sum(sum(1 for x in e.labels if x != IGNORE_INDEX) for e in self.examples)

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def n_truncated(self) -> int:
        return sum(e.truncated for e in self.examples)


class SFTCollator:
    """Right-pads a batch to its longest example; pads carry label -100 and attention 0."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, batch: Sequence[SFTExample]) -> dict[str, torch.Tensor]:
        width = max(len(e.input_ids) for e in batch)
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            attn[row, :n] = 1
        return {"input_ids": ids, "attention_mask": attn, "labels": labels}


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of similar length in random order, reproducible by (seed, epoch).

    Shuffle all indices, cut into mega-chunks of ``mega`` batches, sort each chunk by length,
    cut into batches, shuffle batch order. Padding stays small while every epoch still sees a
    different mix (the scheme of HF's ``group_by_length``). With ``max_tokens`` a batch also
    stops growing once batch x longest would exceed it (long complex examples get small batches).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, mega: int = 50,
                 max_tokens: int | None = None, shuffle: bool = True, num_replicas: int = 1,
                 rank: int = 0, extra_passes: Sequence[Sequence[int]] = ()) -> None:
        self.lengths = list(lengths)
        self.extra_passes = [list(p) for p in extra_passes]
        """Index subsets visited again every epoch (tier oversampling). Each is cut into
        batches as its own shuffled pass, so two copies of one example never share a batch
        (a shared batch would double one gradient term instead of giving a second update)."""
        for p in self.extra_passes:
            bad = [i for i in p if not 0 <= i < len(self.lengths)]
            if bad:
                raise ValueError(f"extra_passes index {bad[0]} outside the {len(self.lengths)} examples")
        self.batch_size = batch_size
        self.seed = seed
        self.mega = mega
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        """Data-parallel world size: each rank takes every ``num_replicas``-th batch of the
        same (seeded) order, truncated so all ranks step the same number of times."""
        self.rank = rank
        self.epoch = 0
        self.batches_done = 0
        """Batches of the current epoch already trained on (set by the training loop, so a
        resumed run skips exactly those: see :meth:`state_dict`)."""
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; the order depends on (seed, epoch)."""
        if epoch != self.epoch:
            # A skip loaded from a checkpoint belongs to that checkpoint's epoch only.
            self.batches_done = self._skip = 0
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.batches_done = self._skip = int(state["batches_done"])

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        out = self._cut(list(range(len(self.lengths))), rng)
        for extra in self.extra_passes:
            out.extend(self._cut(list(extra), rng))
        if self.shuffle:
            rng.shuffle(out)
        if self.num_replicas > 1:
            per_rank = len(out) // self.num_replicas
            out = out[self.rank::self.num_replicas][:per_rank]
        return out

    def _cut(self, idx: list[int], rng: random.Random) -> list[list[int]]:
        """One pass over ``idx``: shuffled, length-sorted within mega-chunks, cut into batches."""
        if self.shuffle:
            rng.shuffle(idx)
        chunk = self.batch_size * self.mega
        out: list[list[int]] = []
        for start in range(0, len(idx), chunk):
            part = sorted(idx[start:start + chunk], key=lambda i: -self.lengths[i])
            current: list[int] = []
            for i in part:
                longest = self.lengths[current[0]] if current else self.lengths[i]
                too_many = len(current) >= self.batch_size
                too_wide = self.max_tokens is not None and current and (len(current) + 1) * longest > self.max_tokens
                if current and (too_many or too_wide):
                    out.append(current)
                    current = []
                current.append(i)
            if current:
                out.append(current)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        yield from self.batches()[skip:]

    def __len__(self) -> int:
        return len(self.batches())


def tier_passes(records, tier_repeat: Mapping[str, int] | None) -> list[list[int]]:
    """The extra passes of :class:`LengthGroupedBatchSampler` for ``tier_repeat``
    (``{"complex": 3}``: the complex records are seen three times an epoch, the rest once)."""
    passes: list[list[int]] = []
    for tier, times in sorted((tier_repeat or {}).items()):
        idx = [i for i, r in enumerate(records) if r.tier == tier]
        passes.extend([idx] * (int(times) - 1) if idx else [])
    return passes


def stratified_split(records, fraction: float, seed: int = 0):
    """Split ``records`` into (train, val) with ~``fraction`` of each schema in val
    (at least one per schema that has 3 or more records), reproducibly."""
    if fraction <= 0:
        return list(records), []
    by_schema: dict[str, list] = {}
    for r in records:
        by_schema.setdefault(r.schema_id, []).append(r)
    rng = random.Random(seed)
    train, val = [], []
    for sid in sorted(by_schema):
        group = sorted(by_schema[sid], key=lambda r: r.id)
        rng.shuffle(group)
        k = int(round(len(group) * fraction))
        if k == 0 and len(group) >= 3:
            k = 1
        val.extend(group[:k])
        train.extend(group[k:])
    return train, val


def stratified_fraction(records, fraction: float, seed: int = 0) -> list:
    """About ``fraction`` of each schema's records (at least one per schema), reproducibly by
    ``seed``, in their original order: the data axis's smaller training sets.

    Each schema's records are shuffled once by ``seed`` and the first ``round(n * fraction)``
    kept, so with one seed the subsets are nested (the 25% subset lies inside the 50% one)
    and a larger fraction only adds records. The shuffle is its own (``"fraction"`` mixed into
    the seed), never the one of :func:`stratified_split`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"data.train_fraction={fraction!r}: expected a fraction in (0, 1]")
    if fraction == 1.0:
        return list(records)
    by_schema: dict[str, list] = {}
    for r in records:
        by_schema.setdefault(r.schema_id, []).append(r)
    rng = random.Random(f"fraction-{seed}")
    keep: set[str] = set()
    for sid in sorted(by_schema):
        group = sorted(by_schema[sid], key=lambda r: r.id)
        rng.shuffle(group)
        keep.update(r.id for r in group[: max(1, int(round(len(group) * fraction)))])
    return [r for r in records if r.id in keep]

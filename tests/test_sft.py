"""Completion-only SFT examples, padding, length-grouped batching and the validation split."""

from __future__ import annotations

import random

import pytest

from scaling.data.io import Record
from scaling.data.prompts import PromptFormat, format_prompt, format_target
from scaling.data.sft import (
    IGNORE_INDEX,
    LengthGroupedBatchSampler,
    SFTCollator,
    SFTDataset,
    build_example,
    stratified_split,
    tier_passes,
)
from scaling.models import train_bpe_tokenizer

FMT = PromptFormat(schema="none")


def record(i: int, schema_id: str = "rating", prompt: str | None = None, output=None) -> Record:
    return Record(
        id=f"{schema_id}-{i:03d}",
        schema_id=schema_id,
        tier="simple",
        prompt=prompt if prompt is not None else f"Review {i}: the blender is loud but fast. " * (1 + i % 4),
        expected_output=output if output is not None else {"rating": 1 + i % 5, "reviewer_name": f"user{i}"},
        file="-",
        line=i + 1,
    )


@pytest.fixture(scope="module")
def tok():
    texts = [format_prompt(r.prompt, None, FMT) + format_target(r.expected_output, FMT) for r in map(record, range(40))]
    return train_bpe_tokenizer(texts, vocab_size=400)


def ids_of(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


# --- one example -------------------------------------------------------------------------------


def test_labels_mask_the_prompt_and_keep_answer_and_eos(tok):
    rec = record(3)
    ex = build_example(rec, None, tok, FMT, max_length=None)
    p_ids = ids_of(tok, format_prompt(rec.prompt, None, FMT))
    t_ids = ids_of(tok, format_target(rec.expected_output, FMT))
    assert not ex.truncated and ex.record_id == rec.id
    assert ex.input_ids == p_ids + t_ids + [tok.eos_token_id]
    assert len(ex.labels) == len(ex.input_ids)
    assert ex.labels[: len(p_ids)] == [IGNORE_INDEX] * len(p_ids)
    assert ex.labels[len(p_ids):] == t_ids + [tok.eos_token_id]
    assert ex.labels[-1] == tok.eos_token_id
    assert tok.decode([x for x in ex.labels if x != IGNORE_INDEX], skip_special_tokens=True) == format_target(
        rec.expected_output, FMT)


def test_truncation_cuts_the_prompt_from_the_left_never_the_answer(tok):
    rec = record(2, prompt="Old irrelevant preamble. " * 40 + "Reviewer Zed gave 4 stars.")
    full = build_example(rec, None, tok, FMT, max_length=None)
    answer = [x for x in full.labels if x != IGNORE_INDEX]
    limit = len(answer) + 20
    assert len(full.input_ids) > limit
    cut = build_example(rec, None, tok, FMT, max_length=limit)
    assert cut.truncated
    assert len(cut.input_ids) == limit
    # The whole answer and its EOS survive, as labels, at the end.
    assert cut.input_ids[-len(answer):] == answer
    assert cut.labels[-len(answer):] == answer and cut.labels[-1] == tok.eos_token_id
    # What is left of the prompt is its end (the text right before the answer).
    kept_prompt = cut.input_ids[: limit - len(answer)]
    prompt_ids = full.input_ids[: len(full.input_ids) - len(answer)]
    assert kept_prompt == prompt_ids[-len(kept_prompt):]
    assert cut.labels[: len(kept_prompt)] == [IGNORE_INDEX] * len(kept_prompt)


def test_dataset_counts(tok):
    recs = [record(i) for i in range(6)]
    ds = SFTDataset(recs, {}, tok, FMT, max_length=None)
    assert len(ds) == 6
    assert ds.lengths == [len(e.input_ids) for e in ds.examples]
    assert ds.n_tokens == sum(ds.lengths)
    assert ds.n_target_tokens == sum(len(ids_of(tok, format_target(r.expected_output, FMT))) + 1 for r in recs)
    assert ds.n_truncated == 0
    assert SFTDataset(recs, {}, tok, FMT, max_length=30).n_truncated == 6


# --- collation -----------------------------------------------------------------------------------


def test_collator_right_pads_with_ignore_labels_even_when_pad_is_eos(tok):
    eos = tok.eos_token_id
    ex_long = build_example(record(3), None, tok, FMT, None)
    ex_short = build_example(record(0), None, tok, FMT, None)
    assert len(ex_short.input_ids) < len(ex_long.input_ids)
    batch = SFTCollator(pad_token_id=eos)([ex_short, ex_long])  # pad id == EOS id
    n = len(ex_short.input_ids)
    width = len(ex_long.input_ids)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2, width)
    assert batch["input_ids"][0, :n].tolist() == ex_short.input_ids
    assert batch["input_ids"][0, n:].tolist() == [eos] * (width - n)
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (width - n)
    assert batch["labels"][0, n:].tolist() == [IGNORE_INDEX] * (width - n)
    # The answer's EOS is a real token: it keeps its label and attention although it equals the pad id.
    assert batch["labels"][0, n - 1].item() == eos and batch["attention_mask"][0, n - 1].item() == 1
    assert batch["labels"][1].tolist() == ex_long.labels
    assert batch["attention_mask"][1].tolist() == [1] * width


def test_collator_pad_to_multiple(tok):
    ex = build_example(record(1), None, tok, FMT, None)
    batch = SFTCollator(pad_token_id=tok.pad_token_id, pad_to_multiple_of=64)([ex])
    assert batch["input_ids"].shape[1] % 64 == 0 and batch["input_ids"].shape[1] >= len(ex.input_ids)
    assert int(batch["attention_mask"].sum()) == len(ex.input_ids)


# --- length-grouped batches ------------------------------------------------------------------


def lengths_fixture(n: int = 1000, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(20, 1200) for _ in range(n)]


def padded_tokens(batches, lengths) -> int:
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_sampler_covers_every_index_once_per_epoch():
    lengths = lengths_fixture()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        flat = [i for b in sampler for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 8 for b in sampler.batches())
        assert len(sampler) == len(sampler.batches())


def test_sampler_order_depends_on_epoch_and_is_reproducible():
    lengths = lengths_fixture()
    a = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)
    b = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1)
    c = LengthGroupedBatchSampler(lengths, batch_size=8, seed=2)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch0 != epoch1
    assert {tuple(sorted(x)) for x in epoch0} != {tuple(sorted(x)) for x in epoch1}  # new mixes, not just reordered
    b.set_epoch(1)
    assert list(b) == epoch1
    b.set_epoch(0)
    assert list(b) == epoch0
    assert list(c) != epoch0


def test_sampler_keeps_padding_small_compared_with_random_batches():
    lengths = lengths_fixture()
    grouped = LengthGroupedBatchSampler(lengths, batch_size=8, seed=0).batches()
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    rand = [order[i:i + 8] for i in range(0, len(order), 8)]
    pad_grouped, pad_random = padded_tokens(grouped, lengths), padded_tokens(rand, lengths)
    assert pad_grouped < 0.1 * pad_random, (pad_grouped, pad_random)


def test_sampler_respects_max_tokens():
    lengths = lengths_fixture()
    lengths[5] = 5000  # longer than the budget on its own: a batch of one
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=0, max_tokens=4096)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 4096
    assert [5] in batches
    # Short examples still fill whole batches: the budget does not shrink every batch.
    assert max(len(b) for b in batches) == 16


def test_sampler_shards_across_replicas_with_equal_counts():
    lengths = lengths_fixture(n=203)
    single = LengthGroupedBatchSampler(lengths, batch_size=4, seed=5).batches()
    shards = [LengthGroupedBatchSampler(lengths, batch_size=4, seed=5, num_replicas=3, rank=r).batches()
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == len(single) // 3
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))  # ranks never share an example
    assert all(b in single for s in shards for b in s)  # the same batches, dealt out
    assert len(lengths) - len(seen) <= 2 * 4  # at most num_replicas-1 batches left out


def test_sampler_state_dict_skips_exactly_the_consumed_batches():
    lengths = lengths_fixture(n=300)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    sampler.set_epoch(2)
    full = sampler.batches()
    it = iter(sampler)
    consumed = [next(it) for _ in range(7)]
    sampler.batches_done = 7  # what the training loop records
    state = sampler.state_dict()
    assert state == {"epoch": 2, "batches_done": 7}

    resumed = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert consumed + rest == full
    assert list(resumed) == full  # the skip applies to the interrupted epoch's pass only


def test_sampler_skip_does_not_leak_into_a_new_epoch():
    lengths = lengths_fixture(n=100)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    sampler.load_state_dict({"epoch": 0, "batches_done": 4})
    sampler.set_epoch(1)  # resumed from an end-of-epoch checkpoint: the next epoch starts whole
    fresh = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3)
    fresh.set_epoch(1)
    assert list(sampler) == fresh.batches()


def test_unshuffled_sampler_is_sorted_by_length():
    lengths = lengths_fixture(n=50)
    batches = LengthGroupedBatchSampler(lengths, batch_size=5, shuffle=False).batches()
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(lengths, reverse=True)


# --- validation split -----------------------------------------------------------------------------


def test_tier_passes_repeat_only_the_named_tiers():
    recs = [Record(id=f"r{i}", schema_id="s", tier=("simple", "medium", "complex")[i % 3], prompt="p",
                   expected_output={}, file="train.jsonl", line=i + 1) for i in range(9)]
    complex_idx = [2, 5, 8]
    assert tier_passes(recs, {"complex": 3}) == [complex_idx, complex_idx]
    assert tier_passes(recs, {"complex": 1, "simple": 1}) == []
    assert tier_passes(recs, None) == []
    assert tier_passes(recs[:2], {"complex": 4}) == []  # no complex record: nothing to repeat


def test_sampler_extra_passes_repeat_examples_in_separate_batches():
    lengths = lengths_fixture(n=400)
    lengths[:40] = [5000] * 40  # long, identical lengths: a length sort puts copies side by side
    repeated = list(range(0, 60))
    plain = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3, max_tokens=16384)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=3, max_tokens=16384,
                                        extra_passes=[repeated, repeated])
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        counts = {}
        for b in batches:
            assert len(set(b)) == len(b)  # never two copies of one example in a batch
            for i in b:
                counts[i] = counts.get(i, 0) + 1
        assert all(counts[i] == (3 if i < 60 else 1) for i in range(len(lengths)))
        assert len(sampler) == len(batches) > len(plain.batches())
    shards = [LengthGroupedBatchSampler(lengths, batch_size=8, seed=3, extra_passes=[repeated], num_replicas=2,
                                        rank=r).batches() for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    with pytest.raises(ValueError, match="index 400 outside the 400 examples"):
        LengthGroupedBatchSampler(lengths, batch_size=8, extra_passes=[[400]])


def test_stratified_split_keeps_every_schema_in_val_and_is_disjoint():
    counts = {"rating": 40, "contact": 12, "invoice": 3, "tiny": 2, "solo": 1}
    recs = [record(i, schema_id=s) for s, n in counts.items() for i in range(n)]
    train, val = stratified_split(recs, 0.1, seed=0)
    train_ids, val_ids = {r.id for r in train}, {r.id for r in val}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {r.id for r in recs}
    per_schema = {s: sum(r.schema_id == s for r in val) for s in counts}
    assert per_schema["rating"] == 4 and per_schema["contact"] == 1
    assert per_schema["invoice"] == 1  # 3 records: at least one held out
    assert per_schema["tiny"] == 0 and per_schema["solo"] == 0  # too few to spare
    again = stratified_split(list(reversed(recs)), 0.1, seed=0)
    assert [r.id for r in again[1]] == [r.id for r in val]  # reproducible, input order irrelevant
    assert [r.id for r in stratified_split(recs, 0.1, seed=1)[1]] != [r.id for r in val]
    assert stratified_split(recs, 0.0) == (recs, [])

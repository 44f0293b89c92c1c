"""The decode package's rules on their own and on the real data: the loop stop, the per-row
caps, the slot KV cache against transformers' own cache, and precision selection."""

from __future__ import annotations

import json
import random
from array import array
from pathlib import Path

import pytest
import torch

from scaling.data.prompts import format_prompt, format_target
from scaling.decode import DecodeConfig, RowStop, answer_prompt_ratio, generate_batched, repeated_tail, row_caps
from scaling.decode.kv_cache import SlotKVCache
from scaling.hardware import cpu_bf16_flags, resolve_dtype, resolve_precision
from scaling.models import ModelSpec, build_model, train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]
REFERENCE_RUN = REPO / "outputs/reference/edgejson_v3/smol135_gguf-full-constrained_strict_fields"


def tail_loops(tokens, min_span=256, min_repeats=3, max_period=768) -> bool:
    return repeated_tail(array("q", tokens), min_span, min_repeats, max_period)


# --- the loop stop ------------------------------------------------------------------------------


def test_short_block_loops_need_the_whole_span():
    digits = [7] * 255
    assert not tail_loops([1, 2, 3] + digits)
    assert tail_loops([1, 2, 3] + digits + [7])
    word = [5, 6, 9] * 90  # 270 tokens of a 3-token block
    assert tail_loops(list(range(100, 140)) + word)


def test_a_long_record_repeated_three_times_is_a_loop_twice_is_not():
    rng = random.Random(0)
    record = [rng.randrange(1000, 2000) for _ in range(150)]
    head = [rng.randrange(1000, 2000) for _ in range(300)]
    assert not tail_loops(head + record * 2)
    assert tail_loops(head + record * 3)
    assert not tail_loops(head + record * 3, max_period=100)  # longer than the longest period caught
    # One differing token in the last copy breaks the period.
    assert not tail_loops(head + record * 2 + record[:-1] + [7])


def test_random_and_varied_sequences_are_not_loops():
    rng = random.Random(1)
    for _ in range(50):
        seq = [rng.randrange(0, 50) for _ in range(rng.randrange(1, 2000))]
        assert not tail_loops(seq)


@pytest.fixture(scope="module")
def edgejson(edgejson_dir):
    from scaling.data.source import DataSpec

    spec = DataSpec(name="edgejson", version="v3", root=str(edgejson_dir),
                    prompt={"template": "plain", "schema": "fields", "compact_json": True})
    return spec.load(), spec.prompt_format


def test_no_real_answer_looks_like_a_loop_and_the_runaways_do(smol_tokenizer, edgejson):
    """Every EdgeJSON v3 answer (train and test), checked the way a decoding row is (every 8
    tokens), never trips the loop stop; the three answers of the reference run that ran to the
    2,853-token cap under the old 64-token period limit trip it within a few hundred tokens."""
    data, fmt = edgejson
    tok = smol_tokenizer
    cfg = DecodeConfig()
    for record in list(data.train) + list(data.test):
        ids = tok(format_target(record.expected_output, fmt), add_special_tokens=False).input_ids
        stop = RowStop(lambda t: "", eos_ids=set(), stop_at_json_end=False, loop_min_tokens=cfg.loop_min_tokens,
                       loop_max_period=cfg.loop_max_period, loop_min_repeats=cfg.loop_min_repeats)
        assert not any(stop.push(t) for t in ids), record.id
    runaways = [json.loads(line) for line in (REFERENCE_RUN / "predictions.jsonl").read_text().splitlines()]
    runaways = [r for r in runaways if r["n_tokens"] >= 2853]
    assert len(runaways) == 3
    for row in runaways:
        ids = tok(row["output"], add_special_tokens=False).input_ids
        stop = RowStop(lambda t: "", eos_ids=set(), stop_at_json_end=False, loop_min_tokens=cfg.loop_min_tokens,
                       loop_max_period=cfg.loop_max_period, loop_min_repeats=cfg.loop_min_repeats)
        stopped = next((k + 1 for k, t in enumerate(ids) if stop.push(t)), None)
        assert stopped is not None and stop.looped and stopped < 2000, (row["id"], stopped)


def test_prompt_caps_from_train_never_cut_a_test_answer(smol_tokenizer, edgejson):
    """Caps derived from the training records alone leave room for every test answer, and are
    far below the run's cap for short prompts."""
    data, fmt = edgejson
    tok = smol_tokenizer

    def prompt(r):
        return format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt, tok)

    ratio = answer_prompt_ratio(tok, [prompt(r) for r in data.train], [format_target(r.expected_output, fmt)
                                                                        for r in data.train])
    assert 0.5 < ratio < 1.0
    test = list(data.test)
    lengths = [len(tok(prompt(r), add_special_tokens=False).input_ids) for r in test]
    caps = row_caps(lengths, 2853, ratio, DecodeConfig())
    answers = [len(tok(format_target(r.expected_output, fmt), add_special_tokens=False).input_ids) + 1 for r in test]
    assert all(a <= c for a, c in zip(answers, caps))
    assert min(caps) < 400 and max(caps) <= 2853
    assert row_caps(lengths, 2853, ratio, DecodeConfig(prompt_cap=False)) == [2853] * len(test)
    assert row_caps(lengths, 2853, None, DecodeConfig()) == [2853] * len(test)


# --- the slot cache against transformers' cache --------------------------------------------------


TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=300, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def tiny_gqa():
    texts = ["alpha beta gamma delta " * 3, '{"k":"v","n":[1,2,3]}', "zeta eta theta iota kappa"]
    tok = train_bpe_tokenizer(texts, vocab_size=300)
    spec = ModelSpec(key="tiny_gqa", source="random", init_std=0.3, tokenizer={"kind": "bpe"}, arch=TINY)
    return build_model(spec, tokenizer=tok, seed=0).eval(), tok


@torch.inference_mode()
def test_slot_cache_logits_equal_full_forward(tiny_gqa):
    """Two left-padded prompts prefilled into slots, then three decode steps with per-row
    columns: each row's logits equal a plain full forward of that row's own sequence."""
    model, _ = tiny_gqa
    torch.manual_seed(0)
    seqs = [torch.randint(2, 300, (n,)).tolist() for n in (9, 4)]
    cache = SlotKVCache(model.config.num_hidden_layers, slots=2, width=20)
    width = 9
    ids = torch.zeros((2, width), dtype=torch.long)
    pos = torch.zeros((2, width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(s)
        pos[r, width - len(s):] = torch.arange(len(s))
    cache.set_prefill(0)
    out = model(input_ids=ids, attention_mask=SlotKVCache.prefill_mask([9, 4], width, "cpu"), position_ids=pos,
                cache=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1]
    start = torch.tensor([0, width - 4])
    cols = torch.tensor([width, width])
    for step in range(4):
        for r, s in enumerate(seqs):
            full = model(input_ids=torch.tensor([s])).logits[0, -1]
            torch.testing.assert_close(logits[r], full, atol=1e-4, rtol=1e-4)
        nxt = logits.argmax(-1)
        for r in range(2):
            seqs[r].append(int(nxt[r]))
        cache.set_decode(cols, int(cols.max()) + 1)
        positions = torch.tensor([[len(s) - 1] for s in seqs])
        out = model(input_ids=nxt[:, None], attention_mask=SlotKVCache.decode_mask(start, cols, int(cols.max()) + 1),
                    position_ids=positions, cache=cache, use_cache=True)
        logits = out.logits[:, -1]
        cols = cols + 1


def test_bf16_decoding_leaves_the_callers_weights_alone(tiny_gqa):
    model, tok = tiny_gqa
    before = {k: v.clone() for k, v in model.state_dict().items()}
    gens, stats = generate_batched(model, tok, ["alpha beta", "zeta eta"], 6,
                                   DecodeConfig(dtype="bfloat16", progress=False, stop_at_json_end=False))
    assert stats.dtype == "bfloat16" and len(gens) == 2
    assert next(model.parameters()).dtype == torch.float32
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- precision ---------------------------------------------------------------------------------


def test_precision_rule_follows_the_cpu_flags():
    native = bool(cpu_bf16_flags())
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32-true")
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_dtype("float32", "cpu") == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8", "cpu")
    with pytest.raises(ValueError, match="decode.dtype"):
        DecodeConfig(dtype="int8")


def test_row_by_row_attention_gives_the_masked_tokens(tiny_gqa):
    """Rows of very different lengths, fp32: attending row by row over each row's own columns
    writes exactly what the masked full-width attention writes, and both match fixed batches."""
    model, tok = tiny_gqa
    prompts = ["alpha " * n + "beta" for n in (1, 3, 40, 2, 25, 5)]
    base = dict(dtype="float32", progress=False, stop_at_json_end=False, batch_size=4)
    rowwise, stats = generate_batched(model, tok, prompts, 12, DecodeConfig(**base, row_attention_waste=0))
    masked, masked_stats = generate_batched(model, tok, prompts, 12, DecodeConfig(**base, row_attention_waste=None))
    fixed, _ = generate_batched(model, tok, prompts, 12, DecodeConfig(**base, engine="hf"))
    assert [g.text for g in rowwise] == [g.text for g in masked] == [g.text for g in fixed]
    assert stats.row_attention_steps == stats.steps > 0 and masked_stats.row_attention_steps == 0
    assert model.config._attn_implementation == "sdpa"  # restored after the run

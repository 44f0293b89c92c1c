"""Evaluation harness: JSON-close stopping, batching, batched greedy generation, constrained
decoding (xgrammar) and the ``python -m scaling.evaluate`` entry point."""

from __future__ import annotations

import json
import math
import random

import jsonschema
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling.data.io import Record, SchemaInfo, load_schemas
from scaling.data.prompts import PromptFormat
from scaling.metrics import extract_json
from scaling.decode import (
    DecodeConfig,
    RowStop,
    SchemaGrammars,
    TokenText,
    derive_max_new_tokens,
    generate_batched,
    json_complete,
    length_grouped_batches,
    prefill_chunks,
    without_formats,
)
from scaling.evaluate import evaluate_records
from scaling.models import ModelSpec, build_model, train_bpe_tokenizer
from scaling.results import read_json

TINY_ARCH = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=512, tie_word_embeddings=True)


def stop_after(chunks: list[str], **kwargs) -> int | None:
    """Feed text pieces to a RowStop as if each were one token; the 1-based piece it stops at."""
    stop = RowStop(lambda k: chunks[k], eos_ids={-1}, **kwargs)
    return next((k + 1 for k in range(len(chunks)) if stop.push(k)), None)


# --- the stop rule is the scorer's extraction ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ('{"a":1}', True),
        ('{"a":{"b":{"c":[1,2,{"d":null}]}}}', True),
        ('{"a":{"b":1}', False),
        ('{"a":"}}}]]"', False),  # braces inside a string do not close anything
        ('{"a":"say \\"}\\" now"', False),  # escaped quotes keep the string open
        ('{"a":"x\\\\"}', True),  # an escaped backslash ends before the closing quote
        ("[1,[2,3],{}]", True),
        ("[1,[2,3]", False),
        ('Sure! Here is the JSON: {"a":[1]}', True),
        ('He said "wait" and then {"a":1', False),
        ("no json at all } ]", False),
        ("Answer [v1]", False),  # brackets that are not JSON do not end the answer
        ('Answer [v1]: {"a": 1}', True),
        ("", False),
    ],
)
def test_json_complete_examples(text, complete):
    assert json_complete(text) is complete


def test_text_before_the_json_with_brackets_does_not_stop_the_row():
    """The old bracket counter closed on ``[v1]`` and cut the answer to ``'Answer [v1]'``
    (a syntax error); the scorer reads the full text as ``ok``."""
    text = 'Answer [v1]: {"a": 1} and more'
    chunks = list(text)
    stopped = stop_after(chunks)
    assert stopped == text.index("}") + 1
    assert extract_json(text[:stopped]).value == extract_json(text).value == {"a": 1}


json_scalars = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)
json_containers = st.lists(json_values, max_size=4) | st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=json_containers,
    prefix=st.text(alphabet=st.characters(exclude_characters="{["), max_size=20),
    suffix=st.text(max_size=20),
    ensure_ascii=st.booleans(),
    compact=st.booleans(),
    data=st.data(),
)
def test_row_stops_exactly_at_the_end_of_any_json_dump(value, prefix, suffix, ensure_ascii, compact, data):
    dump = json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":") if compact else None)
    stream = prefix + dump + suffix
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if 0 < c < len(stream)], len(stream)]
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:])]
    end = len(prefix) + len(dump)  # the dump's last character is stream[end - 1]
    expected = next(i for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if a < end <= b)
    assert stop_after(chunks) == expected + 1


@settings(max_examples=400, deadline=None)
@given(head=st.text(alphabet='{}[]":,ab1 \\n', max_size=40), tail=st.text(alphabet='{}[]":,ab1 \\x', max_size=20))
def test_a_complete_prefix_extracts_what_every_continuation_extracts(head, tail):
    """Why stopping early never changes a score: once the scorer's extraction finds a value in
    a prefix, it finds the same value (same place) in any longer text."""
    if json_complete(head):
        before, after = extract_json(head), extract_json(head + tail)
        assert (after.value, after.start, after.end) == (before.value, before.start, before.end)


# --- batching and the generation budget -------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_length_grouped_batches_cover_all_and_respect_token_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 900) for _ in range(157)]
    new_tokens, budget = 200, 6000
    batches = length_grouped_batches(lengths, batch_size=16, max_batch_tokens=budget, new_tokens=new_tokens)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= 16
        assert len(b) == 1 or len(b) * (max(lengths[i] for i in b) + new_tokens) <= budget
    # Longest first: an out-of-memory batch shows at once.
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_derive_max_new_tokens_from_the_longest_target():
    tok = train_bpe_tokenizer(['{"a":1,"b":"two words"}', '{"list":[1,2,3,4,5,6,7]}'] * 5, vocab_size=280)
    targets = ['{"a":1}', '{"list":[1,2,3,4,5,6,7],"b":"two words and more words"}', "{}"]
    longest = max(len(tok(t, add_special_tokens=False).input_ids) for t in targets)
    cfg = DecodeConfig()
    assert derive_max_new_tokens(tok, targets, cfg) == math.ceil(longest * 1.25) + 32 + 1
    assert derive_max_new_tokens(tok, targets, DecodeConfig(margin_factor=2.0, margin_tokens=0)) == 2 * longest + 1
    assert derive_max_new_tokens(tok, targets, DecodeConfig(max_new_tokens=77)) == 77


def test_decode_config_rejects_unknown_keys_and_modes():
    with pytest.raises(ValueError, match="max_new_token"):
        DecodeConfig.from_config({"max_new_token": 5})
    with pytest.raises(ValueError, match="decode.mode"):
        DecodeConfig(mode="beam")


# --- batched greedy generation on a tiny random model ------------------------------------------


@pytest.fixture(scope="module")
def order_texts():
    return [
        f"Extract the information from the text below as one JSON object.\n\nText:\nOrder #{i} by customer "
        f"{'Ana Bob Cid Dee'.split()[i % 4]}: {i % 7 + 1} items, total {i * 3.5:.2f} EUR, shipped 2024-0{i % 9 + 1}-1{i % 9}."
        f"\n\nJSON:\n" + json.dumps({"order_id": i, "customer": "Ana", "total": i * 3.5}, separators=(",", ":"))
        for i in range(60)
    ]


@pytest.fixture(scope="module")
def tiny_lm(order_texts):
    """A tiny random Llama with a large init scale: its greedy outputs are varied (a 0.02 init
    writes the same token forever, which would make batched-vs-single comparisons vacuous)."""
    tok = train_bpe_tokenizer(order_texts, vocab_size=512)
    spec = ModelSpec(key="tiny", source="random", init_std=0.5, tokenizer={"kind": "bpe"}, arch=TINY_ARCH)
    return build_model(spec, tokenizer=tok, seed=0).eval(), tok


def test_batched_left_padded_greedy_equals_one_at_a_time(tiny_lm, order_texts):
    model, tok = tiny_lm
    # Very different prompt lengths in one batch: most rows are left-padded.
    prompts = [t.split("JSON:\n")[0][: 15 + 30 * i] + "\nJSON:\n" for i, t in enumerate(order_texts[:7])]
    assert len({len(tok(p).input_ids) for p in prompts}) >= 5
    cfg = DecodeConfig(dtype="float32", progress=False, batch_size=8, stop_at_json_end=False)
    batched, stats = generate_batched(model, tok, prompts, 20, cfg)
    assert stats.batches == 1
    single = [generate_batched(model, tok, [p], 20, cfg)[0][0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.n_tokens for g in batched] == [g.n_tokens for g in single]
    assert len({g.text for g in batched}) >= 4  # the model really writes different things
    # Measured, not estimated.
    assert stats.wall_s > 0 and stats.n == len(prompts)
    assert stats.generated_tokens == sum(g.n_tokens for g in batched)
    d = stats.as_dict()
    assert d["tokens_per_s"] == pytest.approx(stats.generated_tokens / stats.wall_s, rel=0.01)
    assert tok.padding_side == "right"  # restored after generation
    assert not model.training


def test_generation_order_follows_inputs_across_batches(tiny_lm, order_texts):
    model, tok = tiny_lm
    prompts = [t.split("JSON:\n")[0][: 40 + 25 * i] + "\nJSON:\n" for i, t in enumerate(order_texts[:6])]
    cfg = DecodeConfig(dtype="float32", progress=False, batch_size=2, stop_at_json_end=False)
    gens, stats = generate_batched(model, tok, prompts, 8, cfg)
    assert stats.batches == 3
    alone = [generate_batched(model, tok, [p], 8, cfg)[0][0].text for p in prompts]
    assert [g.text for g in gens] == alone


PROMPT = "Extract: Bob rated it 4.\nJSON:\n"
ANSWER = '{"rating":4,"tags":["a}b",{"x":"\\"]"}],"name":"Bob"}'
JUNK = " and then some trailing words that keep going"


@pytest.fixture(scope="module")
def parrot():
    """A tiny model trained (a second of Adam) to answer PROMPT with ANSWER followed by junk
    and no EOS: only the JSON-close stopper can end its answer early."""
    tok = train_bpe_tokenizer([PROMPT + ANSWER + JUNK] * 3 + ['other {a} [b] "c" text'], vocab_size=300)
    spec = ModelSpec(key="parrot", source="random", tokenizer={"kind": "bpe"}, arch={**TINY_ARCH, "vocab_size": 300})
    model = build_model(spec, tokenizer=tok, seed=0)
    ids = torch.tensor([tok(PROMPT + ANSWER + JUNK, add_special_tokens=False).input_ids])
    n_prompt = len(tok(PROMPT, add_special_tokens=False).input_ids)
    labels = ids.clone()
    labels[:, :n_prompt] = -100
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(200):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            if (model(input_ids=ids).logits[0, n_prompt - 1:-1].argmax(-1) == ids[0, n_prompt:]).all():
                break
    else:
        pytest.fail("the parrot model did not memorise its answer")
    return model.eval(), tok


def test_generation_stops_when_the_json_closes(parrot):
    model, tok = parrot
    other = "Something else entirely, a longer prompt that the model never saw in training.\nJSON:\n"
    answer_tokens = len(tok(ANSWER, add_special_tokens=False).input_ids)
    gens, stats = generate_batched(model, tok, [PROMPT, other], 60, DecodeConfig(dtype="float32", progress=False))
    assert gens[0].text == ANSWER
    assert gens[0].n_tokens == answer_tokens and not gens[0].hit_eos
    assert stats.generated_tokens == sum(g.n_tokens for g in gens)
    # Without the stopper the same model goes on into its junk until the cap.
    free, _ = generate_batched(model, tok, [PROMPT], 60, DecodeConfig(dtype="float32", progress=False, stop_at_json_end=False))
    assert free[0].text.startswith(ANSWER + " and then") and free[0].n_tokens == 60


def test_row_stop_at_eos_json_end_or_cap():
    tok = train_bpe_tokenizer(['{"a":[1,2]} tail', "x y z"] * 4, vocab_size=270)
    eos = tok.eos_token_id
    json_ids = tok('{"a":[1,2]}', add_special_tokens=False).input_ids
    row0 = json_ids + tok(" tail", add_special_tokens=False).input_ids
    row1 = tok("x y", add_special_tokens=False).input_ids + [eos, eos]
    stops = [RowStop(TokenText(tok), {eos}), RowStop(TokenText(tok), {eos}),
             RowStop(TokenText(tok), {eos}, cap=3)]
    done_at = [next(t + 1 for t, tok_id in enumerate(seq) if stop.push(tok_id))
               for stop, seq in zip(stops, (row0, row1, row0))]
    assert done_at == [len(json_ids), len(row1) - 1, 3]
    assert [s.hit_eos for s in stops] == [False, True, False]
    assert [s.capped for s in stops] == [False, False, True]
    assert stops[0].text == '{"a":[1,2]}' and stops[0].push(eos)  # a finished row stays finished


# --- schema-constrained decoding (xgrammar) ----------------------------------------------------

# Bounded strings (maxLength, format, pattern, enums) so that a random model ends its answer:
# an unbounded string lets it write forever. maxLength strings are where xgrammar's own string
# rule admits raw control characters, which JSON forbids.
REVIEW_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "verdict": {"enum": ["good", "bad", "mixed"]},
        "recommended": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["fast", "cheap", "loud"]}, "maxItems": 3},
        "name": {"type": "string", "minLength": 1, "maxLength": 6},
        "date": {"type": "string", "format": "date"},
    },
    "required": ["rating", "verdict", "name"],
    "additionalProperties": False,
}
CODE_SCHEMA = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
        "currency": {"type": "string", "minLength": 3, "maxLength": 3},
        "amount": {"type": "integer", "minimum": 0, "maximum": 999},
    },
    "required": ["code", "currency", "amount"],
    "additionalProperties": False,
}


def constrained_records(n: int) -> tuple[list[Record], dict[str, SchemaInfo]]:
    schemas = {"review": SchemaInfo("review", "simple", REVIEW_SCHEMA, None),
               "code": SchemaInfo("code", "medium", CODE_SCHEMA, None)}
    recs = []
    for i in range(n):
        sid = "review" if i % 3 else "code"
        out = ({"rating": 1 + i % 5, "verdict": "good", "name": "Bo"} if sid == "review"
               else {"code": "AB-123", "currency": "EUR", "amount": i})
        recs.append(Record(id=f"c{i}", schema_id=sid, tier=schemas[sid].tier,
                           prompt=f"Review number {i}: " + "really nice blender, a bit loud. " * (i % 4 + 1),
                           expected_output=out, file="-", line=i + 1))
    return recs, schemas


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_decoding_makes_a_random_model_schema_valid(tiny_lm, seed):
    _, tok = tiny_lm
    # Random weights: every valid answer comes from the grammar, none from the model.
    spec = ModelSpec(key="tiny", source="random", init_std=0.5, tokenizer={"kind": "bpe"}, arch=TINY_ARCH)
    model = build_model(spec, tokenizer=tok, seed=seed)
    recs, schemas = constrained_records(9)
    fmt = PromptFormat(schema="fields")
    # With formats the grammar bounds every string (a "date" has 10 characters), so random
    # weights still finish within the token cap.
    cfg = DecodeConfig(mode="constrained", dtype="float32", progress=False, batch_size=4, grammar_formats=True)
    result = evaluate_records(model, tok, recs, schemas, fmt, cfg, max_new_tokens=160)
    assert result.stats["grammar_failures"] == {}
    for row, rec in zip(result.rows, recs):
        obj = json.loads(row["output"])  # strict: raw control characters in strings are errors
        jsonschema.validate(obj, schemas[rec.schema_id].schema)
        assert row["status"] == "ok" and row["schema_compliance"] == 1.0, row
    # The same random model unconstrained writes no JSON at all.
    free = evaluate_records(model, tok, recs, schemas, fmt, DecodeConfig(dtype="float32", progress=False), max_new_tokens=40)
    assert all(r["status"] != "ok" for r in free.rows)


def test_grammars_are_compiled_once_per_schema(tiny_lm):
    _, tok = tiny_lm
    recs, schemas = constrained_records(12)
    sg = SchemaGrammars(tok, vocab_size=len(tok))
    grammars = [sg.get(r.schema_id, schemas[r.schema_id].schema) for r in recs]
    assert set(sg.compiled) == {"review", "code"}
    assert all(g is not None for g in grammars)
    by_schema: dict[str, object] = {}
    for rec, g in zip(recs, grammars):
        assert by_schema.setdefault(rec.schema_id, g) is g  # the same compiled object, not a recompile
    spent = sg.compile_s
    sg.get("review", REVIEW_SCHEMA)
    assert sg.compile_s == spent


def test_all_edgejson_schemas_compile(tiny_lm, edgejson_dir):
    _, tok = tiny_lm
    schemas = load_schemas(edgejson_dir / "schemas")
    sg = SchemaGrammars(tok, vocab_size=len(tok))
    for sid, info in schemas.items():
        sg.get(sid, info.schema)
    assert sg.failed == {}
    assert len(sg.compiled) == len(schemas) == 25


# --- scoring rows and the entry point --------------------------------------------------------


def test_evaluate_records_rows_and_metrics(tiny_lm):
    model, tok = tiny_lm
    recs, schemas = constrained_records(6)
    result = evaluate_records(model, tok, recs, schemas, PromptFormat(schema="none"),
                              DecodeConfig(dtype="float32", progress=False), max_new_tokens=12)
    assert [r["id"] for r in result.rows] == [r.id for r in recs]
    for row, rec in zip(result.rows, recs):
        assert row["schema_id"] == rec.schema_id and row["tier"] == rec.tier
        assert row["status"] in {"ok", "schema_error", "syntax_error", "json_not_found"}
        for key in ("json_exact", "field_f1", "schema_compliance", "output", "n_tokens", "hit_eos", "truncated"):
            assert key in row
        assert 0 < row["n_tokens"] <= 12
    assert result.metrics["overall"]["n"] == 6
    assert set(result.metrics["by_tier"]) == {"simple", "medium"}
    assert set(result.metrics["by_schema"]) == {"review", "code"}
    assert result.stats["generated_tokens"] == sum(r["n_tokens"] for r in result.rows)
    assert result.stats["max_new_tokens"] == 12


def test_evaluate_entry_point_writes_results(tmp_path, run_scaling, fast_overrides):
    run_scaling("scaling.evaluate", ["model=tiny_s", "data=synthetic", *fast_overrides, "eval.limit=4",
                                     "sweep_name=ev", "logger=none"], tmp_path)
    job = tmp_path / "runs" / "ev" / "tiny_s-none-greedy-s0"
    results = read_json(job / "results.json")
    assert results["status"] == "completed", results.get("error")
    assert results["finetune"]["method"] == "none"
    assert results["train"] is None
    assert results["params"]["trainable"] == 0 and results["params"]["total"] > 0
    assert results["data"]["n_test"] == 16 and results["data"]["n_eval"] == 4  # the split, and what was scored
    metrics = read_json(job / "metrics.json")
    assert metrics == results["metrics"]
    rows = [json.loads(line) for line in (job / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all({"id", "schema_id", "tier", "status", "output"} <= set(r) for r in rows)


# --------------------------------------------------------------------------------------
# continuous batching (the default engine) against fixed model.generate batches
# --------------------------------------------------------------------------------------


def test_continuous_engine_equals_fixed_batches_and_one_at_a_time(tiny_lm, order_texts):
    model, tok = tiny_lm
    prompts = [t.split("JSON:\n")[0][: 15 + 23 * i] + "\nJSON:\n" for i, t in enumerate(order_texts[:9])]
    base = dict(dtype="float32", progress=False, batch_size=3, stop_at_json_end=False)
    cont, stats = generate_batched(model, tok, prompts, 20, DecodeConfig(**base))
    fixed, _ = generate_batched(model, tok, prompts, 20, DecodeConfig(**base, engine="hf"))
    alone = [generate_batched(model, tok, [p], 20, DecodeConfig(**base))[0][0] for p in prompts]
    # Every prompt prefilled on its own, then merged into the running cache.
    split, split_stats = generate_batched(model, tok, prompts, 20, DecodeConfig(**base, prefill_tokens=1))
    assert split_stats.batches == len(prompts)
    assert [g.text for g in cont] == [g.text for g in fixed] == [g.text for g in alone] == [g.text for g in split]
    assert [g.n_tokens for g in cont] == [g.n_tokens for g in fixed] == [20] * len(prompts)
    assert len({g.text for g in cont}) >= 5
    assert stats.generated_tokens == 20 * len(prompts)
    # 9 prompts, 3 rows: three prefills, and every decode step ran full rows.
    assert stats.batches == 3 and stats.row_steps == 3 * stats.steps
    assert stats.as_dict()["mean_batch_rows"] == 3.0


def test_continuous_engine_refills_rows_that_finish_early(tiny_lm):
    """Under a grammar the random model's answers end at very different lengths: finished
    rows leave, waiting prompts are prefilled and merged into the running KV cache, and every
    answer is token for token what the fixed-batch engine writes."""
    _, tok = tiny_lm
    spec = ModelSpec(key="tiny", source="random", init_std=0.5, tokenizer={"kind": "bpe"}, arch=TINY_ARCH)
    model = build_model(spec, tokenizer=tok, seed=1).eval()
    recs, schemas = constrained_records(10)
    fmt = PromptFormat(schema="fields")
    cfg = DecodeConfig(mode="constrained", dtype="float32", progress=False, batch_size=3, grammar_formats=True)
    cont = evaluate_records(model, tok, recs, schemas, fmt, cfg, max_new_tokens=160)
    fixed = evaluate_records(model, tok, recs, schemas, fmt, DecodeConfig(mode="constrained", dtype="float32", progress=False,
                                                                          batch_size=3, engine="hf",
                                                                          grammar_formats=True),
                             max_new_tokens=160)
    assert [r["output"] for r in cont.rows] == [r["output"] for r in fixed.rows]
    lengths = [r["n_tokens"] for r in cont.rows]
    assert len(set(lengths)) >= 4, lengths  # the rows really finish at different times
    assert cont.stats["batches"] > math.ceil(len(recs) / 3)  # prompts joined a running batch
    assert cont.stats["mean_batch_rows"] > 2.0
    # No idle rows: fewer decode row-steps than the fixed engine's batches x longest row.
    assert cont.stats["steps"] * cont.stats["mean_batch_rows"] == pytest.approx(sum(lengths) - len(recs), abs=1)
    for row, rec in zip(cont.rows, recs):
        jsonschema.validate(json.loads(row["output"]), schemas[rec.schema_id].schema)


def test_decode_engine_is_checked():
    with pytest.raises(ValueError, match="decode.engine"):
        DecodeConfig(engine="vllm")


@given(st.lists(st.integers(1, 3000), min_size=1, max_size=60), st.integers(1, 8192))
@settings(max_examples=200, deadline=None)
def test_prefill_chunks_cover_in_order_within_budget(lengths, budget):
    lengths = sorted(lengths, reverse=True)
    chunks = prefill_chunks(lengths, budget)
    assert [k for c in chunks for k in c] == list(range(len(lengths)))
    for c in chunks:
        assert len(c) == 1 or len(c) * max(lengths[k] for k in c) <= budget


def test_grammar_does_not_enforce_formats_the_score_does_not_check(tiny_lm):
    """EdgeJSON v3 date-times have no timezone: a date-time grammar would forbid the very
    answer the score expects, so formats are dropped from grammars unless asked for."""
    _, tok = tiny_lm
    schema = {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"},
                                               "format": {"type": "string"}},
              "required": ["ts", "format"]}
    assert without_formats(schema)["properties"] == {"ts": {"type": "string"}, "format": {"type": "string"}}
    answer = '{"ts":"2005-07-03T17:42:53.545351","format":"pdf"}'
    ids = tok(answer, add_special_tokens=False).input_ids

    def accepts(formats: bool) -> bool:
        import xgrammar as xgr

        grammar = SchemaGrammars(tok, vocab_size=len(tok), formats=formats).get("s", schema)
        matcher = xgr.GrammarMatcher(grammar)
        return all(matcher.accept_token(t) for t in ids) and matcher.accept_token(tok.eos_token_id)

    assert accepts(formats=False)
    assert not accepts(formats=True)  # RFC 3339 needs a timezone: the grammar would not let it close


def test_strict_grammar_allows_declared_keys_only(tiny_lm):
    """A nested object without ``additionalProperties`` admits undeclared keys with any
    value under JSON Schema, so a loose grammar lets a model nest a sibling object inside the
    wrong parent; ``grammar_strict`` admits the declared properties only."""
    _, tok = tiny_lm
    schema = {"type": "object", "additionalProperties": False, "required": ["sales", "customers"],
              "properties": {"sales": {"type": "object", "properties": {"orders": {"type": "integer"}}},
                             "customers": {"type": "object", "properties": {"total": {"type": "integer"}}}}}
    good = '{"sales":{"orders":76},"customers":{"total":84}}'
    misplaced = '{"sales":{"orders":76,"customers":{"total":84}},"customers":{"total":84}}'

    def accepts(answer: str, strict: bool) -> bool:
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(SchemaGrammars(tok, vocab_size=len(tok), strict=strict).get("s", schema))
        ids = tok(answer, add_special_tokens=False).input_ids
        return all(matcher.accept_token(t) for t in ids) and matcher.accept_token(tok.eos_token_id)

    assert accepts(good, strict=False) and accepts(good, strict=True)
    assert accepts(misplaced, strict=False)
    assert not accepts(misplaced, strict=True)

"""Grounded decoding (``decode.grounded``): the prompt's substring automaton, the vocabulary
walk against a brute-force check of every token, and a random model whose every string value
and number comes out of its prompt."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from scaling.data.io import Record, SchemaInfo
from scaling.data.prompts import PromptFormat
from scaling.decode import DecodeConfig
from scaling.decode.evaluation import evaluate_records
from scaling.decode.grounded import (
    _FAIL,
    _FREE,
    GroundedCursor,
    PromptSubstrings,
    VocabTrie,
    _step,
    escaped_prompt,
)
from scaling.models import ModelSpec, build_model, train_bpe_tokenizer


def test_the_automaton_holds_exactly_the_substrings():
    rng = random.Random(0)
    for _ in range(20):
        text = bytes(rng.choice(b"abc ,\"\\") for _ in range(rng.randrange(0, 60)))
        sub = PromptSubstrings(text)
        for _ in range(200):
            i = rng.randrange(0, len(text) + 1)
            piece = text[i:i + rng.randrange(0, 8)]
            assert piece in sub
            probe = bytes(rng.choice(b"abcd ,\"\\") for _ in range(rng.randrange(1, 6)))
            assert (probe in sub) == (probe in text), (text, probe)


def test_escaped_prompt_reads_as_inside_a_json_string():
    assert escaped_prompt('Say "hi"\nto Zoë') == 'Say \\"hi\\"\\nto Zoë'.encode()


def _brute_force(cursor: GroundedCursor, trie: VocabTrie) -> tuple[set[int], set[int]]:
    """Every token walked byte by byte: (allowed: it never leaves the prompt inside a value,
    refused: it does). Tokens that stop being JSON are neither: the grammar decides them."""
    allowed, refused = set(), set()
    for i, raw in enumerate(trie.token_bytes):
        state = cursor.state
        for b in raw:
            state = _step(state, b, cursor.prompt)
            if state is _FAIL or not state or state[0] in _FREE:
                break
        if state is _FAIL:
            refused.add(i)
        elif state or not raw:
            allowed.add(i)
    return allowed, refused


TEXTS = ['Order 1250 for Ana Lima, Porto: "rush" delivery, 42 items, tags red blue.',
         '{"name":"Ana Lima","city":"Porto","amount":1250,"tags":["red","blue"]}',
         "Ticket 77 from Bo Chen in Lyon, priority high, tags urgent billing."]


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(TEXTS * 3, vocab_size=400)


def test_the_trie_walk_equals_checking_every_token(tok):
    vocab = [tok.convert_tokens_to_string([t]).encode() if not t.startswith("<") else b""
             for t in tok.convert_ids_to_tokens(list(range(len(tok))))]
    trie = VocabTrie(vocab)
    prompt = PromptSubstrings(escaped_prompt(TEXTS[0]))
    answer = '{"name":"Ana Lima","city":"Por'
    seen = 0
    for cut in range(len(answer) + 1):
        cursor = GroundedCursor(prompt, trie)
        for ch in answer[:cut]:  # feed byte by byte through single-byte tokens where they exist
            cursor.state = _step(cursor.state, ord(ch), prompt)
        keep = cursor.allowed()
        if keep is None:
            continue
        seen += 1
        kept = set(map(int, keep.nonzero()[0]))
        allowed, refused = _brute_force(cursor, trie)
        assert allowed <= kept and not kept & refused, answer[:cut]
    assert seen >= 15  # value positions, inside the strings and after them


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "city": {"type": "string", "minLength": 1, "maxLength": 8},
        "amount": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 6}, "maxItems": 2},
    },
    "required": ["name", "city", "amount", "tags"],
    "additionalProperties": False,
}


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_model_grounded_writes_only_values_from_its_prompt(tok, seed):
    arch = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=len(tok), tie_word_embeddings=True)
    spec = ModelSpec(key="tiny", source="random", init_std=0.5, tokenizer={"kind": "bpe"}, arch=arch)
    model = build_model(spec, tokenizer=tok, seed=seed)
    schemas = {"order": SchemaInfo("order", "medium", SCHEMA, None)}
    prompts = [TEXTS[0], TEXTS[2], "Bo Chen, Porto, 42 red tags.", TEXTS[0].replace("Ana", "Eva")]
    records = [Record(id=f"g{i}", schema_id="order", tier="medium", prompt=p,
                      expected_output={"name": "x", "city": "y", "amount": 1, "tags": []}, file="-", line=i + 1)
               for i, p in enumerate(prompts)]
    fmt = PromptFormat(schema="fields")
    base = dict(mode="constrained", dtype="float32", progress=False, batch_size=4, grammar_strict=True)

    def ungrounded_leaves(result) -> tuple[int, int]:
        parsed = bad = 0
        for row, rec in zip(result.rows, records):
            if row["status"] != "ok":
                continue
            obj = json.loads(row["output"])
            jsonschema.validate(obj, SCHEMA)
            parsed += 1
            text = rec.prompt
            bad += sum(1 for v in _leaves(obj) if json.dumps(v, ensure_ascii=False).strip('"') not in
                       json.dumps(text, ensure_ascii=False))
        return parsed, bad

    grounded = evaluate_records(model, tok, records, schemas, fmt, DecodeConfig(grounded=True, **base),
                                max_new_tokens=120)
    parsed, bad = ungrounded_leaves(grounded)
    assert parsed >= 3 and bad == 0
    assert grounded.stats["grounding_s"] > 0
    # The same weights under the grammar alone invent values: the rule is what keeps them out.
    free = evaluate_records(model, tok, records, schemas, fmt, DecodeConfig(**base), max_new_tokens=120)
    assert ungrounded_leaves(free)[1] > 0


def test_grounded_needs_the_continuous_engine(tok):
    from scaling.decode import generate_batched
    from scaling.decode.grounded import grounded_cursors

    arch = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=len(tok), tie_word_embeddings=True)
    model = build_model(ModelSpec(key="tiny", source="random", tokenizer={"kind": "bpe"}, arch=arch),
                        tokenizer=tok, seed=0)
    cursors = grounded_cursors(["a b"], VocabTrie([b"a", b"b"]))
    with pytest.raises(ValueError, match="decode.engine=continuous"):
        generate_batched(model, tok, ["a b"], 4, DecodeConfig(engine="hf", progress=False), groundings=cursors)


def test_tables_name_the_grounded_decoder():
    from scaling.results import decode_label

    assert decode_label("constrained", {"decode": {"grammar_strict": True}}) == "constrained (strict)"
    assert decode_label("constrained", {"decode": {"grammar_strict": True, "grounded": True}}) == \
        "constrained (strict, grounded)"
    assert decode_label("greedy", {"decode": {"grammar_strict": True, "grounded": False}}) == "greedy"


def test_ungrounded_values_are_the_leaves_the_prompt_does_not_hold():
    from scaling.decode.grounded import ungrounded_values

    prompt = 'Ticket 77 from "Bo"\nin Lyon, tags: Urgent.'
    answer = {"id": 77, "who": '"Bo"', "city": "Lyon", "tags": ["urgent", "Urgent"], "open": True, "n": 7.5}
    assert ungrounded_values(answer, prompt) == ["tags[0]", "n"]


def test_the_committed_seeds_invent_values_in_60_wrong_answers_and_the_grounded_run_in_2(edgejson_dir):
    import importlib.util
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("ungrounded_answers", repo / "bench/ungrounded_answers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    test = str(edgejson_dir / "v3" / "test.jsonl")
    seeds = [bench.count(repo / f"outputs/reference/edgejson_v3_depth/smol135_gguf-s{s}", test) for s in range(3)]
    # The count: 60 of the 145 wrong answers that parse hold a value not in the prompt.
    assert sum(r["wrong_parsed_ungrounded"] for r in seeds) == 60
    assert sum(r["wrong_parsed"] for r in seeds) == 145
    strict = bench.count(repo / "outputs/reference/edgejson_v3_grounded/exclude-smol135_gguf-s0", test)
    grounded = bench.count(repo / "outputs/reference/edgejson_v3_grounded/grounded-exclude-smol135_gguf-s0", test)
    assert strict["wrong_parsed_ungrounded"] == 22
    # Only the rows where grammar and prompt left no token (decoded under the grammar alone) remain.
    assert grounded["wrong_parsed_ungrounded"] <= 2

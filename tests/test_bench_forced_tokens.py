"""``bench/forced_tokens.py``: its replay counts what the grammar fixes, on SmolLM2's real tokenizer."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "tags"], "additionalProperties": False}


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "bench"))
    spec = importlib.util.spec_from_file_location("forced_tokens", REPO / "bench" / "forced_tokens.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer(smol_tokenizer):
    return smol_tokenizer


def _replay(bench, tokenizer, text: str) -> dict:
    import xgrammar as xgr

    from scaling.decode.grammar import SchemaGrammars

    grammar = SchemaGrammars(tokenizer, len(tokenizer), compact=True, strict=True).get("s", SCHEMA)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return bench.replay(xgr.GrammarMatcher(grammar), ids, xgr.allocate_token_bitmask(1, len(tokenizer)),
                        [tokenizer.decode([i]) for i in ids])


def test_the_replay_counts_the_text_the_grammar_fixes(bench, tokenizer):
    text = '{"name":"Ada","tags":["x","y"]}'
    res = _replay(bench, tokenizer, text)
    assert not res["rejected"] and res["chars"] == len(text)
    # '{"name":"' and 'tags":[' are the only text the strict grammar allows at their places (the
    # count starts at token boundaries: a token '","' that closes the value spans the choice).
    assert res["forced_chars"] >= len('{"name":"') + len('tags":[')
    assert 0 < res["forced_chars"] < len(text) and res["forced"] <= res["tokens"]


def test_an_answer_outside_the_grammar_stops_the_count_where_it_leaves(bench, tokenizer):
    res = _replay(bench, tokenizer, '{"nom":"Ada"}')
    assert res["rejected"] and res["tokens"] < len(tokenizer('{"nom":"Ada"}', add_special_tokens=False)["input_ids"])

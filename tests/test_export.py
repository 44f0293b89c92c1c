"""``python -m scaling.export``: a finished job -> an immutable, versioned model folder that loads
back (transformers and llama.cpp) to the source weights' answers, and the ladder of versions.

The rung is a tiny Llama (width 32) with SmolLM2's real tokenizer, a depth rung (2 of 3
blocks), fine-tuned a few steps on synthetic data with the strict grammar: llama.cpp's converter
knows that tokenizer (the tiny rungs' own BPE it does not, see test_deploy.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from scaling.deploy.tools import llama_cpp_version
from scaling.export.card import limits
from scaling.export.ladder import default_name, parse_version, version_key
from scaling.results import read_json, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]

needs_llama_cpp = pytest.mark.skipif(
    llama_cpp_version() is None,
    reason="llama-cpp-python (the `deploy` extra) is not installed: `pip install -e '.[deploy]'` or `make install`")

TRAIN = ["model=tiny_s", "model.tokenizer={kind:gguf}", "model.arch.hidden_size=32", "model.arch.intermediate_size=64",
         "model.arch.num_attention_heads=2", "model.arch.num_key_value_heads=2",
         # a depth rung: 2 of 3 blocks, chosen by Block Influence; the export rebuilds the recorded ones
         "model.arch.num_hidden_layers=3", "model.depth={keep:2,n_examples:8}", "debug=fast", "data.synth.n_train=64",
         "data.synth.n_test=16", "decode=constrained", "decode.grammar_strict=true", "decode.max_new_tokens=24",
         # fp32 decoding, so an F32 GGUF can be held to the job's answers token for token
         "decode.dtype=float32",
         "eval.limit=4", "logger=none", "threads=1", "sweep_name=exp"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, run_scaling):
    root = tmp_path_factory.mktemp("export")
    run_scaling("scaling.train", TRAIN, root, timeout=900)
    job_dir = root / "runs" / "exp" / "tiny_s-full-constrained-s0"
    assert read_json(job_dir / "results.json")["status"] == "completed"
    return {"root": root, "dir": job_dir, "models": root / "models"}


@pytest.fixture(scope="module")
def exported(job, run_scaling):
    if llama_cpp_version() is None:
        pytest.skip("llama-cpp-python (the `deploy` extra) is not installed")
    proc = run_scaling("scaling.export", [str(job["dir"]), "--version", "0.1.0", "--out", str(job["models"]),
                                          "--gguf", "f32,f16,q8_0,q4_k_m", "--threads", "1", "--quiet"],
                       job["root"], timeout=900)
    folder = job["models"] / "nlm-2m-synthetic" / "v0.1.0"
    assert f"exported {folder}" in proc.stdout
    return folder


def _records(job):
    from scaling.export.source import JobSource

    source = JobSource.load(job["dir"])
    data = source.load_data()
    return source, data, source.evaluated_records(data)


# --- the version folder ---------------------------------------------------------------------------


@needs_llama_cpp
def test_version_folder_is_complete_checksummed_and_read_only(exported, job):
    names = {p.name for p in exported.iterdir()}
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "README.md", "export.json", "SHA256SUMS", "nlm-2m-synthetic-v0.1.0-F32.gguf",
                 "nlm-2m-synthetic-v0.1.0-F16.gguf", "nlm-2m-synthetic-v0.1.0-Q8_0.gguf",
                 "nlm-2m-synthetic-v0.1.0-Q4_K_M.gguf"):
        assert name in names, name
    sums = dict(reversed(line.split("  ", 1)) for line in (exported / "SHA256SUMS").read_text().splitlines())
    files = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files
    assert all(sha256_file(exported / rel) == sha for rel, sha in sums.items())
    assert all(not (p.stat().st_mode & 0o222) for p in exported.rglob("*") if p.is_file())

    manifest = read_json(exported / "export.json")
    results = read_json(job["dir"] / "results.json")
    assert manifest["version"] == "0.1.0" and manifest["source"]["config_hash"] == results["config_hash"]
    cache = Path(results["config"]["train_cache"]) / results["train_hash"]
    assert manifest["source"]["weights"] == str(cache.resolve() / "model.safetensors")
    assert manifest["source"]["train_hash"] == results["train_hash"]
    assert manifest["checks"]["logits_max_abs_diff"] == 0.0
    assert manifest["checks"]["answers"] == {"n": 2, "identical": 2, "differing_ids": []}
    # The depth rung is rebuilt with the blocks the job kept (not measured again).
    config = json.loads((exported / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and manifest["model"]["depth"]["kept"] == results["model"]["depth"]["kept"]
    gen = json.loads((exported / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["do_sample"] is False  # <|im_end|>, the EOS training appended


@needs_llama_cpp
def test_card_is_computed_from_the_job(exported, job):
    results = read_json(job["dir"] / "results.json")
    text = (exported / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n", 2)[1])
    assert header["license"] == "apache-2.0"  # random init: the project's own license
    assert "base_model" not in header
    overall = header["model-index"][0]["results"][0]
    assert overall["dataset"]["config"] == "all"
    exact = next(m for m in overall["metrics"] if m["type"] == "json_exact")
    assert exact["value"] == round(100 * results["metrics"]["overall"]["json_exact"], 2)
    lim = limits(results["metrics"])
    for entry in lim["by_tier"]["fails"]:
        assert entry["name"] in text.split("## Limits", 1)[1].split("##", 1)[0]
    for sha in results["data"]["files"].values():
        assert sha in text
    assert "python -m scaling.train model=tiny_s" in text  # the job's own overrides reproduce it
    assert f"depth rung: 2 of 3 blocks kept (block_influence): {results['model']['depth']['kept']}" in text
    assert "python -m scaling.export" in text and "--version 0.1.0" in text


@needs_llama_cpp
def test_hf_folder_loads_back_to_the_source_weights_and_answers(exported, job):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scaling.data.prompts import format_prompt
    from scaling.evaluate import evaluate_records

    source, data, records = _records(job)
    results = source.results
    tok = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    # The source weights, read independently of the export: the train cache's safetensors.
    state = load_file(str(Path(results["config"]["train_cache"]) / results["train_hash"] / "model.safetensors"))
    ref = AutoModelForCausalLM.from_config(model.config).eval()
    ref.load_state_dict(state, strict=False)
    ref.tie_weights()
    fmt = source.data_spec().prompt_format
    ids = torch.tensor([tok(format_prompt(records[0].prompt, data.schemas[records[0].schema_id].schema, fmt),
                            add_special_tokens=False).input_ids])
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    run = evaluate_records(model, tok, records, data.schemas, fmt, source.decode_config(),
                           max_new_tokens=source.max_new_tokens, cap_ratio=source.cap_ratio)
    assert [r["output"] for r in run.rows] == [source.reference_outputs()[r.id] for r in records]


@needs_llama_cpp
def test_gguf_files_load_and_f32_answers_as_the_source_weights(exported, job):
    from dataclasses import replace

    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.deploy.tools import gguf_summary

    source, data, records = _records(job)
    fmt = source.data_spec().prompt_format
    decode = replace(source.decode_config(), progress=False)
    tok = source.tokenizer(data)
    reference = source.reference_outputs()
    manifest = read_json(exported / "export.json")
    for qtype, g in manifest["gguf"].items():
        exact = qtype == "f32"
        run = evaluate_gguf(exported / g["file"], records, data.schemas, fmt, tok, decode, source.max_new_tokens,
                            config=LlamaCppConfig(threads=1, kv_f32=exact, progress=False), reference=reference,
                            cap_ratio=source.cap_ratio)
        same = run.stats["identical_to_reference"]
        assert same["n_compared"] == len(records) and run.metrics["overall"]["n"] == len(records)
        if exact:  # F32 arithmetic: the source weights' greedy answers, token for token
            assert same["differing_ids"] == []
        meta = gguf_summary(exported / g["file"])["metadata"]
        assert meta["tokenizer.ggml.eos_token_id"] == 2 and meta["tokenizer.ggml.pre"] == "smollm"
    # Width 32 is no multiple of 256: Q4_K_M falls back per tensor, and the manifest says so.
    assert manifest["gguf"]["q4_k_m"]["fallbacks"] and "fall" in manifest["gguf"]["q4_k_m"]["note"]
    assert manifest["gguf"]["q8_0"]["fallbacks"] == {}


# --- versions and the ladder ----------------------------------------------------------------------


@needs_llama_cpp
def test_published_version_is_immutable_and_a_new_version_joins_the_ladder(exported, job, run_scaling):
    sums = (exported / "SHA256SUMS").read_text()
    again = run_scaling("scaling.export", [str(job["dir"]), "--version", "0.1.0", "--out", str(job["models"]),
                                           "--gguf", "none", "--quiet"], job["root"], check=False)
    assert again.returncode == 2
    assert "is published and immutable" in again.stderr and "--version 0.1.1" in again.stderr
    assert "Traceback" not in again.stderr
    assert (exported / "SHA256SUMS").read_text() == sums
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no staging left behind

    run_scaling("scaling.export", [str(job["dir"]), "--version", "v0.2.0", "--out", str(job["models"]),
                                   "--gguf", "none", "--check-examples", "0", "--quiet"], job["root"])
    ladder = (job["models"] / "LADDER.md").read_text()
    assert "| [nlm-2m-synthetic](nlm-2m-synthetic/v0.1.0/README.md) | 0.1.0 |" in ladder
    assert "| [nlm-2m-synthetic](nlm-2m-synthetic/v0.2.0/README.md) | 0.2.0 |" in ladder
    entries = read_json(job["models"] / "ladder.json")["models"]
    assert [(e["name"], e["version"]) for e in entries] == [("nlm-2m-synthetic", "0.1.0"), ("nlm-2m-synthetic", "0.2.0")]
    assert entries[1]["gguf"] == {} and entries[0]["gguf"]["q8_0"]["bytes"] > 0
    # The ladder is a function of the version folders: regenerating it changes nothing.
    run_scaling("scaling.export", ["--ladder", "--out", str(job["models"])], job["root"])
    assert (job["models"] / "LADDER.md").read_text() == ladder


@needs_llama_cpp
def test_deploy_cli_measures_an_export(exported, job, run_scaling, tmp_path):
    proc = run_scaling("scaling.deploy", [str(exported), "--gguf", "q8_0", "--limit", "2", "--threads", "1",
                                          "--out", str(tmp_path / "m"), "--quiet"], job["root"])
    assert "| Q8_0" not in proc.stdout and "nlm-2m-synthetic-v0.1.0-Q8_0.gguf" in proc.stdout
    record = read_json(tmp_path / "m" / "nlm-2m-synthetic-v0.1.0-Q8_0" / "results.json")
    assert record["stats"]["n"] == 2 and record["stats"]["identical_to_reference"]["n_compared"] == 2
    assert record["gguf_sha256"] == sha256_file(exported / "nlm-2m-synthetic-v0.1.0-Q8_0.gguf")
    assert (tmp_path / "m" / "measurements.md").read_text().count("| nlm-2m-synthetic") == 1


def test_export_errors_name_what_to_do(job, run_scaling, tmp_path):
    def export(*args):
        return run_scaling("scaling.export", [*args, "--out", str(tmp_path / "models"), "--gguf", "none", "--quiet"],
                           job["root"], check=False)

    bad = export(str(job["dir"]), "--version", "1.0")
    assert bad.returncode == 2 and "semantic version" in bad.stderr
    missing = export(str(tmp_path / "nowhere"), "--version", "1.0.0")
    assert missing.returncode == 2 and "no results.json" in missing.stderr

    # A job whose weights are gone: the message says where it looked and what to pass.
    moved = tmp_path / "job"
    moved.mkdir()
    results = read_json(job["dir"] / "results.json")
    results["config"]["train_cache"] = str(tmp_path / "gone")
    (moved / "results.json").write_text(json.dumps(results))
    gone = export(str(moved), "--version", "1.0.0")
    assert gone.returncode == 2 and "--weights" in gone.stderr and "Traceback" not in gone.stderr

    results["status"] = "failed"
    (moved / "results.json").write_text(json.dumps(results))
    failed = export(str(moved), "--version", "1.0.0")
    assert failed.returncode == 2 and "only a completed job" in failed.stderr


# --- pure parts ------------------------------------------------------------------------------------


def test_versions_are_semantic_and_ordered():
    assert parse_version("v1.2.3") == "1.2.3" and parse_version("1.0.0-rc.1") == "1.0.0-rc.1"
    for bad in ("1.0", "01.0.0", "1.0.0.0", "latest"):
        with pytest.raises(ValueError, match="semantic version"):
            parse_version(bad)
    order = ["0.9.0", "1.0.0-rc.1", "1.0.0-rc.2", "1.0.0", "1.0.1", "1.10.0"]
    assert sorted(reversed(order), key=version_key) == order
    assert default_name("MLM", 134_515_008, "edgejson") == "mlm-135m-edgejson"


def test_limits_follow_the_interval_rule():
    def m(exact, lo, hi, n=10, compliance=1.0):
        return {"n": n, "json_exact": exact, "schema_compliance": compliance, "ci": {"json_exact": [lo, hi]}}

    metrics = {"by_tier": {"simple": m(0.9, 0.8, 1.0), "complex": m(0.2, 0.04, 0.36, n=25)},
               "by_schema": {"a": m(0.0, 0.0, 0.0, n=2, compliance=0.5), "b": m(0.4, 0.1, 0.7), "c": m(1.0, 1.0, 1.0)}}
    lim = limits(metrics, 0.5, schema_ids=["a", "b", "c", "d"])
    # The bound is Wilson's upper end, whatever interval was recorded: 5 of 25 stays below 50%
    # (39.1%), but 0 of 2 could still be 65.8%, so schema a is "below", not "fails" (a recorded
    # bootstrap's [0, 0] said it failed).
    assert [e["name"] for e in lim["by_tier"]["fails"]] == ["complex"] and lim["by_tier"]["below"] == []
    assert lim["by_tier"]["fails"][0]["upper"] == pytest.approx(0.3913, abs=1e-4)
    assert lim["by_schema"]["fails"] == []
    assert [e["name"] for e in lim["by_schema"]["below"]] == ["a", "b"]
    assert lim["by_schema"]["invalid_outputs"] == [{"name": "a", "n": 2, "n_invalid": 1}]
    assert lim["not_measured"] == ["d"]


def test_gitignore_keeps_weights_out_and_lets_cards_and_the_ladder_in():
    version = "outputs/models/mlm-135m-edgejson/v1.0.0"
    tracked = ["outputs/models/LADDER.md", "outputs/models/ladder.json", f"{version}/README.md",
               f"{version}/export.json", f"{version}/SHA256SUMS", f"{version}/measured/q8_0.predictions.jsonl"]
    ignored = [f"{version}/model.safetensors", f"{version}/mlm-135m-edgejson-v1.0.0-Q8_0.gguf",
               f"{version}/tokenizer.json", "outputs/models/mlm-135m-edgejson/.v1.0.0.staging-x/README.md"]
    for path in tracked + ignored:
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT)
        if proc.returncode == 128:
            pytest.skip("not a git checkout")
        assert (proc.returncode == 0) == (path in ignored), path

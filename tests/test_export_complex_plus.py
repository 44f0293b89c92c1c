"""Export of a job that carries complex+ (:mod:`scaling.complex_plus`): the card and the ladder show
it beside the test split, and ``--measure`` scores the deployed file on it through llama.cpp,
pooled as the job's own complex+ was.

The rung is a tiny Llama (width 32) with SmolLM2's real tokenizer, trained a few steps on real
EdgeJSON v3 and scored on its first 12 test examples (3 of them complex) and on 3 of
``v3_extra/test_complex.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.complex_plus import COMPLEX_PLUS, extra_part, pool_decoded
from scaling.deploy.tools import llama_cpp_version
from scaling.results import COMPLEX_PLUS_FILE, read_json

REPO = Path(__file__).resolve().parents[1]
GROUNDED = REPO / "outputs" / "reference" / "edgejson_v3_grounded"
RUN = GROUNDED / "exclude-smol135_gguf-s0"
EXTRA = GROUNDED / "exclude-smol135_gguf-s0-complex_plus"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- pooling another decoder's answers (pure, on a committed run) --------------------------------


def test_another_decoders_answers_pool_as_the_run_pooled_its_own(edgejson_dir):
    results = read_json(RUN / "results.json")
    # The run's own answers, given as another decoder's, give back the run's complex+ exactly.
    pooled = pool_decoded(RUN, results, _rows(RUN / "predictions.jsonl"), _rows(EXTRA / "predictions.jsonl"),
                          "same answers", edgejson_dir)
    assert pooled.block == results["metrics"][COMPLEX_PLUS]
    assert [r["id"] for r in pooled.rows] == [r["id"] for r in _rows(RUN / COMPLEX_PLUS_FILE)]

    records, reference = extra_part(RUN, results, edgejson_dir)
    extra = _rows(EXTRA / "predictions.jsonl")
    assert [r.id for r in records] == [r["id"] for r in extra] and len(records) == 120
    assert all(r.tier == "complex" for r in records)
    assert reference == {r["id"]: r["output"] for r in extra}

    # Another decoder that gets one more extra answer right: one more exact answer in the pool.
    wrong = next(r for r in extra if not r["json_exact"])
    rec = next(r for r in records if r.id == wrong["id"])
    gold = rec.expected_output if isinstance(rec.expected_output, str) else json.dumps(rec.expected_output)
    fixed = [{**r, "output": gold} if r["id"] == wrong["id"] else r for r in extra]
    better = pool_decoded(RUN, results, _rows(RUN / "predictions.jsonl"), fixed, "one fixed", edgejson_dir)
    n = results["metrics"][COMPLEX_PLUS]["n"]
    assert round(better.block["json_exact"] * n) == round(results["metrics"][COMPLEX_PLUS]["json_exact"] * n) + 1


# --- a tiny job exported and measured -------------------------------------------------------------

needs_llama_cpp = pytest.mark.skipif(
    llama_cpp_version() is None,
    reason="llama-cpp-python (the `deploy` extra) is not installed: `pip install -e '.[deploy]'` or `make install`")

TINY = ["model=tiny_s", "model.tokenizer={kind:gguf}", "model.arch.hidden_size=32", "model.arch.intermediate_size=64",
        "model.arch.num_attention_heads=2", "model.arch.num_key_value_heads=2", "model.arch.num_hidden_layers=2",
        "debug=fast", "data=edgejson_v3", "decode=constrained", "decode.grammar_strict=true",
        "decode.max_new_tokens=12", "decode.dtype=float32", "logger=none", "threads=1"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, run_scaling, edgejson_dir):
    if llama_cpp_version() is None:
        pytest.skip("llama-cpp-python (the `deploy` extra) is not installed")
    root = tmp_path_factory.mktemp("export_cp")
    run_scaling("scaling.train", [*TINY, f"data.root={edgejson_dir}", "eval.limit=12", "sweep_name=cp"], root,
                timeout=900)
    job_dir = root / "runs" / "cp" / "tiny_s-full-constrained-s0"
    run_scaling("scaling.evaluate", [f"from_job={job_dir}", f"data.test_file={edgejson_dir}/v3_extra/test_complex.jsonl",
                                     "eval.limit=3", "sweep_name=cp_complex", "logger=none", "threads=1"], root,
                timeout=900)
    extra_dir = root / "runs" / "cp_complex" / "tiny_s-full-constrained-s0"
    run_scaling("scaling.complex_plus", [str(job_dir), str(extra_dir), "--data", str(edgejson_dir)], root)
    models = root / "models"
    proc = run_scaling("scaling.export", [str(job_dir), "--version", "0.1.0", "--out", str(models), "--gguf",
                                          "f16,q8_0", "--measure", "--measure-gguf", "q8_0", "--threads", "1",
                                          "--check-examples", "0", "--quiet"], root, timeout=900)
    folder = models / "nlm-2m-edgejson" / "v0.1.0"
    assert f"exported {folder}" in proc.stdout
    return {"root": root, "dir": job_dir, "extra": extra_dir, "models": models, "folder": folder}


@needs_llama_cpp
def test_the_deployed_file_is_measured_on_complex_plus(job):
    folder = job["folder"]
    manifest = read_json(folder / "export.json")
    results = read_json(job["dir"] / "results.json")
    assert manifest["metrics"][COMPLEX_PLUS] == results["metrics"][COMPLEX_PLUS]
    # --measure-gguf: only Q8_0 was measured; complex+ defaults to it.
    assert set(manifest["measured"]) == {"q8_0"} and set(manifest["gguf"]) == {"f16", "q8_0"}
    measured = manifest["measured"]["q8_0"][COMPLEX_PLUS]
    assert measured["metrics"]["n"] == results["metrics"][COMPLEX_PLUS]["n"] == 3 + 3
    assert measured["metrics"]["parts"]["test"]["n"] == 3 and measured["metrics"]["parts"]["extra"]["n"] == 3
    assert measured["extra_stats"]["n"] == 3 and measured["extra_stats"]["identical_to_reference"]["n_compared"] == 3
    rows = _rows(folder / measured["predictions"])
    test_rows = {r["id"]: r for r in _rows(folder / manifest["measured"]["q8_0"]["predictions"])}
    # The pooled test part is the file's own complex answers to the test split, not the job's.
    for row in rows[:3]:
        assert row["part"] == "test" and row["output"] == test_rows[row["id"]]["output"]
    extra_ids = [r["id"] for r in _rows(job["extra"] / "predictions.jsonl")]
    assert [r["id"] for r in rows[3:]] == extra_ids and {r["part"] for r in rows[3:]} == {"extra"}
    assert manifest["reproduce"][1].startswith("python -m scaling.evaluate from_job=")
    assert "python -m scaling.complex_plus" in manifest["reproduce"][2]
    assert "--measure --measure-gguf q8_0 --measure-complex-plus q8_0" in manifest["reproduce"][-1]


@needs_llama_cpp
def test_the_card_and_the_ladder_show_complex_plus(job):
    text = (job["folder"] / "README.md").read_text()
    results = read_json(job["dir"] / "results.json")
    plus = results["metrics"][COMPLEX_PLUS]
    assert f"| complex+ | {plus['n']} | {100 * plus['json_exact']:.1f} [" in text
    assert "complex+ through llama.cpp" in text and "| Q8_0 | 6 |" in text
    ladder = (job["models"] / "LADDER.md").read_text()
    assert f"(n={plus['n']})" in ladder and ", complex+ " in ladder
    entry = read_json(job["models"] / "ladder.json")["models"][0]
    assert entry["complex_plus"]["n"] == 6 and len(entry["complex_plus"]["json_exact_ci"]) == 2


def test_complex_plus_needs_a_measured_file(job, run_scaling, tmp_path):
    bad = run_scaling("scaling.export", [str(job["dir"]), "--version", "0.2.0", "--out", str(tmp_path), "--gguf",
                                         "q8_0", "--measure", "--measure-complex-plus", "f16", "--quiet"],
                      job["root"], check=False)
    assert bad.returncode == 2 and "--measure-complex-plus f16" in bad.stderr and "Traceback" not in bad.stderr

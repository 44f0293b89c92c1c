"""complex+: the committed grounded run's complex tier on all 145 complex test examples (its 25 of
v3's test split and the 120 of ``v3_extra/test_complex.jsonl``), equal to a direct recomputation from
the two committed runs' predictions; what pooling refuses; rescoring and export keep it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scaling.complex_plus import (COMPLEX_PLUS, ComplexPlusError, combine, main, tier_block,
                                  COMPLEX_PLUS_TIER)
from scaling.rescore import main as rescore_main
from scaling.rescore import rescore_run
from scaling.results import COMPLEX_PLUS_FILE, export_reference
from scaling.stats import bootstrap_ci, wilson_interval

REPO = Path(__file__).resolve().parents[1]
GROUNDED = REPO / "outputs" / "reference" / "edgejson_v3_grounded"
RUN = GROUNDED / "exclude-smol135_gguf-s0"
EXTRA = GROUNDED / "exclude-smol135_gguf-s0-complex_plus"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def committed_block() -> dict:
    return json.loads((RUN / "results.json").read_text())["metrics"][COMPLEX_PLUS]


def test_the_committed_run_carries_complex_plus_equal_to_a_direct_recomputation():
    block = committed_block()
    pooled = [r for r in rows(RUN / "predictions.jsonl") if r["tier"] == "complex"] + rows(EXTRA / "predictions.jsonl")
    assert len(pooled) == block["n"] == 145
    assert (block["parts"]["test"]["n"], block["parts"]["extra"]["n"]) == (25, 120)
    exact = sum(r["json_exact"] for r in pooled)
    assert exact == 7  # 4 of the 25, 3 of the 120
    assert block["json_exact"] == pytest.approx(exact / 145)
    assert block["ci"]["json_exact"] == pytest.approx(list(wilson_interval(exact, 145)))
    f1 = [r["field_f1"] for r in pooled]
    assert block["field_f1"] == pytest.approx(np.mean(f1))
    # The same bootstrap as every other F1 interval of the project (1000 draws, seed 0).
    assert block["ci"]["field_f1"] == pytest.approx(list(bootstrap_ci(f1, n_boot=1000, seed=0)))
    compliant = sum(r["schema_compliance"] for r in pooled)
    assert block["schema_compliance"] == pytest.approx(compliant / 145)
    assert block["ci"]["schema_compliance"] == pytest.approx(list(wilson_interval(compliant, 145)))
    # The answers beside it are the same 145, in the same order.
    saved = rows(RUN / COMPLEX_PLUS_FILE)
    assert [r["id"] for r in saved] == [r["id"] for r in pooled]
    assert [r["output"] for r in saved] == [r["output"] for r in pooled]
    assert {r["part"] for r in saved[:25]} == {"test"} and {r["part"] for r in saved[25:]} == {"extra"}
    assert "prompt" not in saved[0] and "expected_output" not in saved[0]
    # The headline stays the 158's.
    metrics = json.loads((RUN / "results.json").read_text())["metrics"]
    assert metrics["overall"]["n"] == 158 and metrics["by_tier"]["complex"]["n"] == 25
    assert tier_block(metrics, COMPLEX_PLUS_TIER)["n"] == 145


def test_pooling_the_committed_pair_again_gives_the_committed_block(edgejson_dir):
    pooled = combine(RUN, EXTRA, edgejson_dir)
    assert pooled.block == committed_block()
    assert pooled.rows == rows(RUN / COMPLEX_PLUS_FILE)
    assert pooled.summary().startswith("n=145: JSONExact 4.8% [2.4, 9.6]")


@pytest.fixture
def pair(tmp_path) -> tuple[Path, Path]:
    """The committed pair copied, the 158 run without its complex+."""
    run, extra = tmp_path / "run", tmp_path / "extra"
    shutil.copytree(RUN, run)
    shutil.copytree(EXTRA, extra)
    (run / COMPLEX_PLUS_FILE).unlink()
    results = json.loads((run / "results.json").read_text())
    del results["metrics"][COMPLEX_PLUS]
    (run / "results.json").write_text(json.dumps(results, indent=2))
    return run, extra


def test_the_command_writes_complex_plus_into_the_run(pair, edgejson_dir, capsys):
    run, extra = pair
    assert main([str(run), str(extra), "--data", str(edgejson_dir)]) == 0
    out = capsys.readouterr().out
    assert "n=145: JSONExact 4.8% [2.4, 9.6]" in out and "complex_plus.jsonl" in out
    written = json.loads((run / "results.json").read_text())
    assert written["metrics"][COMPLEX_PLUS] == committed_block()
    assert (run / COMPLEX_PLUS_FILE).read_text() == (RUN / COMPLEX_PLUS_FILE).read_text()


def _edit_results(run: Path, **changes) -> None:
    results = json.loads((run / "results.json").read_text())
    results.update(changes)
    (run / "results.json").write_text(json.dumps(results))


def test_another_trained_model_is_refused_naming_the_field(pair, edgejson_dir, capsys):
    run, extra = pair
    _edit_results(extra, train_hash="0123456789abcdef")
    assert main([str(run), str(extra), "--data", str(edgejson_dir)]) == 2
    err = capsys.readouterr().err
    assert f"{extra / 'results.json'}: field 'train_hash'" in err and "another trained model" in err
    assert not (run / COMPLEX_PLUS_FILE).exists()


def test_an_extra_run_with_other_tiers_or_the_same_ids_is_refused(pair, edgejson_dir):
    run, extra = pair
    lines = (extra / "predictions.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    medium = {**first, "tier": "medium"}
    (extra / "predictions.jsonl").write_text("\n".join([json.dumps(medium), *lines[1:]]) + "\n")
    with pytest.raises(ComplexPlusError, match=r"predictions.jsonl:1: field 'tier': 'medium'"):
        combine(run, extra, edgejson_dir)
    own = next(r for r in rows(run / "predictions.jsonl") if r["tier"] == "complex")
    (extra / "predictions.jsonl").write_text("\n".join([*lines[:2], json.dumps({**first, "id": own["id"]})]) + "\n")
    with pytest.raises(ComplexPlusError, match=r"predictions.jsonl:3: field 'id': .* is also an answer of"):
        combine(run, extra, edgejson_dir)


def test_saved_scores_that_are_not_todays_are_refused(pair, edgejson_dir):
    run, extra = pair
    data = rows(extra / "predictions.jsonl")
    data[4]["field_f1"] = 0.999
    (extra / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    with pytest.raises(ComplexPlusError, match=r"predictions.jsonl:5: field 'field_f1': .*python -m scaling.rescore"):
        combine(run, extra, edgejson_dir)


def test_rescore_checks_and_rewrites_complex_plus(tmp_path, edgejson_dir, capsys):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    assert rescore_run(run, edgejson_dir).changes == []
    saved = rows(run / COMPLEX_PLUS_FILE)
    saved[30]["field_f1"] = 0.5  # an extra answer scored by an older scorer
    (run / COMPLEX_PLUS_FILE).write_text("".join(json.dumps(r) + "\n" for r in saved))
    results = json.loads((run / "results.json").read_text())
    results["metrics"][COMPLEX_PLUS]["field_f1"] += 0.01
    (run / "results.json").write_text(json.dumps(results, indent=2))
    assert rescore_main([str(run), "--check", "--data", str(edgejson_dir)]) == 1
    out = capsys.readouterr().out
    assert "complex_plus.field_f1" in out and f"1 of 145 {COMPLEX_PLUS_FILE} rows rescored" in out
    assert rescore_main([str(run), "--data", str(edgejson_dir)]) == 0
    assert json.loads((run / "results.json").read_text())["metrics"] == \
        json.loads((RUN / "results.json").read_text())["metrics"]
    assert (run / COMPLEX_PLUS_FILE).read_text() == (RUN / COMPLEX_PLUS_FILE).read_text()


def test_rescore_refuses_complex_plus_answers_that_are_not_the_runs(tmp_path, edgejson_dir):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    saved = rows(run / COMPLEX_PLUS_FILE)
    saved[0]["output"] = "{}"
    (run / COMPLEX_PLUS_FILE).write_text("".join(json.dumps(r) + "\n" for r in saved))
    with pytest.raises(ComplexPlusError, match=r"complex_plus.jsonl:1: field 'output'"):
        rescore_run(run, edgejson_dir)


def test_export_reference_keeps_complex_plus(tmp_path):
    out = export_reference(RUN, tmp_path / "exported")
    assert (out / COMPLEX_PLUS_FILE).read_text() == (RUN / COMPLEX_PLUS_FILE).read_text()
    assert json.loads((out / "results.json").read_text())["metrics"][COMPLEX_PLUS] == committed_block()

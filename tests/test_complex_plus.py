"""complex+: the committed grounded run's complex tier on all 145 complex test examples (its 25 of
v3's test split and the 120 of ``v3_extra/test_complex.jsonl``), equal to a direct recomputation from
the two committed runs' predictions; what pooling refuses; rescoring and export keep it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from scaling.complex_plus import COMPLEX_PLUS, COMPLEX_PLUS_TIER, ComplexPlusError, combine, main, tier_block
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


# --- compare, fit and failures show complex+ where the runs carry it ------------------------------

SPEED = REPO / "outputs" / "reference" / "edgejson_v3_speed" / "smol135_gguf-s0"


def _without_complex_plus(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    (dest / COMPLEX_PLUS_FILE).unlink()
    results = json.loads((dest / "results.json").read_text())
    del results["metrics"][COMPLEX_PLUS]
    (dest / "results.json").write_text(json.dumps(results, indent=2))
    return dest


@pytest.fixture
def improved(tmp_path) -> Path:
    """The committed run copied with one more extra complex answer exact (only its scores: compare
    reads nothing else)."""
    run = tmp_path / "improved"
    shutil.copytree(RUN, run)
    saved = rows(run / COMPLEX_PLUS_FILE)
    k = next(i for i, r in enumerate(saved) if r["part"] == "extra" and not r["json_exact"])
    saved[k]["json_exact"] = True
    (run / COMPLEX_PLUS_FILE).write_text("".join(json.dumps(r) + "\n" for r in saved))
    results = json.loads((run / "results.json").read_text())
    results["metrics"][COMPLEX_PLUS]["json_exact"] = 8 / 145
    (run / "results.json").write_text(json.dumps(results, indent=2))
    return run


def test_compare_adds_a_complex_plus_row_after_the_tiers_when_both_runs_carry_it(tmp_path, improved):
    from scaling.compare import build, markdown
    from scaling.compare.report import to_json

    run = improved
    cmp = build([RUN, run], ["base", "improved"], n_boot=500)
    pair = cmp.pairs[0]
    assert [r.group for r in pair.by_kind("overall", "tier")] == ["overall", "simple", "medium", "complex",
                                                                 COMPLEX_PLUS_TIER]
    row = pair.row(COMPLEX_PLUS_TIER)
    exact = row.metrics["json_exact"]
    assert row.n == 145 and (exact.a, exact.b) == pytest.approx((7 / 145, 8 / 145))
    assert exact.delta == pytest.approx(1 / 145)
    assert (row.mcnemar.gained, row.mcnemar.lost) == (1, 0)
    assert pair.row("complex").metrics["json_exact"].delta == 0  # the 158 are the same answers
    text = markdown(cmp)
    assert "| complex+ | 145 | 4.8 [2.4, 9.6] → 5.5 [2.8, 10.5] |" in text and "**complex+** (n = 145)" in text
    assert any(r["group"] == COMPLEX_PLUS_TIER and r["n"] == 145 for r in to_json(cmp)["pairs"][0]["rows"])
    # Its bootstrap is its own: every other row is what the same runs give without complex+.
    bare = build([_without_complex_plus(RUN, tmp_path / "a"), _without_complex_plus(run, tmp_path / "b")],
                 ["base", "improved"], n_boot=500)
    assert [r for r in pair.rows if r.group != COMPLEX_PLUS_TIER] == list(bare.pairs[0].rows)
    assert "complex+" not in markdown(bare)


def test_compare_has_no_complex_plus_row_when_a_run_lacks_it_and_says_which(tmp_path):
    from scaling.compare import build, markdown

    cmp = build([SPEED, RUN], ["all629", "exclude19"], n_boot=200)
    assert all(r.group != COMPLEX_PLUS_TIER for r in cmp.pairs[0].rows)
    assert "No complex+ row: all629 carries none (python -m scaling.complex_plus)." in markdown(cmp)


def _fit(folder: Path):
    from scaling.fit.analysis import analyse
    from scaling.fit.collect import collect
    from scaling.fit.config import Settings

    def quiet(msg: str) -> None:
        pass

    return analyse(collect([folder], log=quiet), Settings.from_config({"n_boot": 300, "n_boot_fit": 0}), log=quiet)


def test_fit_scores_complex_plus_as_a_tier_and_skips_the_run_of_its_extra_part(tmp_path):
    import shutil

    from scaling.fit.report import render_report
    from scaling.fit.tables import headline_table, tier_scores_table

    # The run and the run of its extra part on their own (the committed folder also holds the
    # same weights under another decoder, a series of its own).
    sweep = tmp_path / GROUNDED.name
    for run in (RUN, EXTRA):
        shutil.copytree(run, sweep / run.name)
    analysis = _fit(sweep)
    col = analysis.collection
    assert [j.path.parent for j in col.jobs] == [sweep / RUN.name]
    assert [s.path.parent for s in col.skipped] == [sweep / EXTRA.name] and "extra part" in col.skipped[0].reason
    assert analysis.settings.tiers == ("overall", "simple", "medium", "complex", COMPLEX_PLUS_TIER)
    (series,) = analysis.scores
    exact = series.row("json_exact", COMPLEX_PLUS_TIER)
    assert exact.point[0] == pytest.approx(7 / 145)
    assert (exact.lo[0], exact.hi[0]) == pytest.approx(wilson_interval(7, 145))
    f1 = series.row("field_f1", COMPLEX_PLUS_TIER)
    assert f1.point[0] == pytest.approx(committed_block()["field_f1"]) and f1.lo[0] < f1.point[0] < f1.hi[0]
    assert series.row("json_exact", "complex").point[0] == pytest.approx(4 / 25)  # the 25 stay the 25
    assert analysis.ceilings[COMPLEX_PLUS_TIER].n == 145
    head = headline_table(analysis, series).to_markdown()
    assert "| complex+ | smol135_gguf | 135M | 1 | 4.8 [2.4, 9.6] |" in head
    assert any(r[-1] != "-" for r in tier_scores_table(analysis).rows)
    assert "complex+ (n = 145)" in render_report(analysis, "grounded")


def test_fit_says_when_complex_plus_rests_on_fewer_seeds_than_the_tiers(tmp_path):
    from scaling.fit.report import render_report
    from scaling.fit.tables import headline_table

    sweep = tmp_path / "sweep"
    shutil.copytree(RUN, sweep / "s0")
    other = _without_complex_plus(RUN, sweep / "s1")  # a second seed, its complex+ never scored
    results = json.loads((other / "results.json").read_text())
    results["seed"] = results["config"]["seed"] = 1
    (other / "results.json").write_text(json.dumps(results, indent=2))
    analysis = _fit(sweep)
    (series,) = analysis.scores
    assert series.models[0].seeds == (0, 1)
    head = headline_table(analysis, series).to_markdown()
    assert "| overall | smol135_gguf | 135M | 2 |" in head
    assert "| complex+ | smol135_gguf | 135M | 1 of 2 | 4.8" in head
    assert "jobs without it: s1" in render_report(analysis, "seeds")


def test_fit_without_complex_plus_keeps_its_tiers(tmp_path):
    from scaling.fit.report import render_report

    _without_complex_plus(RUN, tmp_path / "sweep" / "run")
    analysis = _fit(tmp_path / "sweep")
    assert analysis.settings.tiers == ("overall", "simple", "medium", "complex")
    assert "complex+" not in render_report(analysis, "bare")


def test_failures_reports_complex_plus_beside_the_tiers(tmp_path, edgejson_dir, capsys, monkeypatch):
    from scaling.failures import analyse_run, format_markdown, format_table
    from scaling.failures import main as failures_main

    r = analyse_run(RUN, edgejson_dir)
    assert r.statuses[COMPLEX_PLUS_TIER] == {"ok": 62, "syntax_error": 83}
    assert r.exact[COMPLEX_PLUS_TIER][0] == pytest.approx(7 / 145)
    assert r.exact[COMPLEX_PLUS_TIER][1] == pytest.approx(wilson_interval(7, 145))
    assert r.leaves.n_answers[COMPLEX_PLUS_TIER] == 145
    # Its leaves are the 25's and the extra run's, counted again from the records.
    monkeypatch.setenv("EDGEJSON_DIR", str(edgejson_dir))  # --data means <version>/test.jsonl to failures
    extra = analyse_run(EXTRA)
    for group in ("copyable", "not copyable"):
        for outcome in ("correct", "wrong", "missing"):
            assert r.leaves.counts.get((COMPLEX_PLUS_TIER, group, outcome), 0) == \
                r.leaves.counts.get(("complex", group, outcome), 0) + extra.leaves.counts.get(("complex", group, outcome), 0)
    assert r.prompt["by_tier"][COMPLEX_PLUS_TIER]["ceiling"]["n"] == 145
    # Drawn apart: the other tiers are what the run gives without complex+.
    bare = analyse_run(_without_complex_plus(RUN, tmp_path / "bare"), edgejson_dir)
    assert COMPLEX_PLUS_TIER not in bare.statuses
    assert {k: v for k, v in r.leaves.intervals.items() if k[0] != COMPLEX_PLUS_TIER} == bare.leaves.intervals
    assert "complex+" not in format_markdown([bare])
    assert "- complex+: ok 62, syntax_error 83" in format_markdown([r])
    table = format_table([r], COMPLEX_PLUS_TIER)
    assert f"| {RUN.name} | smol135_gguf | all | 0 | v3, 100% | 145 (" in table and "| 4.8 [2.4, 9.6] |" in table
    assert failures_main([str(RUN), "--table", COMPLEX_PLUS_TIER, "--data", str(edgejson_dir)]) == 0
    assert "complex+ tier:" in capsys.readouterr().out


def test_fit_data_axis_carries_complex_plus(tmp_path):
    # The committed run twice, one labelled as trained on half the records: a data-axis curve.
    shutil.copytree(RUN, tmp_path / "sweep" / "all")
    half = tmp_path / "sweep" / "half"
    shutil.copytree(RUN, half)
    results = json.loads((half / "results.json").read_text())
    results["config"]["data"]["train_fraction"] = 0.5
    (half / "results.json").write_text(json.dumps(results))
    (curve,) = _fit(tmp_path / "sweep").data
    assert curve.fractions == (0.5, 1.0)
    assert curve.point[("json_exact", COMPLEX_PLUS_TIER)] == pytest.approx([7 / 145, 7 / 145])
    assert curve.lo[("json_exact", COMPLEX_PLUS_TIER)] == pytest.approx([wilson_interval(7, 145)[0]] * 2)
    assert curve.steps[("json_exact", COMPLEX_PLUS_TIER)][0].delta == 0

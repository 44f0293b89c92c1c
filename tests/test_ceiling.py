"""scaling.ceiling: the ceiling and the answers' kinds, through scaling.score and scaling.failures.

The reader's committed predictions (the most probable reading of every prompt) are scored like
a model's and reproduce each tier's ceiling table; the committed 30-block runs' complex answers
are sorted by kind."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from scaling.ceiling import answer_kind, list_lengths, main, read_test, reader_predictions
from scaling.data import load_schemas, read_records
from scaling.failures import analyse_run, format_markdown
from scaling.score import read_predictions, score_predictions

REPO = Path(__file__).resolve().parents[1]
READER = REPO / "outputs" / "reference" / "edgejson_v3_ceiling"
DEPTH = REPO / "outputs" / "reference" / "edgejson_v3_depth"


@pytest.fixture(scope="module")
def v3(edgejson_dir):
    schemas = load_schemas(edgejson_dir / "schemas")
    records = read_records(edgejson_dir / "v3" / "test.jsonl", schemas)
    return schemas, records, read_test(records, schemas)


@pytest.mark.parametrize("folder, test_file, table", [
    # tier: (n, JSONExact of the reader, only one answer fits, gold contradicts, expected ceiling)
    ("v3_test", "v3/test.jsonl", {"simple": (76, 72, 72, 4, 0.947), "medium": (57, 53, 49, 1, 0.935),
                                  "complex": (25, 17, 4, 0, 0.702), "overall": (158, 142, 125, 5, 0.904)}),
    ("v3_extra_test_complex", "v3_extra/test_complex.jsonl", {"complex": (120, 84, 27, 0, 0.716),
                                                              "overall": (120, 84, 27, 0, 0.716)}),
])
def test_the_readers_committed_predictions_score_the_ceiling_table(edgejson_dir, folder, test_file, table):
    schemas = load_schemas(edgejson_dir / "schemas")
    records = read_records(edgejson_dir / test_file, schemas)
    preds = read_predictions(READER / folder / "predictions.jsonl")
    # what is committed is what the code writes today
    assert [{"id": p["id"], "output": p["output"]} for p in preds] == reader_predictions(read_test(records, schemas))
    rows, agg = score_predictions(preds, records, schemas)
    committed = json.loads((READER / folder / "score.txt").read_text().splitlines()[-1])
    assert committed == json.loads(json.dumps(agg))
    for tier, (n, exact, determined, contradicts, ceiling) in table.items():
        m = agg["overall"] if tier == "overall" else agg["by_tier"][tier]
        c = m["ceiling"]
        assert (m["n"], round(m["json_exact"] * n), c["determined"], c["prompts"]["contradicts"]) == (
            n, exact, determined, contradicts)
        assert c["expected"] == pytest.approx(ceiling, abs=5e-4) and c["ci"][0] < c["expected"] < c["ci"][1]
        assert c["reader_exact"] == pytest.approx(exact / n)
        kinds = m["answers"]["kinds"]
        # the reader's answers all render to their prompts: none is inconsistent or unparsed
        assert kinds["exact"] == exact and kinds["gold_contradicts"] == contradicts
        assert kinds["other_reading"] == n - exact - contradicts and kinds["inconsistent"] == kinds["unparsed"] == 0
    assert all(r["answer_kind"] in ("exact", "other_reading", "gold_contradicts") for r in rows)


def test_every_answer_is_sorted_by_kind(v3):
    _, records, readings = v3
    by_id = {r.id: r for r in records}
    ambiguous = next(r for r in readings.values() if r.check.kind == "renders" and not r.reader_exact)
    gold = by_id[ambiguous.id].expected_output
    assert answer_kind(ambiguous, gold, True, "ok") == ("exact", None)
    kind, detail = answer_kind(ambiguous, ambiguous.readings.best, False, "ok")
    assert kind == "other_reading" and 0 < detail["posterior"] and detail["gold_posterior"] == ambiguous.gold_posterior
    # a list that loses its last item is no reading of the prompt
    lst = next(k for k, v in gold.items() if isinstance(v, list) and len(v) > 1)
    dropped = {**copy.deepcopy(gold), lst: gold[lst][:-1]}
    kind, detail = answer_kind(ambiguous, dropped, False, "ok")
    assert kind == "inconsistent" and detail["lost"][0] == {"path": lst, "gold": len(gold[lst]),
                                                           "answer": len(gold[lst]) - 1}
    assert detail["leaves_differ"] > 0 and detail["why"]
    assert answer_kind(ambiguous, None, False, "syntax_error", {"looped": True}) == ("unparsed", {"cause": "loop"})
    assert answer_kind(ambiguous, None, False, "syntax_error", {"capped": True}) == ("unparsed", {"cause": "cap"})
    assert answer_kind(ambiguous, None, False, "json_not_found", {"hit_eos": True}) == ("unparsed", {"cause": "eos"})
    assert answer_kind(ambiguous, None, False, "syntax_error") == ("unparsed", {"cause": "loop_or_cap"})
    contradicting = readings["edgejson_simple_config_qwen_017"]
    kind, detail = answer_kind(contradicting, contradicting.readings.best, False, "ok")
    assert kind == "gold_contradicts" and detail["line"] == 4 and "Language: Own" in detail["message"]


def test_list_lengths_count_every_list_of_the_gold():
    gold = {"a": [{"b": [1, 2]}, {"b": [3]}], "c": ["x"]}
    assert list_lengths(gold, {"a": [{"b": [1]}], "c": ["x", "y"]}) == [
        {"path": "a", "gold": 2, "answer": 1}, {"path": "a[0].b", "gold": 2, "answer": 1},
        {"path": "a[1].b", "gold": 1, "answer": None}, {"path": "c", "gold": 1, "answer": 2}]


def test_the_share_of_the_ceiling_is_drawn_on_the_metrics_resamples(v3):
    schemas, records, readings = v3
    # records whose ceiling is 1: JSONExact as a share of it is JSONExact, interval and all
    sure = [r for r in records if readings[r.id].ceiling == 1.0][:40]
    preds = [{"id": r.id, "output": json.dumps(r.expected_output) if i % 3 else "{"} for i, r in enumerate(sure)]
    _, agg = score_predictions(preds, sure, schemas, n_boot=200, seed=3)
    c = agg["overall"]["ceiling"]
    assert c["expected"] == 1.0 and c["json_exact_of_ceiling"] == pytest.approx(agg["overall"]["json_exact"])
    assert c["share_ci"] == pytest.approx(agg["overall"]["ci"]["json_exact"])
    assert agg["overall"]["answers"]["kinds"]["unparsed"] == len(sure[::3])


def test_prompts_that_are_not_the_template_have_no_ceiling(tmp_path):
    schemas_dir = tmp_path / "schemas" / "simple"
    schemas_dir.mkdir(parents=True)
    (schemas_dir / "mini.json").write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"}}}))
    data = tmp_path / "v1" / "test.jsonl"
    data.parent.mkdir()
    rows = [{"id": f"r{i}", "schema_id": "mini", "prompt": f"Name is n{i}", "expected_output": {"name": f"n{i}"}}
            for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schemas = load_schemas(tmp_path / "schemas")
    preds = [{"id": "r0", "output": '{"name": "n0"}'}, {"id": "r1", "output": '{"name": "x"}'},
             {"id": "r2", "output": "no"}]
    scored, agg = score_predictions(preds, read_records(data, schemas), schemas, n_boot=50)
    assert [r["answer_kind"] for r in scored] == ["exact", "unread", "unparsed"]
    assert all(r["ceiling"] is None and r["prompt_check"] == "not_template" for r in scored)
    c = agg["overall"]["ceiling"]
    assert (c["n"], c["expected"], c["ci"], c["prompts"]["not_template"]) == (0, None, None, 3)


def test_the_committed_30_block_runs_complex_answers_by_kind(edgejson_dir, monkeypatch):
    monkeypatch.setenv("EDGEJSON_DIR", str(edgejson_dir))
    runs = [analyse_run(DEPTH / f"smol135_gguf-s{s}") for s in range(3)]
    kinds = [r.prompt["by_tier"]["complex"]["answers"] for r in runs]
    total = {k: sum(a["kinds"][k] for a in kinds) for k in kinds[0]["kinds"]}
    assert total == {"exact": 11, "gold_contradicts": 0, "unparsed": 23, "other_reading": 0, "inconsistent": 41,
                     "unread": 0}
    # of the gold's lists in the 41 inconsistent answers, 115 of 171 come out with another length
    assert sum(a["lists"]["wrong_length"] for a in kinds) == 115 and sum(a["lists"]["compared"] for a in kinds) == 171
    c = runs[0].prompt["by_tier"]["complex"]["ceiling"]
    assert c["expected"] == pytest.approx(0.702, abs=5e-4) and c["json_exact_of_ceiling"] == pytest.approx(
        0.16 / c["expected"])
    text = format_markdown(runs[:1])
    assert "| complex | 25 | 16.0 | 70.2 [" in text and "What the prompt determines" in text


def test_cli(edgejson_dir, tmp_path, capsys):
    out = tmp_path / "reader.jsonl"
    assert main([str(edgejson_dir / "v3" / "test.jsonl"), "--reader", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| complex | 25 | 0 | 0 | 0 | 4 | 17 (68.0%) | 70.2 |" in text
    assert "edgejson_tag_list_qwen_004 (contradicts): line 3:" in text
    assert len(out.read_text().splitlines()) == 158
    assert main([str(edgejson_dir / "v3" / "test.jsonl"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert set(first) >= {"id", "prompt_check", "readings", "ceiling", "gold_posterior", "lists"}
    assert main([str(tmp_path / "nope.jsonl"), "--schemas", str(edgejson_dir / "schemas")]) == 2
    assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ in the fit


def _rescored(tmp_path: Path, edgejson_dir: Path, names: list[str]) -> Path:
    """Copies of committed depth runs, their metrics re-scored by today's scorer."""
    schemas = load_schemas(edgejson_dir / "schemas")
    records = read_records(edgejson_dir / "v3" / "test.jsonl", schemas)
    sweep = tmp_path / "sweep"
    for name in names:
        run = sweep / name
        run.mkdir(parents=True)
        for f in ("results.json", "predictions.jsonl"):
            (run / f).write_bytes((DEPTH / name / f).read_bytes())
        results = json.loads((run / "results.json").read_text())
        results["metrics"] = score_predictions(read_predictions(run / "predictions.jsonl"), records, schemas,
                                               n_boot=200)[1]
        (run / "results.json").write_text(json.dumps(results))
    return sweep


def _scored_before_the_ceiling(src: Path, dest: Path) -> Path:
    """A copy of a run as the scorer wrote it before scaling.ceiling: no ceiling, no answers."""
    dest.mkdir(parents=True)
    (dest / "predictions.jsonl").write_bytes((src / "predictions.jsonl").read_bytes())
    results = json.loads((src / "results.json").read_text())
    for m in [results["metrics"]["overall"], *results["metrics"]["by_tier"].values(),
              *results["metrics"]["by_schema"].values()]:
        m.pop("ceiling"), m.pop("answers")
    (dest / "results.json").write_text(json.dumps(results))
    return dest


def test_the_fit_draws_each_tiers_ceiling_and_states_the_rungs_against_it(tmp_path, edgejson_dir):
    from scaling.fit import analyse, collect
    from scaling.fit.config import Settings
    from scaling.fit.figures import figure_score_vs_params
    from scaling.fit.report import render_report
    from scaling.fit.tables import ceiling_table

    sweep = _rescored(tmp_path, edgejson_dir, ["smol135_gguf_d22-s0", "smol135_gguf-s0"])
    # a job scored before the ceiling existed: it is named in a note, the others still give it
    _scored_before_the_ceiling(DEPTH / "smol135_gguf_d8-s0", sweep / "old")
    analysis = analyse(collect([sweep], log=lambda m: None), Settings(n_boot=200), log=lambda m: None)
    c = analysis.ceilings["complex"]
    assert (c.n, c.determined, c.contradicts, c.jobs) == (25, 4, 0, 2)
    assert c.expected == pytest.approx(0.702, abs=5e-4) and c.ci[0] < c.expected < c.ci[1]
    assert set(analysis.ceilings) == {"overall", "simple", "medium", "complex"}
    assert analysis.ceiling_notes == ("1 of 3 jobs carry no ceiling (scored before scaling.ceiling: re-score their "
                                      "predictions to add it)",)
    fig = figure_score_vs_params(analysis)
    complex_ax = next(ax for ax in fig.axes if ax.get_title() == "complex")
    assert [tuple(line.get_ydata()) for line in complex_ax.get_lines() if line.get_linestyle() == "-."] == [
        (c.expected, c.expected)]
    assert any(p.get_extents().height > 0 for p in complex_ax.patches)  # the interval's band
    table = ceiling_table(analysis, next(s for s in analysis.scores if s.kind == "measured"))
    row = dict(zip(table.header, next(r for r in table.rows if r[0] == "complex")))
    assert row["ceiling (%)"] == "70.2 [" + row["ceiling (%)"].split("[")[1]
    assert row["smol135_gguf: JSONExact (%, share of the ceiling)"].endswith("(23%)")
    report = render_report(analysis, "t")
    assert ("- complex: 16.0% [" in report and "of a ~70.2% [" in report and "(23% of it); of its 21 wrong answers: "
            "6 unparsed, 15 inconsistent with the prompt (14 lose or add list items), 0 another reading of it."
            in report)
    # jobs scored on test sets with other ceilings: no band for that tier, and a note says why
    other = json.loads((sweep / "smol135_gguf-s0" / "results.json").read_text())
    other["metrics"]["by_tier"]["complex"]["ceiling"]["expected"] = 0.5
    (sweep / "smol135_gguf-s0" / "results.json").write_text(json.dumps(other))
    analysis = analyse(collect([sweep], log=lambda m: None), Settings(n_boot=200), log=lambda m: None)
    assert "complex" not in analysis.ceilings and "simple" in analysis.ceilings
    assert any(n.startswith("complex: the jobs were scored on test sets with different ceilings (50.0%, 70.2%)")
               for n in analysis.ceiling_notes)


def test_compare_shows_each_run_against_the_ceiling(tmp_path, edgejson_dir):
    from scaling.compare.report import build, write

    sweep = _rescored(tmp_path, edgejson_dir, ["smol135_gguf_d22-s0", "smol135_gguf-s0"])
    cmp = build([sweep / "smol135_gguf_d22-s0", sweep / "smol135_gguf-s0"], labels=["d22", "d30"], n_boot=200)
    out = write(cmp, tmp_path / "cmp")
    report = out["report"].read_text()
    assert "### What the prompt determines" in report
    row = next(line for line in report.splitlines() if line.startswith("| d30 | complex |"))
    assert row.startswith("| d30 | complex | 25 | 16.0 | 70.2 [") and row.endswith("| 6 / 15 / 0 / 0 | 14 of 15 |")
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert doc["runs"][1]["prompt"]["complex"]["answers"]["kinds"]["inconsistent"] == 15
    # a run without the ceiling in its results is named, not silently dropped
    old = _scored_before_the_ceiling(DEPTH / "smol135_gguf_d22-s0", tmp_path / "old")
    cmp = build([old, sweep / "smol135_gguf-s0"], labels=["old", "d30"], n_boot=200)
    text = write(cmp, tmp_path / "cmp2")["report"].read_text()
    assert "No ceiling in the results of old (scored before scaling.ceiling" in text


def test_the_committed_depth_fit_states_each_tier_against_its_ceiling():
    fit = DEPTH / "fit"
    doc = json.loads((fit / "fit.json").read_text())
    assert doc["ceiling"]["complex"]["expected"] == pytest.approx(0.702, abs=5e-4)
    assert {t: c["jobs"] for t, c in doc["ceiling"].items()} == {t: 10 for t in ("overall", "simple", "medium",
                                                                                 "complex")}
    report = (fit / "report.md").read_text()
    assert "- complex: 14.7% [5.6, 33.1] of a ~70.2% [62.8, 77.9] ceiling (21% of it)" in report
    assert (fit / "tables" / "ceiling.md").is_file()


# --- data.exclude_contradicting: training without labels that contradict their prompt ------------

TAUGHT = {"edgejson_medical_record_qwen_006", "edgejson_medical_record_qwen_025",   # add "Status: abnormal"
          "edgejson_transaction_record_qwen_005", "edgejson_transaction_record_qwen_013"}   # flip the sign


def test_the_contradicting_training_records_are_the_ones_no_reading_gives(edgejson_dir):
    from scaling.data.readings import contradicting

    schemas = load_schemas(edgejson_dir / "schemas")
    train = read_records(edgejson_dir / "v3" / "train.jsonl", schemas)
    found = contradicting(train, schemas)
    assert len(found) == 19 and TAUGHT <= set(found)
    assert sum(i.startswith("edgejson_notification_qwen_") for i in found) == 6   # "Priority: normal" added
    assert "Status: abnormal" in found["edgejson_medical_record_qwen_006"].message
    test = read_records(edgejson_dir / "v3" / "test.jsonl", schemas)
    assert len(contradicting(test, schemas)) == 5   # the ceiling table's "gold contradicts the prompt"


def test_a_job_trains_without_the_contradicting_records_names_them_and_scores_every_test_record(
        tmp_path, edgejson_dir, run_scaling):
    from scaling.data.readings import contradicting
    from scaling.results import read_json

    # A small EdgeJSON root: 24 training records, 6 of them contradicting; 8 test records, 2 of them.
    schemas = load_schemas(edgejson_dir / "schemas")
    root = tmp_path / "edgejson"
    (root / "v3").mkdir(parents=True)
    (root / "schemas").symlink_to(edgejson_dir / "schemas")
    for split, n_bad, n in (("train", 6, 24), ("test", 2, 8)):
        lines = (edgejson_dir / "v3" / f"{split}.jsonl").read_text().splitlines()
        records = read_records(edgejson_dir / "v3" / f"{split}.jsonl", schemas)
        bad = contradicting(records, schemas)
        pick = [i for i, r in enumerate(records) if r.id in bad][:n_bad]
        pick += [i for i, r in enumerate(records) if r.id not in bad][: n - n_bad]
        (root / "v3" / f"{split}.jsonl").write_text("".join(lines[i] + "\n" for i in sorted(pick)))
    planted = set(contradicting(read_records(root / "v3" / "train.jsonl", schemas), schemas))
    test_bad = set(contradicting(read_records(root / "v3" / "test.jsonl", schemas), schemas))
    assert len(planted) == 6 and len(test_bad) == 2

    run_scaling("scaling.train", ["debug=fast", "data=edgejson_v3", f"data.root={root}", "data.exclude_contradicting=true",
                                  "model=tiny_xs",
                                  "decode.max_new_tokens=24", "sweep_name=grounded", "logger=none"], tmp_path)
    (job,) = [p for p in (tmp_path / "runs" / "grounded").iterdir() if p.is_dir()]
    r = read_json(job / "results.json")
    assert r["status"] == "completed", r.get("error")
    excluded = r["data"]["excluded"]
    assert set(excluded["ids"]) == planted and excluded["n"] == 6
    assert all(excluded["ids"][i] for i in planted)     # each with the line that differs
    assert r["data"]["n_train"] == r["train"]["n_examples"] == 24 - 6
    # the test file is scored as it is, its contradicting records included
    preds = [json.loads(x) for x in (job / "predictions.jsonl").read_text().splitlines()]
    assert r["data"]["n_eval"] == len(preds) == 8 and test_bad <= {p["id"] for p in preds}
    # off: the identity of the runs made before the option (their configs have no such key)
    from scaling.train import config_hash

    assert config_hash(r["config"]) == r["config_hash"]
    off = json.loads(json.dumps(r["config"]))
    off["data"]["exclude_contradicting"] = False
    before = json.loads(json.dumps(off))
    del before["data"]["exclude_contradicting"]
    assert config_hash(off) == config_hash(before) != r["config_hash"]

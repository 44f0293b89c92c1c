"""scaling.failures: leaf outcomes, copyability, per-schema tables and clear errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from scaling.failures import (
    FailuresError,
    Leaf,
    analyse_run,
    appears_in_prompt,
    format_markdown,
    format_table,
    leaf_outcomes,
    leaf_share_intervals,
    main,
    summarise_leaves,
)
from scaling.stats import wilson_interval

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "outputs" / "reference" / "edgejson_v3"


@pytest.mark.parametrize(("value", "prompt", "copyable"), [
    ("Project Delta", "Name: Project Delta\n", True),
    ("Vega", "Name: Project Delta\n", False),
    ("", "anything", False),
    (1234.5, "Total: 1,234.50 USD", True),
    (1234.5, "Total: 1234.5", True),
    (1234.5, "Total: 1234.6", False),
    (42, "Count: 42", True),
    (2000, "Budget: 2,000", True),
    (True, "Active: True", False),   # the model decides booleans and nulls: never "copied"
    (None, "null", False),
    ([], "[]", False),
])
def test_appears_in_prompt(value, prompt, copyable):
    assert appears_in_prompt(value, prompt) is copyable


def test_leaf_outcomes_score_every_reference_leaf_in_order():
    expected = {"name": "Ann", "total": 30, "items": [{"sku": "a1"}, {"sku": "b2"}]}
    prompt = "Customer Ann bought a1 and b2."
    answer = {"name": "Ann", "total": 31, "items": [{"sku": "a1"}]}
    leaves = leaf_outcomes(expected, answer, prompt)
    assert [(l.path, l.copyable, l.outcome) for l in leaves] == [
        ("name", True, "correct"), ("total", False, "wrong"),
        ("items[0].sku", True, "correct"), ("items[1].sku", True, "missing")]
    assert [l.position for l in leaves] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert all(l.outcome == "missing" for l in leaf_outcomes(expected, None, prompt))
    summary = summarise_leaves([("complex", leaves)])
    assert summary.rate("copy", "complex", "copyable") == (pytest.approx(2 / 3), 3)
    assert summary.rate("copy", "complex", "not copyable") == (0.0, 1)
    assert summary.rate("half", "complex", "first half") == (0.5, 2)
    assert summary.rate("half", "complex", "second half") == (0.5, 2)


def _answer(pattern: str) -> list[Leaf]:
    """Leaves of one answer from a pattern: one character per leaf, in answer order,
    ``c`` right and copyable, ``C`` right and not copyable, ``w``/``m`` wrong/missing."""
    n = len(pattern)
    return [Leaf(f"k{i}", ch.islower(), {"c": "correct", "w": "wrong", "m": "missing"}[ch.lower()],
                 i / (n - 1) if n > 1 else 0.0) for i, ch in enumerate(pattern)]


# Ten complex answers of unequal length, 49 of 77 leaves right, errors towards the end.
TEN = ["cccccccc", "ccccccww", "cccmmmmm", "cCcccccccccw", "cw", "ccccwwwm", "cccccc", "ccccmmmmmm",
       "cCcwcwcCmm", "wwwwm"]


def test_leaf_intervals_contain_the_share_are_deterministic_and_widen_with_fewer_answers():
    rows = [("complex", _answer(p)) for p in TEN * 4]
    few = summarise_leaves([("complex", _answer(p)) for p in TEN])
    many = summarise_leaves(rows)
    for table, group in (("all", "all leaves"), ("copy", "copyable"), ("half", "first half"),
                         ("half", "second half")):
        rate, _ = many.rate(table, "complex", group)
        assert few.rate(table, "complex", group)[0] == pytest.approx(rate)  # same answers, repeated 4x
        for summary in (few, many):
            lo, hi = summary.ci("complex", group)
            assert lo <= rate <= hi and lo < hi
        width = lambda s: s.ci("complex", group)[1] - s.ci("complex", group)[0]  # noqa: E731
        assert width(few) > 1.5 * width(many)  # ~sqrt(4) = 2 times wider with a quarter of the answers
    assert many.rate("all", "complex", "all leaves") == (pytest.approx(49 / 77), 4 * 77)
    assert summarise_leaves(rows).intervals == many.intervals  # fixed seed: the same draws
    assert summarise_leaves(rows, seed=1).intervals != many.intervals
    assert many.n_answers == {"complex": 40} and few.n_answers == {"complex": 10}


def test_leaf_intervals_resample_answers_not_leaves():
    # One answer all right, one all wrong: 50% of 100 leaves. Redrawing answers can give
    # two right or two wrong answers, so the interval spans [0, 1]; a leaf-level bootstrap
    # would claim about [0.40, 0.60].
    rows = [("complex", _answer("c" * 50)), ("complex", _answer("w" * 50))]
    assert leaf_share_intervals(rows)[("complex", "all leaves")] == (0.0, 1.0)


def test_leaf_intervals_known_cases():
    # Every leaf right (or none): the bootstrap has nothing to resample; the interval is
    # Wilson's with the answers as the units, which says how far the truth may be.
    right = summarise_leaves([("simple", _answer("cccc")), ("simple", _answer("cC")), ("medium", _answer("ccc"))])
    for tier, answers in (("simple", 2), ("medium", 1)):
        assert right.ci(tier, "all leaves") == wilson_interval(answers, answers)
        assert right.ci(tier, "second half") == wilson_interval(answers, answers)
    assert right.ci("simple", "all leaves")[0] < 0.35
    assert right.ci("medium", "not copyable") is None  # no such leaf: no interval, shown as "—"
    wrong = summarise_leaves([("complex", _answer("wm")), ("complex", _answer("mmmm"))])
    assert wrong.ci("complex", "all leaves") == wilson_interval(0, 2)
    assert leaf_share_intervals([]) == {}
    # Tiers are resampled separately: a perfect tier keeps its own interval beside a noisy one.
    mixed = summarise_leaves([("simple", _answer("cc"))] * 5 + [("complex", _answer(p)) for p in TEN])
    assert mixed.ci("simple", "all leaves") == wilson_interval(5, 5)
    lo, hi = mixed.ci("complex", "all leaves")
    assert lo < 49 / 77 < hi


def _write_run(tmp_path: Path, rows: list[dict]) -> tuple[Path, Path]:
    data = tmp_path / "data"
    (data / "v3").mkdir(parents=True)
    recs = [
        {"id": "s1", "schema_id": "tag", "complexity": "simple", "prompt": "Tag: red",
         "expected_output": {"tag": "red"}},
        {"id": "c1", "schema_id": "org", "complexity": "complex", "prompt": "Org Acme, 12 staff",
         "expected_output": {"org": {"name": "Acme", "staff": 12}}},
    ]
    (data / "v3" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"status": "completed", "data": {"version": "v3"}}))
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run, data


def test_analyse_run_tables(tmp_path):
    run, data = _write_run(tmp_path, [
        {"id": "s1", "schema_id": "tag", "tier": "simple", "status": "ok", "output": '{"tag":"red"}',
         "json_exact": True, "field_f1": 1.0, "schema_compliance": True},
        {"id": "c1", "schema_id": "org", "tier": "complex", "status": "syntax_error",
         "output": '{"org":{"name":"Acme","staff":1', "json_exact": False, "field_f1": 0.0,
         "schema_compliance": False},
    ])
    r = analyse_run(run, data)
    assert r.n == 2 and r.statuses == {"simple": {"ok": 1}, "complex": {"syntax_error": 1}}
    assert [row[:3] for row in r.by_schema] == [("tag", "simple", 1), ("org", "complex", 1)]
    assert r.leaves.rate("copy", "complex", "copyable") == (0.0, 2)  # nothing parsed: both missing
    assert r.examples == [("c1", "syntax_error", '{"org":{"name":"Acme","staff":1')]
    text = format_markdown([r])
    assert "| org | complex | 1 | 0 | 0.000 | 0 |" in text and "- complex: syntax_error 1" in text


def test_bad_run_names_file_line_and_field(tmp_path, capsys):
    run, data = _write_run(tmp_path, [{"id": "zz", "tier": "simple", "status": "ok", "output": "{}"}])
    with pytest.raises(FailuresError, match=r"predictions.jsonl:1: field 'id': 'zz' is not in .*test.jsonl"):
        analyse_run(run, data)
    (run / "predictions.jsonl").write_text('{"id": "s1", "tier": "simple", "status": "ok"}\n')
    assert main([str(run), "--data", str(data)]) == 2
    assert "predictions.jsonl:1: field 'output' missing" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope: no such folder" in capsys.readouterr().err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


ROWS_OK = [
    {"id": "s1", "schema_id": "tag", "tier": "simple", "status": "ok", "output": '{"tag":"red"}',
     "json_exact": True, "field_f1": 1.0, "schema_compliance": True},
    {"id": "c1", "schema_id": "org", "tier": "complex", "status": "ok", "output": '{"org":{"name":"Acme","staff":12}}',
     "json_exact": True, "field_f1": 1.0, "schema_compliance": True},
]


def test_test_file_found_under_edgejson_dir_and_checked_against_its_sha256(tmp_path, monkeypatch, capsys):
    # Committed runs name the data as seen from the checkout that ran them ("../shared/edgejson/...").
    run, data = _write_run(tmp_path, ROWS_OK)
    test = data / "v3" / "test.jsonl"
    results = {"status": "completed", "data": {"version": "v3", "root": "../nowhere/edgejson",
                                               "files": {"../nowhere/edgejson/v3/test.jsonl": _sha(test)}}}
    (run / "results.json").write_text(json.dumps(results))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEJSON_DIR", raising=False)
    with pytest.raises(FailuresError,
                       match=r"test file \.\./nowhere/edgejson/v3/test.jsonl is not at .*set EDGEJSON_DIR"):
        analyse_run(run)
    monkeypatch.setenv("EDGEJSON_DIR", str(data))
    lo, hi = analyse_run(run).leaves.ci("complex", "all leaves")
    assert lo < 1.0 == hi  # every leaf right: Wilson's bound, not [1, 1]
    # Another file under the same name: refused, not scored against the wrong references.
    results["data"]["files"]["../nowhere/edgejson/v3/test.jsonl"] = "0" * 64
    (run / "results.json").write_text(json.dumps(results))
    assert main([str(run)]) == 2
    assert "sha256" in (err := capsys.readouterr().err) and "scored on another file" in err and "test.jsonl" in err
    assert main([str(run), "--data", str(data)]) == 2  # --data is checked too
    assert main([str(run), "--data", str(tmp_path / "nodata")]) == 2
    assert "nodata/v3/test.jsonl: no such file" in capsys.readouterr().err


def test_table_names_depth_seed_and_training_data_and_falls_back_to_predictions(tmp_path, capsys):
    run, data = _write_run(tmp_path, ROWS_OK)
    (run / "results.json").write_text(json.dumps({
        "status": "completed", "seed": 2, "data": {"version": "v3", "train_fraction": 0.25},
        "model": {"key": "smol135_gguf", "depth": {"kept": list(range(8)), "n_blocks": 30}},
        "finetune": {"method": "full"},
        "config": {"data": {"version": "v3", "train_version": "v2", "train_fraction": 0.25}}}))
    r = analyse_run(run, data)
    assert (r.info.model, r.info.blocks, r.info.seed, r.info.train) == ("smol135_gguf_d8", "8/30", 2, "v2, 25%")
    assert r.exact["complex"] == (1.0, wilson_interval(1, 1), "predictions")  # no metrics in results.json
    text = format_table([r], "complex")
    assert ("| run | smol135_gguf_d8 | 8/30 | 2 | v2, 25% | 1 (2) | 100.0 [20.7, 100.0] | "
            "100.0 [20.7, 100.0] |") in text
    assert "results.json records, else predictions.jsonl's, Wilson intervals" in text
    assert main([str(run), "--data", str(data), "--table", "simple", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tier"] == "simple" and doc["rows"][0]["share_right"]["first half"] == {
        "share": 1.0, "ci": list(wilson_interval(1, 1)), "leaves": 1}
    assert doc["rows"][0]["share_right"]["second half"] is None  # a one-leaf answer has no second half
    assert main([str(run), "--data", str(data), "--json"]) == 0
    (one,) = json.loads(capsys.readouterr().out)
    assert one["leaves"]["complex"]["share_right"]["all leaves"] == {"share": 1.0, "ci": list(wilson_interval(1, 1)),
                                                                      "leaves": 2}
    assert one["bootstrap"] == {"unit": "answer", "n_boot": 1000, "seed": 0, "level": 0.95}
    with pytest.raises(SystemExit):
        main([str(run), "--table", "hard"])


def test_table_on_the_committed_reference_runs(edgejson_dir, monkeypatch, capsys):
    # Prompt-free predictions: the prompts and references come from the data results.json names.
    monkeypatch.setenv("EDGEJSON_DIR", str(edgejson_dir))
    runs = sorted(p for p in REFERENCE.iterdir() if (p / "predictions.jsonl").is_file())
    assert len(runs) == 7
    assert main([*map(str, runs), "--table", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert main([*map(str, runs), "--table"]) == 0
    text = capsys.readouterr().out
    assert doc["tier"] == "complex" and [row["run"] for row in doc["rows"]] == [p.name for p in runs]
    for run, row in zip(runs, doc["rows"]):
        tier = json.loads((run / "results.json").read_text())["metrics"]["by_tier"]["complex"]
        assert row["answers"] == tier["n"] == 25 and row["seed"] == 0 and row["model"] == "smol135_gguf"
        # The share results.json recorded, with Wilson's interval (it recorded a bootstrap's).
        assert row["json_exact"] == {"value": tier["json_exact"],
                                     "ci": list(wilson_interval(tier["json_exact"] * 25, 25)), "ci_from": "results.json"}
        shares = row["share_right"]
        halves = shares["first half"]["leaves"] + shares["second half"]["leaves"]
        assert halves == shares["all leaves"]["leaves"] == row["leaves"]
        for d in shares.values():
            assert d["ci"][0] <= d["share"] <= d["ci"][1]
        ex = row["json_exact"]
        assert (f"| {run.name} | smol135_gguf | all | 0 | {row['train']} | 25 ({row['leaves']:,}) | "
                f"{100 * ex['value']:.1f} [{100 * ex['ci'][0]:.1f}, {100 * ex['ci'][1]:.1f}] | "
                f"{100 * shares['all leaves']['share']:.1f} [") in text
    trained = {row["run"]: row["train"] for row in doc["rows"]}
    assert trained["smol135_gguf-none-greedy"] == "—" and trained["smol135_gguf-full-greedy"] == "v3, 100%"

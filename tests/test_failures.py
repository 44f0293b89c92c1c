"""scaling.failures: leaf outcomes, copyability, per-schema tables and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.failures import (
    FailuresError,
    analyse_run,
    appears_in_prompt,
    format_markdown,
    leaf_outcomes,
    main,
    summarise_leaves,
)


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

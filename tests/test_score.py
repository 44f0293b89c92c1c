"""Tests for scaling.score: the CLI through subprocess on real EdgeJSON records, and
score_predictions in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.data import DataError, load_schemas, read_records
from scaling.metrics import JSON_NOT_FOUND, METRIC_KEYS, OK, SCHEMA_ERROR, SYNTAX_ERROR
from scaling.score import format_table, main, read_predictions, score_predictions
from scaling.stats import wilson_interval

EDGEJSON = Path(os.environ.get("EDGEJSON_DIR", Path(__file__).resolve().parents[2] / "shared" / "edgejson"))
TEST_FILE = EDGEJSON / "v3" / "test.jsonl"
SCHEMAS = EDGEJSON / "schemas"
SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(not TEST_FILE.is_file(), reason=f"no EdgeJSON at {EDGEJSON}")


def _raw_records() -> list[dict]:
    with open(TEST_FILE, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A 12-record test file: the first 4 records of each tier, read from the real split."""
    schemas = load_schemas(SCHEMAS)
    picked: dict[str, list[dict]] = {"simple": [], "medium": [], "complex": []}
    for rec in _raw_records():
        bucket = picked[schemas[rec["schema_id"]].tier]
        if len(bucket) < 4:
            bucket.append(rec)
    records = [r for tier in ("simple", "medium", "complex") for r in picked[tier]]
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path, records


def _write_predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _perfect(records: list[dict]) -> list[dict]:
    return [{"id": r["id"], "output": "```json\n" + json.dumps(r["expected_output"], indent=1) + "\n```"} for r in records]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", "scaling.score", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _main(capsys, *args: str) -> subprocess.CompletedProcess:
    """The CLI in-process (same main() the module runs), for the many error cases that
    would otherwise each pay an interpreter start."""
    rc = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["scaling.score", *args], rc, captured.out, captured.err)


def _assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") or "error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------- CLI


def test_cli_perfect_predictions_score_one(tmp_path, small_data):
    data, records = small_data
    preds = _write_predictions(tmp_path / "preds.jsonl", _perfect(records))
    proc = _run(str(preds), "--data", str(data), "--schemas", str(SCHEMAS), "--json", "--n-boot", "200")
    assert proc.returncode == 0, proc.stderr
    agg = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(agg) == ["overall", "by_tier", "by_schema"]
    overall = agg["overall"]
    assert overall["n"] == 12
    for key in METRIC_KEYS:
        assert overall[key] == 1.0
        # All right on 12: Wilson's interval (F1 too: the bootstrap of a constant collapses).
        assert overall["ci"][key] == list(wilson_interval(12, 12)) and overall["ci"][key][0] < 0.8
    assert overall["status_counts"] == {OK: 12}
    assert {t: m["n"] for t, m in agg["by_tier"].items()} == {"simple": 4, "medium": 4, "complex": 4}
    assert sum(m["n"] for m in agg["by_schema"].values()) == 12
    # the readable table precedes the JSON line
    assert "overall" in proc.stdout and "by schema" in proc.stdout and "complex" in proc.stdout


def test_cli_mixed_outputs_and_out_file(tmp_path, small_data):
    data, records = small_data
    preds = _perfect(records)
    preds[0]["output"] = "Sorry, I cannot extract that."
    preds[1]["output"] = preds[1]["output"][:20]  # truncated
    preds[2]["output"] = json.dumps({**records[2]["expected_output"], "unexpected": 1})
    path = _write_predictions(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "scores" / "score.json"
    proc = _run(str(path), "--data", str(data), "--schemas", str(SCHEMAS), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    agg = json.loads(proc.stdout.strip().splitlines()[-1])
    assert agg["overall"]["json_exact"] == pytest.approx(9 / 12)
    assert agg["overall"]["status_counts"] == {OK: 9, JSON_NOT_FOUND: 1, SYNTAX_ERROR: 1, SCHEMA_ERROR: 1}
    lo, hi = agg["overall"]["ci"]["json_exact"]
    assert lo < 9 / 12 < hi
    doc = json.loads(out.read_text())
    assert doc["overall"] == agg["overall"] and doc["by_schema"] == agg["by_schema"]
    assert [e["id"] for e in doc["examples"]] == [r["id"] for r in records]
    assert [e["status"] for e in doc["examples"][:3]] == [JSON_NOT_FOUND, SYNTAX_ERROR, SCHEMA_ERROR]
    assert doc["examples"][3]["parsed"] == records[3]["expected_output"]


def test_cli_defaults_schemas_next_to_data_and_checks_formats():
    # the whole real split, schemas found at <data>/../../schemas
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        preds = _write_predictions(Path(tmp) / "p.jsonl", _perfect(_raw_records()))
        plain = _run(str(preds), "--data", str(TEST_FILE), "--json", "--n-boot", "50")
        strict = _run(str(preds), "--data", str(TEST_FILE), "--json", "--n-boot", "50", "--check-formats")
    assert plain.returncode == 0 and strict.returncode == 0, plain.stderr + strict.stderr
    plain_agg = json.loads(plain.stdout.splitlines()[-1])
    strict_agg = json.loads(strict.stdout.splitlines()[-1])
    assert plain_agg["overall"]["n"] == 158
    assert plain_agg["overall"]["schema_compliance"] == 1.0
    # timezone-less date-times in the expected outputs fail strict RFC 3339
    assert strict_agg["overall"]["schema_compliance"] < 1.0
    assert strict_agg["overall"]["json_exact"] == 1.0


def test_cli_missing_ids_exit_2_and_name_them(tmp_path, small_data):
    data, records = small_data
    preds = _write_predictions(tmp_path / "preds.jsonl", _perfect(records)[:-2])
    proc = _run(str(preds), "--data", str(data), "--schemas", str(SCHEMAS))
    _assert_clean_error(proc, "2 data id(s) have no prediction", records[-1]["id"], records[-2]["id"], str(preds))
    assert proc.stdout == ""


def test_cli_extra_ids_exit_2_and_name_them(tmp_path, small_data):
    data, records = small_data
    rows = _perfect(records) + [{"id": "not_a_test_id", "output": "{}"}]
    proc = _run(str(_write_predictions(tmp_path / "p.jsonl", rows)), "--data", str(data), "--schemas", str(SCHEMAS))
    _assert_clean_error(proc, "not in the data", "not_a_test_id")


def test_cli_many_missing_ids_are_abbreviated(tmp_path, small_data, capsys):
    data, records = small_data
    proc = _main(capsys, str(_write_predictions(tmp_path / "p.jsonl", _perfect(records)[:1])), "--data", str(data),
                 "--schemas", str(SCHEMAS))
    _assert_clean_error(proc, "11 data id(s)", "and 6 more")


def test_cli_duplicate_ids_exit_2_with_lines(tmp_path, small_data, capsys):
    data, records = small_data
    rows = _perfect(records)
    rows.append(dict(rows[3]))
    proc = _main(capsys, str(_write_predictions(tmp_path / "p.jsonl", rows)), "--data", str(data), "--schemas", str(SCHEMAS))
    _assert_clean_error(proc, "duplicate", records[3]["id"], "lines 4 and 13")


@pytest.mark.parametrize(
    "line, needles",
    [
        ("{not json", [":2:", "invalid JSON"]),
        ('["id", "output"]', [":2:", "expected a JSON object, got array"]),
        ('{"output": "{}"}', [":2:", "field 'id'", "missing"]),
        ('{"id": "x"}', [":2:", "field 'output'", "missing"]),
        ('{"id": "x", "output": {"a": 1}}', [":2:", "field 'output'", "expected string, got object"]),
        ('{"id": 7, "output": ""}', [":2:", "field 'id'", "expected string, got number"]),
        ('{"id": "x", "id": "y", "output": ""}', [":2:", "duplicate key", "field 'id'"]),
        ('{"id": "x", "output": NaN}', [":2:", "NaN"]),
        ("", [":2:", "blank line"]),
    ],
)
def test_cli_malformed_prediction_line_names_file_line_field(tmp_path, small_data, capsys, line, needles):
    data, records = small_data
    path = tmp_path / "preds.jsonl"
    first = json.dumps(_perfect(records)[0])
    path.write_text(first + "\n" + line + "\n" + first + "\n", encoding="utf-8")
    _assert_clean_error(_main(capsys, str(path), "--data", str(data), "--schemas", str(SCHEMAS)), str(path), *needles)


def test_cli_malformed_line_through_subprocess(tmp_path, small_data):
    data, records = small_data
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps(_perfect(records)[0]) + "\n" + '{"id": "x", "output": 3}\n', encoding="utf-8")
    proc = _run(str(path), "--data", str(data), "--schemas", str(SCHEMAS))
    _assert_clean_error(proc, f"{path}:2: field 'output': expected string, got number")


def test_cli_file_level_errors(tmp_path, small_data, capsys):
    data, records = small_data
    preds = _write_predictions(tmp_path / "p.jsonl", _perfect(records))

    def _run(*args: str) -> subprocess.CompletedProcess:
        return _main(capsys, *args)

    _assert_clean_error(_run(str(tmp_path / "nope.jsonl"), "--data", str(data), "--schemas", str(SCHEMAS)), "not found")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    _assert_clean_error(_run(str(tmp_path / "empty.jsonl"), "--data", str(data), "--schemas", str(SCHEMAS)), "empty")
    (tmp_path / "bad.jsonl").write_bytes(b'{"id": "\xff", "output": ""}\n')
    _assert_clean_error(_run(str(tmp_path / "bad.jsonl"), "--data", str(data), "--schemas", str(SCHEMAS)), "UTF-8", ":1:")
    _assert_clean_error(_run(str(preds), "--data", str(data), "--schemas", str(tmp_path)), "schemas")
    _assert_clean_error(_run(str(preds), "--data", str(tmp_path / "missing.jsonl"), "--schemas", str(SCHEMAS)), "missing.jsonl")
    # a predictions file given as the data: a record field is missing
    _assert_clean_error(_run(str(preds), "--data", str(preds), "--schemas", str(SCHEMAS)), "field 'schema_id'")
    blocked = tmp_path / "file"
    blocked.write_text("x")
    _assert_clean_error(
        _run(str(preds), "--data", str(data), "--schemas", str(SCHEMAS), "--out", str(blocked / "out.json")),
        "cannot write",
    )
    with pytest.raises(SystemExit) as exc:  # argparse usage errors exit 2 too
        _run(str(preds), "--data", str(data), "--n-boot", "0")
    assert exc.value.code == 2 and "positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------------ in-process


def test_score_predictions_rows_and_aggregate(small_data):
    data, raw = small_data
    schemas = load_schemas(SCHEMAS)
    records = read_records(data, schemas)
    preds = list(reversed(_perfect(raw)))  # order of predictions does not matter
    preds[0] = {"id": preds[0]["id"], "output": "nothing", "schema_id": "ignored"}
    rows, agg = score_predictions(preds, records, schemas, n_boot=100, seed=1)
    assert [r["id"] for r in rows] == [r.id for r in records]
    assert set(rows[0]) >= {"id", "schema_id", "tier", "output", "status", "parsed", "error", "precision", "recall",
                            *METRIC_KEYS}
    assert rows[-1]["status"] == JSON_NOT_FOUND and rows[-1]["parsed"] is None
    assert [r["tier"] for r in rows] == [rec.tier for rec in records]
    assert agg["overall"]["n"] == 12 and agg["overall"]["json_exact"] == pytest.approx(11 / 12)
    assert agg["by_tier"]["complex"]["json_exact"] == pytest.approx(3 / 4)
    assert score_predictions(preds, records, schemas, n_boot=100, seed=1)[1] == agg
    table = format_table(agg)
    assert table.splitlines()[1].startswith("group") and "json_exact" in table
    # header (3), overall, "by tier", the tiers, "by schema", the schemas; then the answers by
    # kind: a blank line, its header, overall and each tier
    assert len(table.splitlines()) == 3 + 1 + 1 + 3 + 1 + len(agg["by_schema"]) + 2 + 1 + len(agg["by_tier"])


def test_score_predictions_errors_without_a_file(small_data):
    data, raw = small_data
    schemas = load_schemas(SCHEMAS)
    records = read_records(data, schemas)
    preds = _perfect(raw)
    with pytest.raises(DataError, match=r"field 'predictions\[2\]\.output': missing"):
        score_predictions([*preds[:2], {"id": "x"}], records, schemas)
    with pytest.raises(DataError, match="duplicate"):
        score_predictions([*preds, preds[0]], records, schemas, source="run/predictions.jsonl")
    with pytest.raises(DataError, match="no records"):
        score_predictions(preds, [], schemas)


def test_read_predictions_keeps_extra_fields_and_line_numbers(tmp_path):
    path = _write_predictions(tmp_path / "p.jsonl", [{"id": "a", "output": "", "status": "ok"}, {"id": "b", "output": "x"}])
    assert read_predictions(path) == [
        {"id": "a", "output": "", "status": "ok", "line": 1},
        {"id": "b", "output": "x", "line": 2},
    ]

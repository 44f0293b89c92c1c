"""scaling.results: the run folder, read in one place (RunFolder, the predictions reader, Results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.data.io import DataError
from scaling.errors import LocatedError
from scaling.results import (COMPLEX_PLUS_FILE, PREDICTIONS_FILE, RESULTS_FILE, RESULTS_VERSION, Results, RunFolder,
                             read_predictions, read_results_json, without_line)

REFERENCE = Path(__file__).resolve().parent.parent / "outputs" / "reference"
RUNS = sorted(p.parent for p in REFERENCE.rglob(RESULTS_FILE))


def test_every_committed_reference_run_loads_through_run_folder():
    assert len(RUNS) >= 31
    for path in RUNS:
        folder = RunFolder(path).check_dir()
        raw = json.loads((path / RESULTS_FILE).read_text(encoding="utf-8"))
        results = folder.results()
        assert results.to_json() == raw
        assert json.dumps(results.to_json()) == json.dumps(raw)  # key order kept too
        assert Results.from_json(results.to_json()).to_json() == raw
        rows = folder.predictions(unique_ids=True)
        assert rows and all(isinstance(r["id"], str) for r in rows)
        assert [r["line"] for r in rows] == list(range(1, len(rows) + 1))
        if "status" in raw:  # a job's record (the deployed GGUF files' folders hold stats and metrics only)
            assert results.completed and results.current and results.results_version == RESULTS_VERSION
            assert results.data is not None and results.data.files and results.hashes.config
            assert results.metrics["overall"]["n"] == len(rows)
        if folder.has_complex_plus(results):
            assert len(folder.complex_plus(unique_ids=True)) == results.metrics["complex_plus"]["n"]
    assert any(RunFolder(p).complex_plus_path.is_file() for p in RUNS)


def test_results_sections_are_typed_and_frozen():
    results = RunFolder(REFERENCE / "edgejson_v3_depth" / "smol135_gguf_d8-s0").results()
    assert results.status == "completed" and results.error is None
    assert isinstance(results.data.n_eval, int) and results.data.eval_split == "test"
    assert all(len(sha) == 64 for sha in results.data.files.values())
    assert results.train is not None and isinstance(results.train.steps, int)
    assert results.eval is not None and results.eval.n == results.data.n_eval
    assert isinstance(results.hashes.data, str) and isinstance(results.seed, int)
    with pytest.raises(TypeError):
        results.config["seed"] = 1  # read-only all the way down
    with pytest.raises(AttributeError):
        results.status = "failed"
    assert results.get("config") == results.to_json()["config"] and results.get("nope", 3) == 3


def test_results_view_reads_what_is_there_and_round_trips_unknown_keys():
    d = {"status": "failed", "error": {"type": "RuntimeError", "message": "CUDA out of memory", "traceback": "..."},
         "zz_new": [1, {"a": None}], "results_version": 1, "seed": True, "data": {"files": {}, "n_eval": "x"}}
    r = Results.from_json(d)
    assert r.error.describe() == "RuntimeError: CUDA out of memory" and not r.completed
    assert r.seed is None and r.data.n_eval is None and r.metrics is None and r.train is None
    assert json.dumps(r.to_json()) == json.dumps(d)
    with pytest.raises(DataError, match=r"x.json: expected a JSON object, got array"):
        Results.from_json([], file="x.json")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_predictions_reader_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = _write(tmp_path / PREDICTIONS_FILE, '{"id": "a", "output": "x"}\n\n   \n{"id": "b"}\r\n')
    rows = read_predictions(path)
    assert [(r["id"], r["line"]) for r in rows] == [("a", 1), ("b", 4)]
    assert without_line(rows[0]) == {"id": "a", "output": "x"}
    with pytest.raises(DataError, match=r":2: blank line"):
        read_predictions(path, blank_lines="error")
    assert read_predictions(_write(tmp_path / "empty.jsonl", "")) == []


@pytest.mark.parametrize(("line", "message"), [
    ('{"id": 7}', "field 'id': expected string, got number"),
    ('{"output": "x"}', "field 'id': missing required field"),
    ('{"id": "  "}', "field 'id': must be a non-empty string"),
    ('{"id": "x"', "invalid JSON"),
    ('["x"]', "expected a JSON object, got array"),
    ('{"id": "x", "id": "y"}', "field 'id': duplicate key"),
    ('{"id": "x", "f1": NaN}', "NaN"),
])
def test_predictions_reader_names_file_and_line_of_a_bad_line(tmp_path, line, message):
    path = _write(tmp_path / PREDICTIONS_FILE, '{"id": "a"}\n\n' + line + "\n")
    with pytest.raises(DataError) as e:
        read_predictions(path)
    assert str(e.value).startswith(f"{path}:3: ") and message in str(e.value)
    assert e.value.file == str(path) and e.value.line == 3


def test_integer_ids_are_refused_never_converted(tmp_path):
    path = _write(tmp_path / PREDICTIONS_FILE, '{"id": "1"}\n{"id": 1}\n')
    with pytest.raises(DataError, match=r":2: field 'id': expected string, got number"):
        read_predictions(path)
    assert read_predictions(_write(path, '{"id": "1"}\n'))[0]["id"] == "1"


def test_duplicate_ids_and_unreadable_files(tmp_path):
    path = _write(tmp_path / PREDICTIONS_FILE, '{"id": "a"}\n{"id": "a"}\n')
    assert len(read_predictions(path)) == 2
    with pytest.raises(DataError, match=r":2: field 'id': id 'a' already on line 1"):
        read_predictions(path, unique_ids=True)
    path.write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n')
    with pytest.raises(DataError, match=r":2: not valid UTF-8 \(byte 0xff\)"):
        read_predictions(path)
    with pytest.raises(DataError, match="nope.jsonl: not found"):
        read_predictions(tmp_path / "nope.jsonl")

    class MyError(LocatedError):
        pass

    with pytest.raises(MyError, match="why it was wanted"):
        read_predictions(tmp_path / "nope.jsonl", MyError, missing="not found: why it was wanted")


def test_results_json_reader(tmp_path):
    path = _write(tmp_path / RESULTS_FILE, '{"results_version": 1, "status": "compl')
    with pytest.raises(DataError, match=r"results.json:1: invalid JSON: .*corrupt JSON"):
        read_results_json(path)
    _write(path, "{not json")
    with pytest.raises(DataError) as e:
        read_results_json(path)
    assert "corrupt" not in str(e.value) and f"{path}:1: invalid JSON" in str(e.value)
    _write(path, "[1]")
    with pytest.raises(DataError, match="expected a JSON object, got array"):
        read_results_json(path)
    folder = RunFolder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="not a run folder \\(no such directory\\)"):
        folder.check_dir()
    run = tmp_path / "run"
    run.mkdir()
    _write(run / RESULTS_FILE, json.dumps({"status": "completed", "metrics": {"complex_plus": {"n": 1}}}))
    assert not RunFolder(run).has_complex_plus(RunFolder(run).results())
    _write(run / COMPLEX_PLUS_FILE, '{"id": "c"}\n')
    assert RunFolder(run).has_complex_plus(RunFolder(run).results_json())
    assert RunFolder(run).complex_plus()[0]["id"] == "c"

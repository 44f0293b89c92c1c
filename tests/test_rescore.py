"""One scoring rule for every committed number: each committed run's scores are what today's
scorer gives its saved answers, and ``scaling.rescore`` rewrites a run whose scores are not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scaling.rescore import RescoreError, find_runs, main, rescore_run

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = REPO_ROOT / "outputs" / "reference"
COMMITTED = find_runs([REFERENCE])


def test_the_committed_runs_are_found():
    # Every runs folder of outputs/reference is searched: the fine-tuned, base, depth, precision
    # and deployed-file runs (28 when this test was written; more are added, none removed).
    assert len(COMMITTED) >= 28
    assert {p.relative_to(REFERENCE).parts[0] for p in COMMITTED} >= {
        "edgejson_v3", "edgejson_v3_depth", "edgejson_v3_deploy", "edgejson_v3_precision", "edgejson_v2_vs_v3"}


@pytest.mark.parametrize("run", COMMITTED, ids=lambda p: str(p.relative_to(REFERENCE)))
def test_every_committed_run_scores_as_its_predictions_do_today(run, edgejson_dir, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # deployed-file runs name their export relative to the checkout
    result = rescore_run(run, data_dir=edgejson_dir)
    assert result.changes == [], f"{run}: rescore with `python -m scaling.rescore {run}`"


@pytest.fixture
def stale_run(tmp_path, edgejson_dir):
    """A committed run copied, with scores as an older scorer wrote them: one answer's status
    and Field F1 changed, and the overall Field F1 with them."""
    src = REFERENCE / "edgejson_v3_depth" / "smol135_gguf_d22-s0"
    run = tmp_path / "run"
    shutil.copytree(src, run)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    wrong = next(i for i, r in enumerate(rows) if r["status"] != "ok")
    rows[wrong].update(status="ok", field_f1=1.0)
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    results = json.loads((run / "results.json").read_text())
    results["metrics"]["overall"]["field_f1"] += 0.05
    (run / "results.json").write_text(json.dumps(results, indent=2))
    return run, src, wrong


def test_check_names_what_differs_and_writes_nothing(stale_run, edgejson_dir, capsys):
    run, _, _ = stale_run
    before = (run / "results.json").read_bytes()
    assert main([str(run), "--check", "--data", str(edgejson_dir)]) == 1
    out = capsys.readouterr().out
    assert "overall.field_f1" in out and "1 of 158 prediction rows rescored" in out and "1 differ" in out
    assert (run / "results.json").read_bytes() == before


def test_rescore_rewrites_scores_and_keeps_the_decoders_fields(stale_run, edgejson_dir, capsys):
    run, src, wrong = stale_run
    assert main([str(run), "--data", str(edgejson_dir)]) == 0
    fixed = json.loads((run / "results.json").read_text())
    original = json.loads((src / "results.json").read_text())
    assert fixed["metrics"] == original["metrics"]
    assert {k: v for k, v in fixed.items() if k != "metrics"} == {k: v for k, v in original.items() if k != "metrics"}
    assert (run / "predictions.jsonl").read_text() == (src / "predictions.jsonl").read_text()
    # A second pass finds nothing to do and leaves the files as they are.
    capsys.readouterr()
    assert main([str(run), "--check", "--data", str(edgejson_dir)]) == 0
    assert "0 differ" in capsys.readouterr().out


def test_an_altered_data_file_or_an_unknown_answer_is_refused(stale_run, tmp_path, edgejson_dir, capsys):
    run, _, _ = stale_run
    data = tmp_path / "edgejson"
    shutil.copytree(edgejson_dir / "schemas", data / "schemas")
    (data / "v3").mkdir()
    shutil.copy(edgejson_dir / "v3" / "train.jsonl", data / "v3" / "train.jsonl")
    lines = (edgejson_dir / "v3" / "test.jsonl").read_text().splitlines(keepends=True)
    (data / "v3" / "test.jsonl").write_text("".join(lines[:-1]))
    assert main([str(run), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "test.jsonl: sha256" in err and "field data.files" in err and "the run used another file" in err

    rows = (run / "predictions.jsonl").read_text().splitlines()
    rows[3] = rows[3].replace('"id": "', '"id": "nowhere_', 1)
    (run / "predictions.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(RescoreError, match=r"predictions.jsonl: field id: 'nowhere_.*is in none of the data files"):
        rescore_run(run, data_dir=edgejson_dir)


def test_no_run_under_a_folder_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "no run (results.json beside predictions.jsonl)" in capsys.readouterr().err

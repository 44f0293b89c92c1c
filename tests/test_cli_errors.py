"""User errors at the entry points are one ``error: ...`` line naming the file (and line, flag)
and a status, never a traceback; and inputs that would be silently misread are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.data.__main__ import main as data_main
from scaling.data.synthetic import generate
from scaling.failures import main as failures_main
from scaling.fit import synthetic
from scaling.fit.collect import collect
from scaling.fit.errors import FitError
from scaling.metrics import SYNTAX_ERROR, score_output
from scaling.score import main as score_main

REPO = Path(__file__).resolve().parents[1]
BAD_BYTE = b"\xff"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "data", seed=0, n_train=8, n_test=8)


# --- synth ------------------------------------------------------------------------------------


def test_synth_refuses_to_overwrite_a_dataset(tmp_path, capsys):
    out = tmp_path / "data"
    assert data_main(["synth", "--out", str(out), "--n-train", "8", "--n-test", "8"]) == 0
    before = (out / "v1" / "test.jsonl").read_bytes()
    capsys.readouterr()
    assert data_main(["synth", "--out", str(out), "--seed", "1", "--n-train", "8", "--n-test", "8"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --out {out} is not empty (schemas, v1): choose another folder, or pass --force " \
                  "to write the dataset into it\n"
    assert (out / "v1" / "test.jsonl").read_bytes() == before
    assert data_main(["synth", "--out", str(out), "--seed", "1", "--n-train", "8", "--n-test", "8", "--force"]) == 0
    assert (out / "v1" / "test.jsonl").read_bytes() != before
    (tmp_path / "file").write_text("")
    assert data_main(["synth", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


# --- score and validate -----------------------------------------------------------------------


def test_duplicate_keys_in_an_answer_are_not_json_exact():
    # A wrong value then the right one: json.loads would keep the right one and call it exact.
    score = score_output('{"total": 1, "total": 2}', {"total": 2}, {"type": "object"})
    assert score.status == SYNTAX_ERROR and not score.json_exact
    nested = score_output('{"a": {"b": 1, "b": 2}}', {"a": {"b": 2}}, {"type": "object"})
    assert nested.status == SYNTAX_ERROR and not nested.json_exact


def _predictions(dataset: Path, path: Path) -> Path:
    rows = [json.loads(line) for line in (dataset / "v1" / "test.jsonl").read_text().splitlines()]
    path.write_text("".join(json.dumps({"id": r["id"], "output": json.dumps(r["expected_output"])}) + "\n"
                            for r in rows))
    return path


def test_score_line_limit_is_an_option_and_named_in_the_error(dataset, tmp_path, capsys):
    preds = _predictions(dataset, tmp_path / "p.jsonl")
    test = str(dataset / "v1" / "test.jsonl")
    assert score_main([str(preds), "--data", test, "--max-line-bytes", "64"]) == 2
    err = capsys.readouterr().err
    assert "line longer than the limit of 64 bytes" in err and "--max-line-bytes raises the limit" in err
    assert score_main([str(preds), "--data", test, "--max-line-bytes", "100000", "--n-boot", "10"]) == 0
    assert data_main(["validate", test, "--schemas", str(dataset / "schemas"), "--max-line-bytes", "64"]) == 1
    assert "--max-line-bytes raises the limit" in capsys.readouterr().out


def test_score_without_schemas_says_the_default_folder_is_missing(dataset, tmp_path, capsys):
    alone = tmp_path / "elsewhere" / "v1"
    alone.mkdir(parents=True)
    test = alone / "test.jsonl"
    test.write_bytes((dataset / "v1" / "test.jsonl").read_bytes())
    preds = _predictions(dataset, tmp_path / "p.jsonl")
    assert score_main([str(preds), "--data", str(test)]) == 2
    assert capsys.readouterr().err == (f"error: no --schemas given, and the default {tmp_path / 'elsewhere' / 'schemas'}"
                                       " (schemas/ beside the data file's folder) is not a folder: pass --schemas DIR\n")


# --- failures ---------------------------------------------------------------------------------


def test_failures_names_a_non_utf8_file_and_line(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    results = {"status": "completed", "data": {"version": "v1"}}
    (run / "results.json").write_bytes(json.dumps(results).encode() + b"\n\n" + BAD_BYTE)
    (run / "predictions.jsonl").write_text("")
    assert failures_main([str(run), "--data", str(dataset)]) == 2
    assert capsys.readouterr().err == f"error: {run / 'results.json'}:3: not valid UTF-8 (byte 0xff)\n"
    (run / "results.json").write_text(json.dumps(results))
    (run / "predictions.jsonl").write_bytes(b'{"id": "a"}\n{"id": "' + BAD_BYTE + b'"}\n')
    assert failures_main([str(run), "--data", str(dataset)]) == 2
    assert capsys.readouterr().err == f"error: {run / 'predictions.jsonl'}:2: not valid UTF-8 (byte 0xff)\n"
    assert failures_main([str(run / "results.json")]) == 2
    assert "results.json: not a run folder" in capsys.readouterr().err


# --- fit --------------------------------------------------------------------------------------

SMALL = {"simple": 3, "medium": 2, "complex": 1}


def test_fit_skips_a_non_utf8_job_and_drops_non_utf8_predictions(tmp_path):
    sweep = synthetic.make_sweep(tmp_path / "sweep", synthetic.DEFAULT_LADDER[:3], n_per_tier=SMALL)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    (jobs[0] / "results.json").write_bytes((jobs[0] / "results.json").read_bytes() + BAD_BYTE)
    (jobs[1] / "predictions.jsonl").write_bytes(BAD_BYTE + (jobs[1] / "predictions.jsonl").read_bytes())
    messages: list[str] = []
    col = collect([sweep], log=messages.append)
    assert len(col.jobs) == 2
    (skipped,) = col.skipped
    assert skipped.path == jobs[0] / "results.json" and skipped.reason.startswith("not valid UTF-8 (byte 0xff) (line")
    note = next(m for m in messages if "predictions.jsonl" in m)
    assert f"{jobs[1] / 'predictions.jsonl'}:1: not valid UTF-8 (byte 0xff)" in note
    assert "using aggregate metrics only" in note


def test_fit_sweep_dir_that_is_a_file(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FitError, match="results.json: is a file, not a sweep folder"):
        collect([tmp_path / "results.json"])


def test_fit_unwritable_out_root_is_an_error_line(tmp_path):
    sweep = synthetic.make_sweep(tmp_path / "sweep", synthetic.DEFAULT_LADDER[:2], n_per_tier=SMALL)
    (tmp_path / "a-file").write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "scaling.fit", f"sweep_dir={sweep}", f"out_root={tmp_path}/a-file/fit",
                        "n_boot=20", "n_boot_fit=2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == f"error: {tmp_path}/a-file/fit/sweep/figures: Not a directory"
    assert "Traceback" not in r.stderr

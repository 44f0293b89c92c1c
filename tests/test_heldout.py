"""Test records are never trained on: a job whose training file is a test file (v3_extra's 120
complex test records above all), or shares a record id or a prompt with one, is refused before it
trains, with an error naming the file, the line and the setting; EdgeJSON's own train files pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from scaling.data.io import DataError
from scaling.data.source import DataSpec


def test_the_extra_complex_test_file_is_refused_as_a_training_file(edgejson_dir):
    extra = edgejson_dir / "v3_extra" / "test_complex.jsonl"
    if not extra.is_file():
        pytest.skip("v3_extra not found")
    with pytest.raises(DataError) as exc:
        DataSpec(root=str(edgejson_dir), train_file=str(extra)).load()
    e = exc.value
    assert (e.file, e.field) == (str(extra), "data.train_file")
    assert str(e).startswith(f"{extra}: field 'data.train_file': is a test file (120 test records)")
    # Scored on it or not: the file is held out either way.
    with pytest.raises(DataError, match="is the file this job is scored on"):
        DataSpec(root=str(edgejson_dir), train_file=str(extra), test_file=str(extra)).load()


def test_edgejson_train_files_pass(edgejson_dir):
    extra_train = edgejson_dir / "v3_extra" / "train.jsonl"
    assert len(DataSpec(root=str(edgejson_dir)).load().train) == 629
    assert len(DataSpec(root=str(edgejson_dir), train_version="v2").load().train) == 629
    if extra_train.is_file():
        spec = DataSpec(root=str(edgejson_dir), train_file=str(extra_train),
                        test_file=str(edgejson_dir / "v3_extra" / "test_complex.jsonl"))
        assert (len(spec.load().train), len(spec.load().test)) == (1258, 120)


@pytest.fixture
def copied(tmp_path, edgejson_dir) -> Path:
    """A dataset root with v3 and v3_extra's test file, for training files made from them."""
    root = tmp_path / "edgejson"
    shutil.copytree(edgejson_dir / "schemas", root / "schemas")
    shutil.copytree(edgejson_dir / "v3", root / "v3")
    extra = edgejson_dir / "v3_extra" / "test_complex.jsonl"
    if not extra.is_file():
        pytest.skip("v3_extra not found")
    (root / "v3_extra").mkdir()
    shutil.copy(extra, root / "v3_extra" / "test_complex.jsonl")
    return root


def _train_with(root: Path, extra_lines: list[str]) -> Path:
    path = root / "mine" / "train.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text((root / "v3" / "train.jsonl").read_text() + "".join(line + "\n" for line in extra_lines))
    return path


def test_a_training_file_holding_a_test_record_is_refused_at_its_line(copied):
    test_line = (copied / "v3_extra" / "test_complex.jsonl").read_text().splitlines()[6]
    train = _train_with(copied, [test_line])
    with pytest.raises(DataError) as exc:
        DataSpec(root=str(copied), train_file=str(train)).load()
    e = exc.value
    # Scored on v3's test split, never on the extra file: still refused.
    assert (e.file, e.line, e.field) == (str(train), 630, "data.train_file")
    assert f"has the id of {copied / 'v3_extra' / 'test_complex.jsonl'}:7" in e.message


def test_a_test_prompt_under_another_id_is_refused_and_counted(copied):
    tests = [json.loads(line) for line in (copied / "v3" / "test.jsonl").read_text().splitlines()]
    renamed = [json.dumps({**r, "id": f"mine_{k}"}) for k, r in enumerate(tests[:3])]
    train = _train_with(copied, renamed)
    with pytest.raises(DataError, match=r"record 'mine_0' has the prompt of .*v3/test.jsonl:1 \(2 more training "
                                         r"records share an id or a prompt with it\)") as exc:
        DataSpec(root=str(copied), train_file=str(train)).load()
    assert exc.value.line == 630


def test_a_job_trained_on_its_test_file_fails_with_the_error_not_a_traceback(tmp_path, run_scaling, fast_overrides):
    proc = run_scaling("scaling.train", ["model=tiny_s", *fast_overrides, "logger=none", "sweep_name=heldout",
                                         "data.train_file=${data.root}/v1/test.jsonl"], tmp_path, check=False)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "v1/test.jsonl: field 'data.train_file': is the file this job is scored on" in out
    assert "Traceback" not in out
    results = json.loads(next((tmp_path / "runs" / "heldout").glob("*/results.json")).read_text())
    assert results["status"] == "failed" and results["error"]["type"] == "DataError"
    assert not (tmp_path / "trained").exists()

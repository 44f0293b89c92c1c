"""The data axis past 100%: ``data.extra_train_file`` adds records beyond the train split,
checked like the train file, drawn per schema and nested, named in the recipe, and a tiny job
trains on exactly the share it asks for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.data.io import DataError
from scaling.data.sft import stratified_fraction
from scaling.data.source import DataSpec
from scaling.results import train_data


def test_the_extra_records_load_beside_the_train_split(edgejson_dir):
    extra = edgejson_dir / "v3_extra" / "train.jsonl"
    data = DataSpec(root=str(edgejson_dir), extra_train_file=str(extra)).load()
    assert len(data.train) == 629 and len(data.extra_train) == 1258
    assert list(data.files)[-1] == str(extra)      # after the schemas: train and test keep their roles
    # 50% per schema is the 200% point: 629 more records, twice v3's per schema halved
    half = stratified_fraction(data.extra_train, 0.5, seed=0)
    assert len(half) == 629
    assert {r.id for r in half} <= {r.id for r in stratified_fraction(data.extra_train, 0.75, seed=0)}


def test_an_extra_file_that_is_a_test_file_or_repeats_a_train_record_is_refused(edgejson_dir, tmp_path):
    with pytest.raises(DataError, match="data.extra_train_file.*test file"):
        DataSpec(root=str(edgejson_dir),
                 extra_train_file=str(edgejson_dir / "v3_extra" / "test_complex.jsonl")).load()
    lines = (edgejson_dir / "v3_extra" / "train.jsonl").read_text().splitlines()[:3]
    lines.append((edgejson_dir / "v3" / "train.jsonl").read_text().splitlines()[5])
    mixed = tmp_path / "extra.jsonl"
    mixed.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        DataSpec(root=str(edgejson_dir), extra_train_file=str(mixed)).load()
    assert str(err.value).startswith(f"{mixed}:4: field 'data.extra_train_file'") and "train split" in str(err.value)
    with pytest.raises(DataError, match="data.extra_train_file"):
        DataSpec(root=str(edgejson_dir), extra_train_file=str(tmp_path / "missing.jsonl")).load()
    with pytest.raises(ValueError, match="data.extra_train_fraction=0"):
        DataSpec(root=str(edgejson_dir), extra_train_fraction=0)


def test_the_recipe_names_the_training_data_with_its_extra_share():
    base = {"data": {"version": "v3", "root": "/d"}}
    assert train_data(base) == "v3"
    plus = {"data": {"version": "v3", "root": "/d", "extra_train_file": "/d/v3_extra/train.jsonl",
                     "extra_train_fraction": 0.5}}
    assert train_data(plus) == "v3 + v3_extra/train.jsonl 50%"


def test_a_job_trains_on_the_train_split_plus_its_share_of_the_extra_records(tmp_path, edgejson_dir, run_scaling):
    from scaling.results import read_json
    from scaling.train import config_hash

    # A small root: 20 train, 6 test records, and 10 extra training records (two schemas' worth).
    root = tmp_path / "edgejson"
    (root / "v3").mkdir(parents=True)
    (root / "schemas").symlink_to(edgejson_dir / "schemas")
    for split, n in (("train", 20), ("test", 6)):
        lines = (edgejson_dir / "v3" / f"{split}.jsonl").read_text().splitlines()[:n]
        (root / "v3" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    extra_rows = (edgejson_dir / "v3_extra" / "train.jsonl").read_text().splitlines()
    schema_ids = sorted({json.loads(x)["schema_id"] for x in extra_rows})[:2]
    picked = [x for x in extra_rows if json.loads(x)["schema_id"] in schema_ids][:10]
    extra = tmp_path / "extra" / "train.jsonl"
    extra.parent.mkdir()
    extra.write_text("\n".join(picked) + "\n")
    run_scaling("scaling.train", ["debug=fast", "data=edgejson_v3", f"data.root={root}",
                                  f"data.extra_train_file={extra}", "data.extra_train_fraction=0.5",
                                  "model=tiny_xs", "decode.max_new_tokens=16", "sweep_name=plus", "logger=none"],
                tmp_path)
    (job,) = [p for p in (tmp_path / "runs" / "plus").iterdir() if p.is_dir()]
    r = read_json(job / "results.json")
    assert r["status"] == "completed", r.get("error")
    n_extra = r["data"]["extra_train"]["n"]
    assert 4 <= n_extra <= 6 and r["data"]["extra_train"]["fraction"] == 0.5
    assert r["data"]["n_train"] == r["train"]["n_examples"] == 20 + n_extra
    assert str(extra) in r["data"]["files"]
    # Off, the option hashes as absent: every job made before it keeps its identity.
    off = json.loads(json.dumps(r["config"]))
    off["data"]["extra_train_file"], off["data"]["extra_train_fraction"] = None, 1.0
    before = json.loads(json.dumps(off))
    del before["data"]["extra_train_file"], before["data"]["extra_train_fraction"]
    assert config_hash(off) == config_hash(before) != r["config_hash"]
    assert Path(r["job_dir"]).name == job.name

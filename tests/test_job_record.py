"""The record a job writes (``JobRecord``): the contract's keys in their order, sections the job
never reached left out, and what it writes read back by ``Results``."""

import json
from dataclasses import replace

import pytest
from omegaconf import OmegaConf

from scaling.jobs.record import NOT_REACHED, JobRecord
from scaling.results import RESULTS_VERSION, DataSection, Results, TrainSection


@pytest.fixture
def record(tmp_path):
    cfg = OmegaConf.create({"run_name": "tiny-full-s3", "sweep_name": "sweep", "seed": 3, "model": {"key": "tiny"}})
    return JobRecord.start(cfg, tmp_path / "job", "c0ffee")


def test_a_starting_record_holds_only_what_a_job_knows_before_its_data(record, tmp_path):
    written = record.to_json()
    assert list(written) == ["results_version", "status", "error", "run_name", "group", "job_dir", "config",
                             "config_hash", "data_hash", "train_hash", "seed", "versions", "machine", "created_at"]
    assert written["status"] == "running" and written["results_version"] == RESULTS_VERSION
    assert written["run_name"] == "tiny-full-s3" and written["group"] == "sweep" and written["seed"] == 3
    assert written["job_dir"] == str(tmp_path / "job") and written["config"]["model"] == {"key": "tiny"}
    assert written["data_hash"] is None and written["train_hash"] is None  # recorded null: not known yet
    assert "python" in written["versions"] and written["machine"]["cpu_count"]


def test_sections_follow_the_contract_order_whatever_order_they_are_filled_in(record):
    record.metrics = {"overall": {"json_exact": 0.5}}
    record.train = None  # finetune=none: recorded as null, not left out
    record.data = {"name": "edgejson", "n_train": 2}
    record.params = {"total": 10, "non_embedding": 8, "trainable": 0}
    record.completed()
    record.finished()
    written = record.to_json()
    assert [k for k in written if k in ("data", "model", "train", "params", "eval", "metrics", "finished_at")] == \
        ["data", "train", "params", "metrics", "finished_at"]
    assert written["train"] is None and "model" not in written and "eval" not in written
    assert written["status"] == "completed" and written["error"] is None


def test_a_failure_records_its_type_message_and_traceback(record):
    try:
        raise ValueError("data.root: no such folder")
    except ValueError as exc:
        record.failed(exc)
    written = record.to_json()
    assert written["status"] == "failed"
    assert written["error"]["type"] == "ValueError" and written["error"]["message"] == "data.root: no such folder"
    assert "raise ValueError" in written["error"]["traceback"]


def test_what_a_job_writes_is_read_back_by_the_readers_type(record):
    record.data = DataSection(name="edgejson", version="v3", n_train=2, files={"a.jsonl": "ab"})
    record.train = TrainSection(tokens=100, steps=3, tokens_per_s=12.5, precision="bf16-mixed")
    record.eval = {"wall_s": 1.5, "n": 2}
    record.completed()
    text = json.dumps(record.to_json())
    results = Results.from_json(json.loads(text))
    assert results.completed and results.current and results.run_name == "tiny-full-s3"
    assert results.hashes.config == "c0ffee" and results.seed == 3
    assert results.data.files == {"a.jsonl": "ab"} and results.train.steps == 3 and results.eval.n == 2
    assert results.train == record.train and results.data == record.data  # one definition, written and read
    assert results.to_json() == record.to_json()


def test_the_train_section_writes_every_key_in_order_and_the_optional_ones_only_when_set():
    written = TrainSection(tokens=100, steps=3, epochs=1.0, resumed_from=None).to_json()
    keys = list(written)
    assert keys[:4] == ["tokens", "target_tokens", "steps", "epochs"] and keys[-1] == "world_size"
    assert "reused_from" not in written and "cache_error" not in written
    assert written["resumed_from"] is None  # the contract's str|null: written as null
    reused = replace(TrainSection.from_json(written), reused_from="/cache/ab12", cache_error="disk full")
    assert list(reused.to_json())[-2:] == ["reused_from", "cache_error"]


def test_a_train_section_read_and_written_again_keeps_unknown_keys_and_drops_mistyped_values():
    read = TrainSection.from_json({"tokens": 7, "steps": "3", "epochs": 2, "future_key": [1, 2]})
    assert read.tokens == 7 and read.steps is None and read.epochs == 2.0 and isinstance(read.epochs, float)
    written = read.to_json()
    assert written["future_key"] == [1, 2] and list(written)[-1] == "future_key"
    assert TrainSection.from_json(written) == read


def test_every_field_is_written_in_a_known_place():
    names = [f for f in JobRecord.__dataclass_fields__]
    assert sorted(names) == sorted(JobRecord._ORDER)
    assert repr(NOT_REACHED) == "NOT_REACHED"


def test_the_data_section_writes_what_a_job_set_and_reads_back_equal():
    plain = DataSection(name="edgejson", n_train=5, files={"train.jsonl": "ab"}).to_json()
    assert list(plain) == ["name", "version", "root", "n_train", "train_fraction", "n_val", "n_test", "eval_split",
                           "n_eval", "files"]  # extra_train and excluded only when set
    excluded = {"rule": "gold contradicts the prompt", "n": 1, "ids": {"r1": "Status: not in the prompt"}}
    filtered = DataSection(n_train=4, excluded=excluded, extra_train={"file": "x.jsonl", "n": 2, "fraction": 0.5})
    written = json.loads(json.dumps(filtered.to_json()))
    assert written["excluded"] == excluded and list(written)[-2:] == ["extra_train", "excluded"]
    assert DataSection.from_json(written) == filtered

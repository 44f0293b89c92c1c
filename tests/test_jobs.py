"""scaling.jobs in pieces: bookkeeping keys and hashes, the job lock, resume points, the CSV
history, the train cache's failure mode, and one definition per fact.

The whole job (subprocess sweeps, faults injected) is in test_reliability.py and test_train.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import scaling
from scaling.jobs.cache import CacheEntry
from scaling.jobs.config import FinetuneConfig, LockConfig
from scaling.jobs.identity import (BOOKKEEPING_KEYS, config_hash, data_hash, is_bookkeeping, job_dirname,
                                   train_data_hash, train_hash)
from scaling.jobs.lock import JobLock, JobLocked, process_start
from scaling.jobs.resume import TRAIN_HASH_KEY, CheckpointError, resume_point
from scaling.jobs.tracking import ResumableCSVLogger
from scaling.results import atomic_write_json
from test_train import resolved_job_config

REFERENCE = Path(__file__).resolve().parents[1] / "outputs" / "reference"

# --- one list of bookkeeping keys ---------------------------------------------------------------


def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _changed(data: dict, dotted: str) -> dict:
    out = json.loads(json.dumps(data))
    node = out
    *outer, last = dotted.split(".")
    for part in outer:
        node = node[part]
    node[last] = "__changed__"
    return out


def test_hashes_folder_names_and_train_cache_leave_out_exactly_the_bookkeeping_keys(compose_train, tmp_path):
    # Every key of the composed config, changed one at a time: the config hash, the train
    # hash (the train cache's key) and the job folder name each ignore it exactly when it
    # is bookkeeping. A key left out of one of them and not the others fails here.
    cfg, job = resolved_job_config(compose_train, ["model=tiny_s", "logger=csv"], tmp_path)
    data = OmegaConf.to_container(job, resolve=True)
    keys = list(_leaves(data))
    assert {"data.root", "threads", "sweep_name", "lock.stale_after_s", "logger.csv.save_dir"} <= set(keys)
    base_config, base_train = config_hash(data), train_hash(data, "d")
    for key in keys:
        book = is_bookkeeping(key)
        other = _changed(data, key)
        assert (config_hash(other) == base_config) is book, key
        train_only = (key.split(".")[0] in ("decode", "eval") and key != "eval.train_limit") or key == "data.test_file"
        assert (train_hash(other, "d") == base_train) is (book or train_only), key
        assert (job_dirname([f"{key}=x"]) == "") is book, key
    # The data's content is in the train hash, its path is not.
    assert train_hash(data, "other data") != base_train
    # Hydra's side of the folder name reads the same list.
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == list(BOOKKEEPING_KEYS)
    assert OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["subdir"] == \
        "${hydra.job.num}_${job_dirname:${hydra.overrides.task}}"


def test_job_folder_name_from_overrides(compose_train, tmp_path):
    cfg, _ = resolved_job_config(compose_train, ["model=tiny_s", "threads=1", "+callbacks.kill.step=3",
                                                 "data.root=/a/b", "seed=2"], tmp_path)
    assert cfg.hydra.sweep.subdir == "0_model=tiny_s,seed=2"
    # A value with "/" stays one folder; "%" is escaped so the name maps back to one value.
    assert job_dirname(["+eval.tag=a/b%c", "model=tiny_s"]) == "+eval.tag=a%2Fb%25c,model=tiny_s"
    long = job_dirname([f"finetune.lora.target_modules=[{','.join(['q_proj'] * 40)}]"])
    assert len(long) == 200 and "~" in long and "/" not in long


def test_data_hash_is_content_and_role_not_path(tmp_path):
    a = {"/x/v3/train.jsonl": "t" * 64, "/x/v3/test.jsonl": "e" * 64, "/x/schemas/simple/tag.json": "s" * 64}
    moved = {"/elsewhere/train.jsonl": "t" * 64, "/y/test.jsonl": "e" * 64, "/y/schemas/simple/tag.json": "s" * 64}
    assert data_hash(a) == data_hash(moved)
    swapped = {"/x/v3/train.jsonl": "e" * 64, "/x/v3/test.jsonl": "t" * 64, "/x/schemas/simple/tag.json": "s" * 64}
    other_tier = {**{k: v for k, v in a.items() if "schemas" not in k}, "/x/schemas/medium/tag.json": "s" * 64}
    edited = {**a, "/x/v3/test.jsonl": "f" * 64}
    assert len({data_hash(d) for d in (a, swapped, other_tier, edited)}) == 4
    # What training reads is the train file and the schemas: another test file is the same training.
    assert train_data_hash(edited) == train_data_hash(a) == train_data_hash(moved)
    assert len({train_data_hash(d) for d in (a, swapped, other_tier)}) == 3


def test_committed_runs_keep_their_hashes_under_the_typed_schema_and_train_identity_2():
    # Every committed job's config, as today's typed schema composes it (the keys it fills in
    # at their defaults hash as absent), still gives the config_hash it recorded, and its
    # recorded train hash (identity 1, test file included) is the legacy one.
    from omegaconf import OmegaConf

    from scaling.jobs.config import schemas
    from scaling.jobs.identity import legacy_train_hash, train_hashes

    from dataclasses import fields

    from scaling.decode import DecodeConfig

    records = [json.loads(p.read_text()) for p in sorted(REFERENCE.glob("*/*/results.json"))]
    assert len(records) >= 20
    from scaling.jobs.identity import HASH_OMIT_AT_DEFAULT

    # Options that hash as absent at their default (decode.grounded, ...) need not be recorded.
    decode_keys = {f.name for f in fields(DecodeConfig)} - {k.split(".", 1)[1] for k, _ in HASH_OMIT_AT_DEFAULT
                                                            if k.startswith("decode.")}
    same = identity2 = 0
    for r in records:
        entry = "evaluate" if r["config"].get("from_job") else "train"   # a finished job scored elsewhere
        typed = OmegaConf.merge(OmegaConf.structured(schemas()[entry]), r["config"])
        assert config_hash(r["config"]) == r["config_hash"], r["run_name"]
        # Runs older than some decode options (row_attention_waste, ...) lack them; main's
        # YAML filled those in too, so those runs were not recognised before the schema either.
        if decode_keys <= set(r["config"]["decode"]):
            assert config_hash(typed) == r["config_hash"], r["run_name"]
            same += 1
        files = r["data"]["files"]
        if r.get("train_hash"):
            new, legacy = train_hashes(typed, files)
            assert legacy == legacy_train_hash(typed, data_hash(files)) and new != legacy
            # Jobs recorded before identity 2 carry the legacy hash, later ones the new one.
            assert r["train_hash"] in (new, legacy), r["run_name"]
            identity2 += r["train_hash"] == new
            # Identity 2 ignores the test file: the same job scored on another one trains the same weights.
            other = {(k if i != 1 else "/elsewhere/test_complex.jsonl"): (v if i != 1 else "0" * 64)
                     for i, (k, v) in enumerate(files.items())}
            with_other = OmegaConf.merge(typed, {"data": {"test_file": "/elsewhere/test_complex.jsonl"}})
            assert train_hashes(with_other, other)[0] == new
    assert same >= 14
    # the runs without contradicting labels (trained, then scored on complex+ from the job) are identity 2
    assert identity2 >= 2


def test_the_finetune_target_is_its_defining_module_and_hashes_as_the_recorded_one():
    # The fine-tune group builds scaling.jobs.config.FinetuneConfig, where the class is defined; it
    # used to name a re-export in scaling.train, which is gone. Committed runs recorded the old name:
    # with today's, the same config gives the hashes they recorded (a re-run recognises them and
    # their cached weights), and from_job builds such a recorded config with today's name.
    from hydra.utils import get_class

    import scaling.train
    from scaling.typed_config import instantiate_node
    from scaling.jobs.config import TARGETS, current_targets, schemas
    from scaling.jobs.identity import train_hashes

    assert get_class(TARGETS["finetune"]) is FinetuneConfig
    assert not hasattr(scaling.train, "FinetuneConfig")
    old = "scaling.train.FinetuneConfig"
    records = [json.loads(p.read_text()) for p in sorted(REFERENCE.glob("*/*/results.json"))]
    recorded_old = [r for r in records if r["config"]["finetune"].get("_target_") == old]
    assert len(recorded_old) >= 20
    for r in recorded_old:
        today = json.loads(json.dumps(r["config"]))
        today["finetune"]["_target_"] = TARGETS["finetune"]
        assert config_hash(today) == config_hash(r["config"]) == r["config_hash"], r["run_name"]
        assert train_hashes(today, r["data"]["files"]) == train_hashes(r["config"], r["data"]["files"])
        entry = "evaluate" if r["config"].get("from_job") else "train"
        typed = current_targets(OmegaConf.merge(OmegaConf.structured(schemas()[entry]), r["config"]))
        assert typed.finetune._target_ == TARGETS["finetune"]
        assert isinstance(instantiate_node(typed.finetune), FinetuneConfig)
    # Another target is another config: the mapping is a rename, not a wildcard.
    other = json.loads(json.dumps(recorded_old[0]["config"]))
    other["finetune"]["_target_"] = "scaling.jobs.config.OtherConfig"
    assert config_hash(other) != recorded_old[0]["config_hash"]


# --- config checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_steps": 0}, "finetune.max_steps=0: expected -1 (no cap) or a number of steps >= 1; "
                       "to evaluate the model untrained use finetune=none"),
    ({"max_steps": -5}, "finetune.max_steps=-5: expected -1"),
    ({"epochs": 0}, "finetune.epochs=0: expected >= 1 with finetune.method=full"),
    ({"method": "lora", "lora": {"r": 4}, "epochs": 0}, "finetune.epochs=0: expected >= 1 with finetune.method=lora"),
])
def test_training_nothing_is_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        FinetuneConfig(**kwargs)
    assert str(err.value).startswith(message)


def test_no_training_is_allowed_without_steps():
    assert FinetuneConfig(method="none", epochs=0, max_steps=0).method == "none"


def test_lock_config_keeps_heartbeat_below_staleness():
    with pytest.raises(ValueError, match="lock.heartbeat_s=600 must be > 0 and below lock.stale_after_s=60, or a live holder"):
        LockConfig(heartbeat_s=600, stale_after_s=60)


# --- the job lock -------------------------------------------------------------------------------


def _holder(pid: int, host: str | None = None, beat_age: float = 0.0, pid_start: str | None = "auto") -> dict:
    now = time.time()
    return {"host": host or socket.gethostname(), "pid": pid,
            "pid_start": process_start(pid) if pid_start == "auto" else pid_start,
            "acquired_at": "2026-01-01T00:00:00+00:00", "heartbeat_ts": now - beat_age}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_live_holder_refuses_then_its_death_frees_the_job(tmp_path):
    path = tmp_path / "job.lock"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        path.write_text(json.dumps(_holder(sleeper.pid)))
        with pytest.raises(JobLocked) as err:
            JobLock(path).acquire()
        assert f"host {socket.gethostname()} pid {sleeper.pid}" in str(err.value)
        assert "another process is running this job" in str(err.value)
        assert json.loads(path.read_text())["pid"] == sleeper.pid  # untouched
    finally:
        sleeper.kill()
        sleeper.wait()
    with JobLock(path) as lock:  # its process is gone: stale, taken over
        assert json.loads(path.read_text())["pid"] == os.getpid()
        assert lock.read()["host"] == socket.gethostname()
    assert not path.exists()  # released


@pytest.mark.parametrize(("holder", "stale"), [
    (lambda: _holder(_dead_pid()), True),
    (lambda: _holder(os.getpid(), pid_start="0"), True),  # the pid now belongs to another process
    (lambda: _holder(1, host="elsewhere", beat_age=601), True),
    (lambda: _holder(1, host="elsewhere", beat_age=30), False),
], ids=["dead_pid", "pid_reused", "other_host_old_heartbeat", "other_host_fresh_heartbeat"])
def test_stale_lock_rules(tmp_path, holder, stale):
    path = tmp_path / "job.lock"
    path.write_text(json.dumps(holder()))
    lock = JobLock(path, heartbeat_s=60, stale_after_s=600)
    if stale:
        lock.acquire()
        assert json.loads(path.read_text())["pid"] == os.getpid()
        lock.release()
    else:
        with pytest.raises(JobLocked, match="host elsewhere pid 1"):
            lock.acquire()


def test_unreadable_lock_counts_as_live_until_old(tmp_path):
    path = tmp_path / "job.lock"
    path.write_text("")  # a holder killed while writing it
    with pytest.raises(JobLocked):
        JobLock(path, stale_after_s=600).acquire()
    os.utime(path, (time.time() - 700, time.time() - 700))
    with JobLock(path, stale_after_s=600):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_heartbeat_is_rewritten_while_held(tmp_path):
    path = tmp_path / "job.lock"
    with JobLock(path, heartbeat_s=0.05, stale_after_s=1.0):
        first = json.loads(path.read_text())["heartbeat_ts"]
        time.sleep(0.4)
        later = json.loads(path.read_text())
        assert later["heartbeat_ts"] > first and later["pid"] == os.getpid()


def _race(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        lock = JobLock(Path(path))
        lock.acquire()
    except JobLocked:
        results.put("locked")
        return
    results.put("held")
    time.sleep(1.0)  # hold it while the others try
    lock.release()


def test_of_processes_racing_for_a_stale_lock_one_wins(tmp_path):
    path = tmp_path / "job.lock"
    path.write_text(json.dumps(_holder(_dead_pid())))
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(path), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in procs)
    assert outcomes == ["held", "locked", "locked", "locked"]
    assert not path.exists() and not (tmp_path / "job.lock.break").exists()


# --- resume points ------------------------------------------------------------------------------


def _checkpoint(job: Path, **entries) -> Path:
    path = job / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"global_step": 4, "state_dict": {"w": torch.ones(64, 64)}, **entries}, path)
    return path


def test_resume_only_from_this_trainings_checkpoint(tmp_path):
    ours = _checkpoint(tmp_path / "a", **{TRAIN_HASH_KEY: "T1"})
    point = resume_point(tmp_path / "a", "T1", previous=None, config_hash="C")
    assert point.path == ours and point.step == 4

    _checkpoint(tmp_path / "b", **{TRAIN_HASH_KEY: "T0"})  # another config or other data
    assert resume_point(tmp_path / "b", "T1", previous=None, config_hash="C") is None
    assert not (tmp_path / "b" / "checkpoints").exists()
    assert (tmp_path / "b" / "checkpoints.superseded" / "last.ckpt").exists()  # set aside, not deleted

    # Written before checkpoints carried their hash: the last results.json vouches for it.
    _checkpoint(tmp_path / "c")
    assert resume_point(tmp_path / "c", "T1", previous={"config_hash": "C"}, config_hash="C").step == 4
    assert resume_point(tmp_path / "c", "T1", previous={"config_hash": "X"}, config_hash="C") is None


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_checkpoint_names_the_file_and_the_way_out(tmp_path, damage):
    path = _checkpoint(tmp_path, **{TRAIN_HASH_KEY: "T1"})
    raw = path.read_bytes()
    path.write_bytes(b"not a checkpoint" if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(CheckpointError) as err:
        resume_point(tmp_path, "T1", previous=None, config_hash="C")
    message = str(err.value)
    assert message.startswith(f"{path} cannot be read (")
    assert f"Move it aside (mv {path} {path}.bad) or delete it, then re-run" in message
    assert path.exists()  # never deleted for the user


# --- the CSV history ----------------------------------------------------------------------------


def _csv_logger(root: Path) -> ResumableCSVLogger:
    return ResumableCSVLogger(save_dir=str(root), name="csv", version="")


def _rows(root: Path) -> list[tuple[int, str]]:
    import csv

    with open(root / "csv" / "metrics.csv", newline="") as fh:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(fh)]


def test_resumed_csv_log_keeps_the_history_before_the_checkpoint(tmp_path):
    first = _csv_logger(tmp_path)
    first.resume_at(0)
    for step in range(6):
        first.log_metrics({"loss": float(step)}, step=step)  # flushed at every step: a kill loses none
    assert [s for s, _ in _rows(tmp_path)] == list(range(6))
    # Killed after step 5; the checkpoint is at step 4: rows 4 and 5 are logged again.
    again = _csv_logger(tmp_path)
    again.resume_at(4)
    for step in (4, 5, 6):
        again.log_metrics({"loss": step + 0.5, "lr": 1.0}, step=step)  # a new column on the way
    again.finalize("success")
    assert _rows(tmp_path) == [(0, "0.0"), (1, "1.0"), (2, "2.0"), (3, "3.0"), (4, "4.5"), (5, "5.5"), (6, "6.5")]
    fresh = _csv_logger(tmp_path)
    fresh.resume_at(0)  # a fresh start of the job: no history
    assert not (tmp_path / "csv" / "metrics.csv").exists()


# --- writing results ------------------------------------------------------------------------------


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_results_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "results.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == mode


def test_unwritable_train_cache_raises_oserror_for_the_job_to_handle(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    entry = CacheEntry(blocker / "abc")
    with pytest.raises(OSError):
        entry.save(torch.nn.Linear(2, 2), {"train": {}})
    assert not entry.complete


# --- one definition per fact ------------------------------------------------------------------


def test_facts_have_one_definition():
    src = Path(scaling.__file__).parent
    texts = {str(p.relative_to(src)): p.read_text() for p in src.rglob("*.py")}

    def where(pattern: str) -> list[str]:
        return sorted(name for name, text in texts.items() if re.search(pattern, text))

    assert where(r'"simple",\s*"medium",\s*"complex"') == ["data/io.py"]  # the tiers
    assert where(r'"json_exact",\s*"field_f1",\s*"field_f1_toplevel"') == ["metrics.py"]  # the metrics
    assert where(r'"NLM"') == ["results/__init__.py"]  # the size categories
    assert where(r'"skip_completed", "resume"') == ["jobs/identity.py"]  # the bookkeeping keys


def test_the_local_model_hint_composes_for_every_model(compose_train):
    # The offline message and the README tell users how to load a downloaded folder: the
    # override they print must compose: `model.path` is a key of every model config (the schema's).
    hints = set()
    for text in ((Path(scaling.__file__).parent / "models" / "registry.py").read_text(),
                 (Path(scaling.__file__).parents[2] / "README.md").read_text()):
        hints |= set(re.findall(r"model\.source=local (\S*model\.path)=", text))
    assert hints == {"model.path"}
    for option in sorted(p.stem for p in (Path(scaling.__file__).parents[2] / "conf" / "model").glob("*.yaml")):
        cfg = compose_train([f"model={option}", "model.source=local", "model.path=/models/mine"])
        assert cfg.model.path == "/models/mine", option


# --- the job's steps: scaling.pipeline -----------------------------------------------------------


def test_a_job_is_the_pipelines_steps_in_order_and_a_rerun_stops_after_the_data(compose_train, tmp_path,
                                                                                  monkeypatch, fast_overrides):
    # scaling.pipeline.train_and_evaluate is the job's flow; scaling.jobs.run wraps it (lock,
    # skip, results.json) and comes in once the data is read (Job.start).
    import scaling.pipeline as pipeline
    from scaling.jobs.run import Job, run_job

    calls = []

    def traced(name, real):
        def step(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        return step

    for name in ("load_data", "build_tokenizer_and_model", "fine_tune", "evaluate"):
        monkeypatch.setattr(pipeline, name, traced(name, getattr(pipeline, name)))
    monkeypatch.setattr(Job, "start", traced("start", Job.start))
    monkeypatch.setenv("SCALING_OUTPUT_ROOT", str(tmp_path))
    _, job = resolved_job_config(compose_train, ["model=tiny_s", "logger=none", *fast_overrides], tmp_path / "job")

    record = run_job(job, tmp_path / "job")
    assert record["status"] == "completed", record.get("error")
    assert calls == ["load_data", "start", "build_tokenizer_and_model", "fine_tune", "evaluate"]
    written = json.loads((tmp_path / "job" / "results.json").read_text())
    # What each step records, in the order the steps run.
    steps = ["data", "model", "category", "finetune", "train", "params", "decode", "eval", "metrics"]
    assert [k for k in written if k in steps] == steps
    assert written["data_hash"] and written["train_hash"]
    assert written["status"] == "completed" and written["train"]["steps"] == 3

    calls.clear()
    again = run_job(job, tmp_path / "job")
    assert again["skipped"] is True and calls == ["load_data", "start"]  # no model built

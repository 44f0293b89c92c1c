"""W&B runs of jobs, read back from the offline run files the wandb library writes.

Every job's run holds the whole resolved config (flattened to dotted keys) from
``wandb.init`` on, whether the job completes, fails, is interrupted or only trains; a failed
run's summary holds the error. Runs started by a W&B sweep agent are simulated as the agent
starts them (``wandb.wandb_agent.Agent._command_run``): the sweep's values written to the
file ``WANDB_SWEEP_PARAM_PATH`` names (the config wandb.init locks for the sweep), the run id
and sweep id in the environment, and the command line built by the agent's own function.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from scaling.fit.collect import newest_sweep
from scaling.jobs.tracking import PREDICTION_COLUMNS, flat_config
from scaling.results import read_json

TESTS_DIR = Path(__file__).resolve().parent
TESTS_PATH = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(TESTS_DIR)]))

_BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of checksummed chunks
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[pb.Record]:
    """Every record of an offline run's ``run-<id>.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending, out = 7, b"", []  # 7: the file header (":W&B", magic, version)
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        pending += chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


class OfflineRun:
    """What an offline run recorded: the config it started with, the summary, the exit code."""

    def __init__(self, job_dir: Path) -> None:
        files = sorted((job_dir / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, f"expected one offline run in {job_dir}, found {files}"
        self.dir = files[0].parent
        records = wandb_records(files[0])
        kinds = [r.WhichOneof("record_type") for r in records]
        first_run = records[kinds.index("run")].run
        self.init_config = {item.key: json.loads(item.value_json) for item in first_run.config.update}
        self.summary: dict = {}
        for r in records:
            if r.WhichOneof("record_type") == "summary":
                for item in r.summary.update:
                    key = item.key or ".".join(item.nested_key)
                    self.summary[key] = json.loads(item.value_json)
        self.exit_code = next(r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit")

    def table(self, split: str = "test") -> dict:
        (path,) = (self.dir / "files" / "media" / "table" / split).glob("predictions_*.table.json")
        return json.loads(path.read_text())


def assert_full_config(run: OfflineRun, job_dir: Path, swept: tuple[str, ...] = ()) -> None:
    """The run's config at wandb.init is the job's whole resolved config, flattened (beside
    the ``swept`` keys a W&B sweep put there itself)."""
    config = read_json(job_dir / "results.json")["config"]
    flat = flat_config(config)
    assert {k: v for k, v in run.init_config.items() if k in flat} == flat
    nested = {"finetune", "model", "data", "decode", "trainer", "eval"} - set(swept)
    assert not (nested & set(run.init_config)), "nested keys reached W&B"
    assert "finetune.optim.lr" in run.init_config and "model.key" in run.init_config


def test_flat_config_joins_nested_keys_with_dots():
    assert flat_config({"finetune": {"optim": {"lr": 1e-4}, "epochs": 1}, "tags": [1, 2], "lora": {}, "seed": 0}) == {
        "finetune.optim.lr": 1e-4, "finetune.epochs": 1, "tags": [1, 2], "lora": {}, "seed": 0}


def test_failed_and_train_only_jobs_have_their_config_and_the_error(tmp_path, run_scaling, fast_overrides):
    # Job 0 fails in training (a negative learning rate), job 1 trains only (eval.split=none).
    args = ["-m", "model=tiny_s", "sweep_name=wb", "finetune.optim.lr=-0.001,0.001", "eval.split=none",
            *fast_overrides]
    proc = run_scaling("scaling.train", args, tmp_path, check=False, WANDB_SILENT="false")
    assert proc.returncode == 1, proc.stderr[-3000:]
    jobs = {p.name.split("_", 1)[0]: p for p in (tmp_path / "multirun" / "wb").iterdir() if p.name[0].isdigit()}

    failed = OfflineRun(jobs["0"])
    assert_full_config(failed, jobs["0"])
    assert failed.init_config["finetune.optim.lr"] == -0.001
    assert failed.summary["status"] == "failed" and failed.summary["error/type"] == "ValueError"
    assert "Invalid learning rate" in failed.summary["error/message"]
    assert failed.exit_code == 1

    train_only = OfflineRun(jobs["1"])
    assert_full_config(train_only, jobs["1"])
    assert train_only.init_config["eval.split"] == "none" and train_only.summary["status"] == "completed"
    assert "error/type" not in train_only.summary and train_only.exit_code == 0

    # Each log line once (Lightning's own console handler gone), no vendor tip, no W&B deprecation.
    output = proc.stdout + proc.stderr
    assert output.count("GPU available: False") == 2, output[-3000:]
    assert "💡" not in output and "Tip:" not in output
    wandb_lines = [line.lower() for line in output.splitlines() if line.startswith("wandb:")]
    assert wandb_lines and not [line for line in wandb_lines if "deprecat" in line or "will be removed" in line]


def test_interrupted_job_has_its_config_and_the_signal(tmp_path, run_scaling, fast_overrides):
    # SIGTERM after step 1, as a cluster preempting the job (Lightning raises SIGTERMException).
    args = ["model=tiny_s", "sweep_name=wb", *fast_overrides, "+callbacks.term._target_=test_train.TermAtStep",
            "+callbacks.term.step=1"]
    proc = run_scaling("scaling.train", args, tmp_path, check=False, PYTHONPATH=TESTS_PATH)
    assert proc.returncode == 143, proc.stderr[-3000:]
    (job,) = (tmp_path / "runs" / "wb").iterdir()
    run = OfflineRun(job)
    assert_full_config(run, job)
    assert run.summary["status"] == "failed" and run.summary["error/type"] == "SIGTERMException"


def test_job_failing_before_its_model_has_its_config_and_the_error(tmp_path, run_scaling, fast_overrides):
    # The data is missing: the job fails while preparing, before any model or logger is made.
    args = ["model=tiny_s", "sweep_name=wb", "data=edgejson_v3", "debug=fast"]
    proc = run_scaling("scaling.train", args, tmp_path, check=False, EDGEJSON_DIR=str(tmp_path / "no-data"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    (job,) = (tmp_path / "runs" / "wb").iterdir()
    run = OfflineRun(job)
    assert_full_config(run, job)
    assert run.init_config["data.root"] == str(tmp_path / "no-data")
    assert run.summary["status"] == "failed" and run.summary["error/type"] == "DataError"
    assert "EDGEJSON_DIR" in run.summary["error/message"] and run.exit_code == 1


def _agent_run(tmp_path: Path, run_scaling, fast_overrides, sweep_id: str, run_id: str, params: dict):
    """One run as ``wandb agent`` starts it (``Agent._command_run``), offline."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils
    from wandb.sdk.lib import config_util

    args = {key: {"value": value} for key, value in params.items()}
    param_path = tmp_path / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    config_util.save_config_file_from_dict(str(param_path), args)
    command = sweep_utils.create_sweep_command_args({"args": args})["args_no_hyphens"]
    return run_scaling("scaling.train", [*command, *fast_overrides], tmp_path, check=False, WANDB_SWEEP_ID=sweep_id,
                       WANDB_RUN_ID=run_id, WANDB_SWEEP_PARAM_PATH=str(param_path), WANDB_SILENT="false")


def test_sweep_agent_runs_keep_their_own_folders_and_the_swept_values(tmp_path, run_scaling, fast_overrides):
    sweep_id = "swp0test"
    for run_id, lr in (("agentrun1", 0.001), ("agentrun2", 0.003)):
        proc = _agent_run(tmp_path, run_scaling, fast_overrides, sweep_id, run_id,
                          {"model": "tiny_s", "finetune.optim.lr": lr, "seed": 0})
        assert proc.returncode == 0, proc.stderr[-3000:]
        output = proc.stdout + proc.stderr
        assert "was locked by 'sweep'" not in output and "Ignoring project" not in output

    # Both runs under <output_root>/multirun/<sweep id>/, named by their values: scaling.fit's
    # default (the newest sweep under multirun/) is this sweep, with both jobs in it.
    sweep = tmp_path / "multirun" / sweep_id
    assert newest_sweep(tmp_path / "multirun") == sweep
    jobs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert [("finetune.optim.lr=0.001" in p.name, "finetune.optim.lr=0.003" in p.name) for p in jobs] == [
        (True, False), (False, True)]
    for job, lr, run_id in zip(jobs, (0.001, 0.003), ("agentrun1", "agentrun2")):
        record = read_json(job / "results.json")
        assert record["status"] == "completed" and record["config"]["finetune"]["optim"]["lr"] == lr
        run = OfflineRun(job)
        assert run.dir.name.endswith(run_id)
        assert_full_config(run, job, swept=("model",))
        assert run.init_config["finetune.optim.lr"] == lr and run.init_config["model"] == "tiny_s"  # the sweep's own
        table = run.table()
        assert table["columns"] == list(PREDICTION_COLUMNS)
        row = dict(zip(table["columns"], table["data"][0]))
        assert row["prompt"] and json.loads(row["expected"]) and row["n_tokens"] > 0
        assert isinstance(row["looped"], bool) and isinstance(row["capped"], bool) and "error" in row


@pytest.mark.parametrize("env", [{}, {"WANDB_SWEEP_ID": "abc"}])
def test_run_dir_outside_and_under_a_sweep_agent(env, monkeypatch):
    # Under the agent a run's folder is its overrides (bookkeeping ones left out), as a multirun
    # job's: the same values are the same job (skipped when completed, refused while running).
    from scaling.jobs.config import run_dir

    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    got = run_dir("out", "sw", "tiny_s-full-greedy-s0", ["seed=1", "model=tiny_s", "threads=2"])
    assert got == ("out/multirun/sw/model=tiny_s,seed=1" if env else "out/runs/sw/tiny_s-full-greedy-s0")
    assert run_dir("out", "sw", "rn", []) == ("out/multirun/sw/rn" if env else "out/runs/sw/rn")

"""What a re-run does in each state, and faults a sweep meets, on tiny jobs run as
``python -m scaling.train`` subprocesses (README, "Reliability").

Kill-and-resume at a mid-epoch step and at an epoch boundary is in test_train.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest

from conftest import REPO_ROOT, scaling_env
from test_train import TESTS_PATH, job_dirs, predictions_of, results_of

BASE = ["model=tiny_s", "logger=none", "threads=1", "eval.limit=2"]


class WaitAtStep(L.Callback):
    """After optimiser step ``step``, touches ``marker`` and waits (up to two minutes) for
    ``go`` to exist: a job held in the middle of training, for as long as a test needs."""

    def __init__(self, step: int, marker: str, go: str) -> None:
        self.step, self.marker, self.go = step, Path(marker), Path(go)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.marker.touch()
            deadline = time.monotonic() + 120
            while not self.go.exists() and time.monotonic() < deadline:
                time.sleep(0.1)


def synth(out: Path, seed: int) -> Path:
    subprocess.run([sys.executable, "-m", "scaling.data", "synth", "--out", str(out), "--seed", str(seed),
                    "--n-train", "64", "--n-test", "16"], check=True, capture_output=True, cwd=REPO_ROOT)
    return out


def test_data_content_not_its_path_decides_skip_and_reuse(tmp_path, run_scaling, fast_overrides):
    a, b = synth(tmp_path / "data-a", seed=0), synth(tmp_path / "data-b", seed=1)
    c = tmp_path / "data-c"
    shutil.copytree(a, c)  # the same files under another path
    args = ["-m", *BASE, *fast_overrides, "sweep_name=data"]
    out = tmp_path / "out"

    run_scaling("scaling.train", [*args, f"data.root={a}"], out)
    (job,) = job_dirs(out / "multirun" / "data").values()  # data.root is bookkeeping: one folder for all
    ra = results_of(job)
    assert ra["status"] == "completed" and "reused_from" not in ra["train"]

    # Other data under the same overrides: trained again, never "completed with the same config_hash".
    run_scaling("scaling.train", [*args, f"data.root={b}"], out)
    rb = results_of(job)
    assert rb["status"] == "completed" and "reused_from" not in rb["train"]
    assert rb["config_hash"] == ra["config_hash"]
    assert rb["data_hash"] != ra["data_hash"] and rb["train_hash"] != ra["train_hash"]
    assert sorted(p.name for p in (out / "trained").iterdir()) == sorted([ra["train_hash"], rb["train_hash"]])

    # a's files under another path: a's fine-tune reused (the folder held b's result, so it runs).
    run_scaling("scaling.train", [*args, f"data.root={c}"], out)
    rc = results_of(job)
    assert rc["data_hash"] == ra["data_hash"] and rc["train_hash"] == ra["train_hash"]
    assert rc["train"]["reused_from"] == str(out / "trained" / ra["train_hash"])
    assert rc["metrics"] == ra["metrics"]
    assert rc["data"]["root"] == str(c) and set(rc["data"]["files"].values()) == set(ra["data"]["files"].values())

    # And once more: completed with the same config and the same data, skipped.
    mtime = (job / "results.json").stat().st_mtime_ns
    proc = run_scaling("scaling.train", [*args, f"data.root={c}"], out)
    assert f"skip {job}" in proc.stdout + proc.stderr and "1 jobs: 1 skipped" in proc.stderr
    assert (job / "results.json").stat().st_mtime_ns == mtime

    # Data that cannot be read (nor generated): the job fails, its completed result stays.
    (tmp_path / "a-file").write_text("")
    proc = run_scaling("scaling.train", [*args, f"data.root={tmp_path / 'a-file' / 'data'}"], out, check=False)
    assert proc.returncode == 1 and "1 jobs: 1 failed" in proc.stderr
    line, = [x for x in proc.stderr.splitlines() if x.startswith("  job 0 ")]
    assert "failed: FileExistsError" in line and "a-file" in line  # mkdir under a file
    assert line.endswith(f"({job / 'results.json'} left as it was: completed by an earlier run)")
    assert (job / "results.json").stat().st_mtime_ns == mtime and results_of(job)["status"] == "completed"


def test_a_second_process_on_a_running_job_refuses_it(tmp_path, run_scaling, fast_overrides):
    args = ["-m", *BASE, *fast_overrides, "sweep_name=lock"]
    marker, go = tmp_path / "paused", tmp_path / "go"
    pause = ["+callbacks.pause._target_=test_reliability.WaitAtStep", "+callbacks.pause.step=1",
             f"+callbacks.pause.marker={marker}", f"+callbacks.pause.go={go}"]
    first = subprocess.Popen([sys.executable, "-m", "scaling.train", *args, *pause], cwd=REPO_ROOT,
                             env=scaling_env(tmp_path, PYTHONPATH=TESTS_PATH), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first job never reached step 1"
            time.sleep(0.2)
        (job,) = job_dirs(tmp_path / "multirun" / "lock").values()
        holder = json.loads((job / "job.lock").read_text())
        assert holder["pid"] == first.pid
        running = (job / "results.json").read_bytes()

        second = run_scaling("scaling.train", args, tmp_path, check=False)
        assert second.returncode == 1
        assert "sweep lock: 1 jobs: 1 locked" in second.stderr
        line, = [x for x in second.stderr.splitlines() if x.startswith("  job 0 ")]
        assert f"locked: JobLocked: {job / 'job.lock'} is held by host {holder['host']} pid {first.pid}" in line
        assert (job / "results.json").read_bytes() == running  # nothing of the first job's touched
    finally:
        go.touch()
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    r = results_of(job)
    assert r["status"] == "completed" and r["machine"]["pid"] == first.pid and r["train"]["steps"] == 3
    assert not (job / "job.lock").exists()


def test_failed_jobs_make_the_sweep_exit_1_with_a_line_each(tmp_path, run_scaling, fast_overrides):
    # Job 0 would train nothing (refused before it starts), job 1 fails in training; the
    # override with "/" in its value (a path the random-init model never reads) stays part
    # of one folder name.
    proc = run_scaling("scaling.train", ["-m", *BASE, *fast_overrides, "finetune.max_steps=0,3",
                                         "finetune.optim.lr=-1e-3", "model.path=a/b", "sweep_name=bad"],
                       tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "sweep bad: 2 jobs: 2 failed" in proc.stderr
    lines = {x.split()[1]: x for x in proc.stderr.splitlines() if x.startswith("  job ")}
    assert ("failed: ValueError: finetune.max_steps=0: expected -1 (no cap) or a number of steps >= 1; to evaluate "
            "the model untrained use finetune=none") in lines["0"]
    assert "failed: ValueError: Invalid learning rate: -0.001" in lines["1"]
    sweep = tmp_path / "multirun" / "bad"
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(names) == 2 and all("model.path=a%2Fb" in n and (sweep / n / "results.json").is_file() for n in names)
    assert results_of(sweep / names[0])["status"] == "failed"
    assert not (tmp_path / "trained").exists()  # nothing cached, least of all untrained weights
    assert not (sweep / ".outcomes").exists()


def test_unwritable_train_cache_keeps_the_training_and_evaluates(tmp_path, run_scaling, fast_overrides):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made under it (root ignores permission bits, not this)
    proc = run_scaling("scaling.train", ["-m", *BASE, *fast_overrides, f"train_cache={blocker}/cache",
                                         "sweep_name=ro"], tmp_path)
    (job,) = job_dirs(tmp_path / "multirun" / "ro").values()
    r = results_of(job)
    assert r["status"] == "completed", r.get("error")
    assert r["train"]["steps"] == 3 and r["train"]["cache_error"].startswith(f"{blocker}")
    assert len(predictions_of(job)) == 2
    assert "train cache not written" in proc.stdout + proc.stderr


def test_corrupt_checkpoint_fails_the_job_with_what_to_do(tmp_path, run_scaling, fast_overrides):
    job = tmp_path / "runs" / "ck" / "tiny_s-full-greedy-s0"
    last = job / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 half a zip file")
    proc = run_scaling("scaling.train", [*BASE, *fast_overrides, "sweep_name=ck"], tmp_path, check=False)
    assert proc.returncode == 1
    assert f"error: job tiny_s-full-greedy-s0 failed: CheckpointError: {last} cannot be read (" in proc.stderr
    assert f"Move it aside (mv {last} {last}.bad) or delete it, then re-run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert results_of(job)["status"] == "failed" and last.exists()


@pytest.mark.parametrize("multirun", [True, False], ids=["sweep", "single"])
def test_unwritable_output_root_is_one_error_line(tmp_path, run_scaling, multirun):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_scaling("scaling.train", [*(["-m"] if multirun else []), *BASE, "sweep_name=x"], blocker / "out",
                       check=False)
    what = "sweep folder" if multirun else "job folder"
    assert proc.returncode == 2
    assert f"error: cannot write the {what} {blocker}/out/" in proc.stderr and "Not a directory" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ddp_workers_share_rank_0s_lock_and_write_nothing(tmp_path, run_scaling, fast_overrides):
    # Lightning starts DDP worker 1 by re-running the command: it must neither refuse the job
    # (rank 0 holds the lock) nor write the job's files, nor report a second sweep.
    proc = run_scaling("scaling.train", ["-m", *BASE, *fast_overrides, "trainer=ddp", "trainer.accelerator=cpu",
                                         "trainer.precision=32-true", "trainer.devices=2", "sweep_name=ddp"], tmp_path)
    assert proc.stderr.count("sweep ddp: ") == 1 and "sweep ddp: 1 jobs: 1 completed" in proc.stderr
    (job,) = job_dirs(tmp_path / "multirun" / "ddp").values()
    r = results_of(job)
    assert r["status"] == "completed" and r["train"]["world_size"] == 2
    assert (job / "train_ddp_process_1.log").exists()  # worker 1 ran
    assert len(predictions_of(job)) == 2 and not (job / "job.lock").exists()

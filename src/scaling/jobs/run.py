"""One job's life: its lock, skipping it, its resume point, ``results.json`` as it starts and
ends, its failures. Its steps (data -> model -> fine-tune -> evaluate -> record) are
:func:`scaling.pipeline.train_and_evaluate`, which hands back to :meth:`Job.start` once the
data is read: a completed job is skipped there, before any model is built.

What a re-run of the same job folder does (README, "Reliability"):

- held by a live process (``job.lock``): refused, nothing touched, reported as ``locked``;
- ``results.json`` completed with the same ``config_hash`` and the same data (``data_hash``):
  skipped;
- otherwise it runs: from ``checkpoints/last.ckpt`` when that checkpoint is this training's
  (:mod:`scaling.jobs.resume`), from the train cache when another job trained the same
  weights, else from step 0;
- a ``from_job`` run (``scaling.evaluate from_job=...``, :mod:`scaling.jobs.from_job`) never
  trains: it loads the finished job's weights, and fails before building a model when they
  are gone.

Every job that runs writes ``results.json`` (:mod:`scaling.results`) atomically: ``running``
as it starts, ``completed`` or ``failed`` (type, message, traceback) when it ends. A failure
while preparing (config, data) leaves a previously completed ``results.json`` in place.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from scaling.typed_config import dataclass_from_config
from scaling.data.io import DataError
from scaling.jobs.config import LockConfig
from scaling.jobs.hydra_runtime import hydra_job_dir
from scaling.jobs.identity import config_hash, data_hash
from scaling.jobs.lock import LOCK_FILE, JobLock, JobLocked, is_secondary_rank
from scaling.jobs.record import JobRecord
from scaling.jobs.resume import ResumePoint, resume_point
from scaling.jobs.tracking import build_loggers, finish_wandb, tidy_lightning_logging
from scaling.pipeline import train_and_evaluate
from scaling.results import RESULTS_FILE, atomic_write_json, read_results_json

log = logging.getLogger("scaling.train")

LOCKED = "locked"
"""The status :func:`run_job` returns for a job another process holds (never written)."""


def run_job(cfg: DictConfig, job_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run one job under its lock and return its results record (also in ``results.json``).

    A skipped job returns the earlier record with ``"skipped": True``; a job held by another
    process returns ``{"status": "locked", ...}`` and touches nothing.
    """
    job_dir = Path(job_dir) if job_dir is not None else hydra_job_dir()
    job_dir.mkdir(parents=True, exist_ok=True)
    tidy_lightning_logging()
    lock_cfg = dataclass_from_config(LockConfig, cfg.get("lock"), "lock")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if is_secondary_rank():  # a DDP worker of the process that holds the lock
        return Job(cfg, job_dir).run()
    lock = JobLock(job_dir / LOCK_FILE, heartbeat_s=lock_cfg.heartbeat_s, stale_after_s=lock_cfg.stale_after_s)
    try:
        lock.acquire()
    except JobLocked as exc:
        log.error("job %s not run: %s", cfg.run_name, exc)
        return {"status": LOCKED, "run_name": str(cfg.run_name), "job_dir": str(job_dir),
                "error": {"type": "JobLocked", "message": str(exc), "holder": exc.holder}}
    try:
        return Job(cfg, job_dir).run()
    finally:
        lock.release()


class Job:
    """The state of one job while it runs; :meth:`run` is its whole life, around
    :func:`~scaling.pipeline.train_and_evaluate`."""

    def __init__(self, cfg: DictConfig, job_dir: Path) -> None:
        self.cfg, self.job_dir = cfg, job_dir
        self.results_path = job_dir / RESULTS_FILE
        self.record = JobRecord.start(cfg, job_dir, config_hash(cfg))
        self.loggers: list = []
        self.resume: ResumePoint | None = None
        self.primary = not is_secondary_rank()
        """False in a DDP worker other than rank 0: it trains alongside rank 0 and writes
        nothing (no results.json, no train cache, no evaluation): rank 0 owns the job's files."""
        self.previous = _read_previous(self.results_path)
        """This folder's ``results.json`` from an earlier run (None when there is none)."""
        self.started = self.skipped = False

    # ------------------------------------------------------------------ the life of a job

    def run(self) -> dict[str, Any]:
        """The job's steps (:func:`scaling.pipeline.train_and_evaluate`), with every failure
        recorded and ``results.json`` written as it ends."""
        record, previous = self.record, self.previous
        try:
            if not train_and_evaluate(self):
                return {**previous, "skipped": True}
            record.completed()
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, KeyboardInterrupt too
            record.failed(exc)
            log.error("job %s failed: %s: %s", self.cfg.run_name, type(exc).__name__, exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            if isinstance(exc, SystemExit):
                # Lightning turns SIGTERM (preemption, `kill`) into SIGTERMException, a SystemExit
                # with no code: stop the whole sweep as the signal asks, with the shell's status
                # for it, instead of starting the next job.
                raise SystemExit(exc.code if exc.code not in (None, 0) else 128 + signal.SIGTERM) from exc
        finally:
            kept = False
            if not self.skipped and self.primary:
                record.finished()
                written = record.to_json()
                if self.started or (previous or {}).get("status") != "completed":
                    atomic_write_json(self.results_path, written)
                else:  # failed while preparing: a finished result of this folder stays readable
                    log.error("results.json of %s left as it was (completed); this run failed before it started",
                              self.job_dir)
                    kept = True
                if record.status == "failed" and not self.loggers:
                    self.loggers = self._failure_loggers()
                finish_wandb(self.loggers, written)
        outcome = record.to_json()
        return {**outcome, "results_kept": True} if kept else outcome

    def start(self, legacy_train_hash: str | None, from_job: bool) -> bool:
        """Called by the pipeline once the data is read (the hashes known), before any model:
        False when this job was completed before (skipped). Otherwise finds the checkpoint
        to resume from (never for ``from_job``, which does not train), writes
        ``results.json`` as ``running`` and starts the loggers."""
        record = self.record
        if self.completed_before(self.previous):
            self.skipped = True
            return False
        if self.cfg.get("resume", True) and not from_job:
            self.resume = resume_point(self.job_dir, (record.train_hash, legacy_train_hash), self.previous,
                                       record.config_hash)
        if self.primary:
            atomic_write_json(self.results_path, record.to_json())
            self.started = True
        # The W&B run starts here, with the whole config: a job that fails later keeps it.
        self.loggers = build_loggers(self.cfg, record.config)
        return True

    def _failure_loggers(self) -> list:
        """The W&B run of a job that failed before its loggers were made (while preparing):
        its config and error are recorded there too. One that cannot be made is only logged."""
        try:
            return build_loggers(self.cfg, self.record.config)
        except Exception as exc:  # noqa: BLE001 - the job's own error is what gets reported
            log.warning("no W&B run for the failed job %s: %s: %s", self.cfg.run_name, type(exc).__name__, exc)
            return []

    def completed_before(self, previous: dict | None) -> bool:
        """Whether ``previous`` is this job, completed: same config_hash, same data."""
        record = self.record
        if not self.cfg.get("skip_completed", True) or not previous or previous.get("status") != "completed":
            return False
        if previous.get("config_hash") != record.config_hash:
            return False
        files = (previous.get("data") or {}).get("files")
        before = data_hash(files) if isinstance(files, dict) and files else None
        if before != record.data_hash:
            log.info("%s: results.json is completed with the same config_hash but other data (data_hash %s, now %s): "
                     "running again", self.job_dir, before, record.data_hash)
            return False
        log.info("skip %s: results.json is completed with the same config_hash %s and data_hash %s", self.job_dir,
                 record.config_hash, record.data_hash)
        return True


def _read_previous(path: Path) -> dict | None:
    """The job folder's ``results.json`` from an earlier run; None when absent or unreadable
    (truncated JSON, bytes that are not UTF-8, not an object)."""
    try:
        return read_results_json(path)
    except DataError:
        return None

"""The record a job writes to ``results.json``, as the job fills it, and where and with what it ran.

:class:`JobRecord` is the writer's side of the contract in :mod:`scaling.results` (whose
:class:`~scaling.results.record.Results` is the reader's): one typed field per top-level key,
in the order the job reaches them. Each step of :mod:`scaling.pipeline` fills its own section;
a section the job never reached (a job that failed while reading its data has no ``model``) is
absent from the file, which is how a reader tells "not reached" from a recorded ``null``
(``train: null`` for ``finetune=none``, ``eval: null`` for ``eval.split=none``).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
import traceback
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from scaling.hardware import machine_bf16_record
from scaling.results import RESULTS_VERSION, DataSection, TrainSection

VERSIONED_PACKAGES = ("scaling", "torch", "transformers", "lightning", "peft", "xgrammar", "datasets", "hydra-core",
                      "wandb", "jsonschema")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def machine_record() -> dict:
    """Where the job ran: host, process, torch threads, accelerator."""
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            **machine_bf16_record()}


class _NotReached:
    """The value of a section the job has not filled (left out of ``results.json``)."""

    def __repr__(self) -> str:
        return "NOT_REACHED"


NOT_REACHED: Any = _NotReached()


@dataclass
class JobRecord:
    """``results.json`` as one job writes it (format: :mod:`scaling.results`). Mutable: the job
    and its steps fill it; :meth:`to_json` is what goes to the file."""

    run_name: str
    group: str
    """The sweep (``sweep_name``): the W&B group and the multirun folder's name."""
    job_dir: str
    config: dict[str, Any]
    """The resolved Hydra config."""
    config_hash: str
    """The config without bookkeeping keys (:func:`scaling.jobs.identity.config_hash`)."""
    seed: int
    versions: dict[str, str]
    machine: dict[str, Any]
    created_at: str
    results_version: int = RESULTS_VERSION
    status: str = "running"
    """``running`` as the job starts, ``completed`` or ``failed`` when it ends."""
    error: dict[str, str] | None = None
    """``{"type", "message", "traceback"}`` of a failed job."""
    data_hash: str | None = None
    """The content of ``data.files`` (step 1)."""
    train_hash: str | None = None
    """The training's identity, the train cache's key (step 1)."""
    # The steps' sections, in the order the steps fill them (scaling.pipeline).
    data: DataSection = NOT_REACHED
    source_job: dict[str, Any] = NOT_REACHED
    """``from_job`` runs only: the finished job scored again."""
    model: dict[str, Any] = NOT_REACHED
    category: str = NOT_REACHED
    finetune: dict[str, Any] = NOT_REACHED
    train: TrainSection | None = NOT_REACHED
    """None when nothing was trained (``finetune=none``)."""
    params: dict[str, int] = NOT_REACHED
    decode: dict[str, Any] = NOT_REACHED
    eval: dict[str, Any] | None = NOT_REACHED
    metrics: dict[str, Any] | None = NOT_REACHED
    """None with ``eval.split=none``."""
    finished_at: str = NOT_REACHED

    # The order of results.json's keys: the contract's, as jobs have always written them.
    _ORDER = ("results_version", "status", "error", "run_name", "group", "job_dir", "config", "config_hash",
              "data_hash", "train_hash", "seed", "versions", "machine", "created_at", "data", "source_job", "model",
              "category", "finetune", "train", "params", "decode", "eval", "metrics", "finished_at")

    @classmethod
    def start(cls, cfg: DictConfig, job_dir: Path, config_hash: str) -> "JobRecord":
        """A job's record as it starts (``status: running``); its steps fill the rest."""
        return cls(run_name=str(cfg.run_name), group=str(cfg.sweep_name), job_dir=str(job_dir),
                   config=OmegaConf.to_container(cfg, resolve=True), config_hash=config_hash, seed=int(cfg.seed),
                   versions=package_versions(), machine=machine_record(), created_at=now())

    def completed(self) -> None:
        self.status = "completed"

    def failed(self, exc: BaseException) -> None:
        """Records ``exc`` (call it inside the ``except`` that caught it: the traceback is its)."""
        self.status = "failed"
        self.error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}

    def finished(self) -> None:
        self.finished_at = now()

    def to_json(self) -> dict[str, Any]:
        """The ``results.json`` object: every key the job reached, in the contract's order."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {key: values[key].to_json() if isinstance(values[key], (DataSection, TrainSection)) else values[key]
                for key in self._ORDER if values[key] is not NOT_REACHED}

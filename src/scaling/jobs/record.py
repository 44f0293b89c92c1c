"""The parts of a job's ``results.json`` that describe where and with what it ran."""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from scaling.hardware import machine_bf16_record
from scaling.results import RESULTS_VERSION

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


def new_record(cfg: DictConfig, job_dir: Path, config_hash: str) -> dict[str, Any]:
    """A job's record as it starts (``status: running``); the job fills in the rest."""
    return {
        "results_version": RESULTS_VERSION,
        "status": "running",
        "error": None,
        "run_name": str(cfg.run_name),
        "group": str(cfg.sweep_name),
        "job_dir": str(job_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "config_hash": config_hash,
        "data_hash": None,
        "train_hash": None,
        "seed": int(cfg.seed),
        "versions": package_versions(),
        "machine": machine_record(),
        "created_at": now(),
    }

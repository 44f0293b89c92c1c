"""Where an interrupted job resumes: ``<job_dir>/checkpoints/last.ckpt``, if it is this training's.

Every checkpoint carries the :func:`~scaling.jobs.identity.train_hash` of the training that
wrote it (:class:`TrainIdentity`). A re-run resumes from ``last.ckpt`` only when that hash is
its own: a checkpoint of another config or other data (the job folder re-run after a change)
is moved aside to ``checkpoints.superseded/`` and training starts from step 0. A checkpoint
that cannot be read fails the job with a message naming the file and what to do; it is never
deleted for the user.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch

from scaling.errors import LocatedError

log = logging.getLogger("scaling.train")

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
SUPERSEDED_DIR = "checkpoints.superseded"
TRAIN_HASH_KEY = "scaling_train_hash"


class CheckpointError(LocatedError, RuntimeError):
    """``last.ckpt`` exists but cannot be read."""


class TrainIdentity(L.Callback):
    """Stores the training's hash in every checkpoint Lightning writes."""

    def __init__(self, train_hash: str) -> None:
        self.train_hash = train_hash

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[TRAIN_HASH_KEY] = self.train_hash


@dataclass(frozen=True)
class ResumePoint:
    path: Path
    step: int
    """The checkpoint's ``global_step`` (optimiser steps already taken)."""


def read_checkpoint_head(path: Path) -> dict[str, Any]:
    """The checkpoint's small entries (tensors memory-mapped, not read). Raises
    :class:`CheckpointError` naming the file when it is truncated or corrupt."""
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
        if not isinstance(ckpt, dict) or "global_step" not in ckpt:
            raise ValueError("not a Lightning checkpoint (no global_step)")
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError... for a bad file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} cannot be read ({type(exc).__name__}: {reason}): it is truncated or corrupt. Move it aside "
            f"(mv {path} {path}.bad) or delete it, then re-run: the job trains again from step 0") from None
    return {"global_step": int(ckpt["global_step"]), TRAIN_HASH_KEY: ckpt.get(TRAIN_HASH_KEY)}


def resume_point(job_dir: Path, train_hash: str | Sequence[str], previous: dict | None,
                 config_hash: str) -> ResumePoint | None:
    """The checkpoint this job resumes from, or None (train from step 0).

    ``train_hash`` may list several hashes of this training (its own, then the one of train
    identity 1, :func:`scaling.jobs.identity.train_hashes`). A checkpoint written before
    checkpoints carried their training's hash is this training's when the job's last
    ``results.json`` has the same ``config_hash`` (the attempt that wrote it).
    """
    hashes = [train_hash] if isinstance(train_hash, str) else list(train_hash)
    ckpt_dir = job_dir / CHECKPOINT_DIR
    last = ckpt_dir / LAST_CHECKPOINT
    if not last.exists():
        return None
    head = read_checkpoint_head(last)
    stored = head[TRAIN_HASH_KEY]
    ours = stored in hashes if stored is not None else (previous or {}).get("config_hash") == config_hash
    if ours:
        return ResumePoint(last, head["global_step"])
    aside = job_dir / SUPERSEDED_DIR
    if aside.exists():
        shutil.rmtree(aside)
    ckpt_dir.rename(aside)
    log.warning("%s is from another training (train_hash %s, this job's is %s): moved to %s, training from step 0",
                last, stored or "unknown", hashes[0], aside)
    return None

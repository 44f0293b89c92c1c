"""The job's own config types and the resolvers its YAML files use.

Importing this module registers the resolvers (``${wandb_offline:}``, ``${job_type:...}``,
``${job_dirname:...}``, ``${bookkeeping_keys:}``, ``${run_dir:...}``,
``${slurm_tasks_per_node:...}``), so it is imported by every entry point
before Hydra composes a config. It imports neither torch nor Lightning: ``--help``,
``--cfg`` and the parent process of a parallel sweep stay light.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from scaling.data.io import TIERS
from scaling.jobs.identity import BOOKKEEPING_KEYS, job_dirname


LOGITS_AT = ("targets", "all")


@dataclass(frozen=True)
class FinetuneConfig:
    """How a job trains (``conf/finetune/*.yaml``)."""

    method: str = "full"
    """``full`` (all weights), ``lora`` (peft adapters, merged before evaluation) or ``none``
    (evaluate the base model: "base vs fine-tuned" is one sweep over this key)."""
    epochs: int = 1
    """Passes over the training split (at least 1 unless ``method`` is ``none``)."""
    max_steps: int = -1
    """Cap on optimiser steps (-1: no cap; 0 is refused: it would train nothing)."""
    batch_size: int = 8
    """Examples per micro-batch (length-grouped, dynamically padded)."""
    max_batch_tokens: int | None = 8192
    """A micro-batch stops growing when examples x longest length would exceed this."""
    accumulate_grad_batches: int = 1
    max_length: int | None = 4096
    """Longest example in tokens; longer ones lose prompt tokens from the left, never answer."""
    val_fraction: float = 0.0
    """Fraction of each schema's training records held out for validation loss (0: none)."""
    tier_repeat: dict[str, int] | None = None
    """Times a tier's training records are seen per epoch (``{complex: 2}``; unnamed tiers
    once): more updates where a model fails without a second epoch over what it already
    fits. Each repeat is its own shuffled pass. Validation records are never repeated."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: more compute for far less
    activation memory. Only where memory requires it: at 135M on a 2-core CPU it costs 16% of
    the tokens/s, and without it the longest complex-tier batches peak at ~15 GB resident
    (BENCHMARKS "Training at the CPU's limit"); turn it on for larger rungs or batches."""
    logits_at: str = "targets"
    """Where the output projection and the loss are computed: ``targets``, only at the positions
    whose next token carries loss (the answer and its EOS: about a third of the tokens;
    the loss is the same mean over the same tokens), or ``all`` (every position, the model's
    own loss: what jobs before this option computed). Over a 49,152-token vocabulary the
    projection and its softmax are a fifth of a 135M model's training FLOPs."""
    checkpoint_every_n_steps: int = 50
    """How often ``last.ckpt`` is refreshed (the resume point of a killed job)."""
    optim: dict | None = None
    """See :class:`scaling.module.OptimConfig`."""
    lora: dict | None = None
    """peft LoRA settings: ``r``, ``alpha``, ``dropout``, ``target_modules``."""

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "none"):
            raise ValueError(f"finetune.method={self.method!r}: expected full, lora or none")
        if self.method == "lora" and not self.lora:
            raise ValueError("finetune.method=lora needs finetune.lora settings (r, alpha, ...)")
        if self.method != "none":
            # Zero steps would record an untrained model as a fine-tune (and cache it).
            if self.max_steps == 0 or self.max_steps < -1:
                raise ValueError(f"finetune.max_steps={self.max_steps}: expected -1 (no cap) or a number of steps "
                                 f">= 1; to evaluate the model untrained use finetune=none")
            if self.epochs < 1:
                raise ValueError(f"finetune.epochs={self.epochs}: expected >= 1 with finetune.method="
                                 f"{self.method}; to evaluate the model untrained use finetune=none")
        if self.logits_at not in LOGITS_AT:
            raise ValueError(f"finetune.logits_at={self.logits_at!r}: expected one of {', '.join(LOGITS_AT)}")
        for tier, times in (self.tier_repeat or {}).items():
            if tier not in TIERS:
                raise ValueError(f"finetune.tier_repeat.{tier}: unknown tier (expected {', '.join(TIERS)})")
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ValueError(f"finetune.tier_repeat.{tier}={times!r}: expected a whole number >= 1")


@dataclass(frozen=True)
class LockConfig:
    """The job lock (``lock`` in ``conf/train.yaml``; see :mod:`scaling.jobs.lock`)."""

    heartbeat_s: float = 60.0
    """How often the holder rewrites its lock file (the heartbeat other hosts judge)."""
    stale_after_s: float = 600.0
    """A lock held from another host is stale once its heartbeat is this old. On the same
    host a lock is stale as soon as its process is gone, whatever its age."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_s < self.stale_after_s:
            raise ValueError(f"lock.heartbeat_s={self.heartbeat_s} must be > 0 and below lock.stale_after_s="
                             f"{self.stale_after_s}, or a live holder would look stale")


EVAL_SPLITS = ("test", "val", "none")


def eval_split(cfg: Any, finetune: FinetuneConfig) -> str:
    """``eval.split``, checked: ``test`` (the reported score), ``val`` (the records that
    ``finetune.val_fraction`` holds out of train: for choosing settings without touching
    test) or ``none`` (train only; validation loss is still logged)."""
    split = str((cfg.get("eval") or {}).get("split", "test"))
    if split not in EVAL_SPLITS:
        raise ValueError(f"eval.split={split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    if split == "val" and not finetune.val_fraction > 0:
        raise ValueError("eval.split=val scores the records held out of train, but finetune.val_fraction is "
                         f"{finetune.val_fraction}: set finetune.val_fraction (e.g. 0.1)")
    return split


# --------------------------------------------------------------------------------------
# resolvers used by the configs
# --------------------------------------------------------------------------------------


def wandb_offline() -> bool:
    """Offline unless W&B credentials exist (or WANDB_MODE says otherwise): never hang."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" not in netrc.read_text()
    except (OSError, UnicodeDecodeError):
        return True


WANDB_SWEEP_ENV = "WANDB_SWEEP_ID"
"""Set by ``wandb agent`` in the environment of each run it starts."""


def run_dir(output_root: str, sweep_name: str, run_name: str, overrides: Any) -> str:
    """``hydra.run.dir``, a single job's folder: ``<output_root>/runs/<sweep_name>/<run_name>``.
    A run started by a W&B sweep agent goes where a multirun's job would,
    ``<output_root>/multirun/<sweep_name>/<its overrides>`` (:func:`job_dirname`): there
    ``scaling.fit`` finds it, runs with other swept values never share a folder, and a run
    with the same values is the same job (skipped when completed, refused while running)."""
    if os.environ.get(WANDB_SWEEP_ENV):
        return f"{output_root}/multirun/{sweep_name}/{job_dirname(overrides or []) or run_name}"
    return f"{output_root}/runs/{sweep_name}/{run_name}"


def slurm_tasks_per_node(devices: Any) -> int:
    """``${slurm_tasks_per_node:${trainer.devices}}`` (``hydra/launcher=slurm_ddp``): one SLURM
    task (and GPU) per device Lightning's DDP uses on a node. A number (or a list of GPU ids):
    SLURM must be told how many, where Lightning would accept ``auto``."""
    if isinstance(devices, (list, tuple)) or (hasattr(devices, "__len__") and not isinstance(devices, str)):
        devices = len(devices)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"hydra/launcher=slurm_ddp starts one task per GPU: set trainer.devices=<GPUs per node> "
                         f"(a number; got {devices!r})")
    return devices


def auto_precision(accelerator: str) -> str:
    """``${auto_precision:cpu}``: bf16-mixed where the hardware has fast bf16 (scaling.hardware)."""
    from scaling.hardware import resolve_precision  # here: it imports torch, which --help never needs

    return resolve_precision("auto", accelerator)


RESOLVERS = {
    "wandb_offline": wandb_offline,
    "job_type": lambda method: "eval" if method == "none" else "train",
    "job_dirname": job_dirname,
    "bookkeeping_keys": lambda: list(BOOKKEEPING_KEYS),
    "auto_precision": auto_precision,
    "run_dir": run_dir,
    "slurm_tasks_per_node": slurm_tasks_per_node,
}

for _name, _fn in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)

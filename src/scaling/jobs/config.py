"""The job's own config types, the schema of the config tree, and the resolvers its YAML files use.

Importing this module registers the resolvers (``${wandb_offline:}``, ``${job_type:...}``,
``${job_dirname:...}``, ``${bookkeeping_keys:}``, ``${run_dir:...}``,
``${slurm_tasks_per_node:...}``) and the config tree's schema
(:func:`register_schemas`), so it is imported by every entry point before Hydra composes a
config. It imports neither torch nor Lightning: ``--help``, ``--cfg`` and the parent process
of a parallel sweep stay light.

**The schema.** ``conf/train.yaml`` and ``conf/evaluate.yaml`` start from
:class:`TrainConfig` / :class:`EvaluateConfig` (stored in Hydra's ConfigStore as
``train_schema`` / ``evaluate_schema``), whose groups are the dataclasses the job builds:
``model`` :class:`~scaling.models.spec.ModelSpec`, ``data``
:class:`~scaling.data.source.DataSpec` (``data.prompt``
:class:`~scaling.data.prompts.PromptFormat`), ``finetune`` :class:`FinetuneConfig`
(``finetune.optim`` :class:`~scaling.optim.OptimConfig`), ``decode``
:class:`~scaling.decode.config.DecodeConfig`, ``eval`` :class:`EvalConfig`, ``lock``
:class:`LockConfig`. A value of the wrong type or a key the class does not have fails when
Hydra composes (``--cfg job`` included), naming the full key (``finetune.epochs``), before any
data or model is loaded. A group option's YAML holds what the choice changes; every other key
takes the dataclass's default, documented once on its field. ``trainer``, ``logger`` and
``callbacks`` are other libraries' classes (``_target_``), checked when instantiated.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scaling.typed_config import field_docs, structured_schema
from scaling.data.io import TIERS, DataError
from scaling.data.prompts import PromptFormat
from scaling.data.source import DataSpec
from scaling.decode.config import DecodeConfig
from scaling.jobs.identity import BOOKKEEPING_KEYS, HASHED_TARGETS, job_dirname
from scaling.models.spec import ModelSpec
from scaling.optim import OptimConfig
from scaling.results import RunFolder


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
    """Micro-batches per optimiser step (Lightning's ``accumulate_grad_batches``): a larger
    effective batch where memory holds only ``batch_size`` examples at once."""
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
    """See :class:`scaling.optim.OptimConfig`."""
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
    """``eval.split`` (:attr:`EvalConfig.split`), checked; ``val`` needs ``finetune.val_fraction``."""
    split = str((cfg.get("eval") or {}).get("split", "test"))
    if split not in EVAL_SPLITS:
        raise ValueError(f"eval.split={split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    if split == "val" and not finetune.val_fraction > 0:
        raise ValueError("eval.split=val scores the records held out of train, but finetune.val_fraction is "
                         f"{finetune.val_fraction}: set finetune.val_fraction (e.g. 0.1)")
    return split


@dataclass(frozen=True)
class EvalConfig:
    """What a job scores (``eval`` in ``conf/train.yaml``)."""

    split: str = "test"
    """``test``: the reported score. ``val``: the records ``finetune.val_fraction`` holds out of
    train, for choosing settings (lr, epochs, prompt) without looking at test. ``none``: train
    only (validation loss still logged)."""
    limit: int | None = None
    """First N evaluation records only (debugging); null: all."""
    train_limit: int | None = None
    """First N training records only (debugging); null: all. It changes the training data, so
    it is part of the train hash."""


@dataclass(frozen=True)
class TrainConfig:
    """One job, ``python -m scaling.train`` (``conf/train.yaml``): its groups, then the job's own keys."""

    model: dict = field(default_factory=dict)
    """``conf/model/<key>.yaml``: a :class:`~scaling.models.spec.ModelSpec`."""
    data: dict = field(default_factory=dict)
    """``conf/data/*.yaml``: a :class:`~scaling.data.source.DataSpec`."""
    trainer: dict = field(default_factory=dict)
    """``conf/trainer/*.yaml``: Lightning's ``Trainer`` (partial: callbacks and loggers are added by the job)."""
    finetune: dict = field(default_factory=dict)
    """``conf/finetune/*.yaml``: a :class:`FinetuneConfig`."""
    logger: dict = field(default_factory=dict)
    """``conf/logger/*.yaml``: Lightning loggers by name (``{}``: none)."""
    decode: dict = field(default_factory=dict)
    """``conf/decode/*.yaml``: a :class:`~scaling.decode.config.DecodeConfig`."""
    callbacks: dict = field(default_factory=dict)
    """``conf/callbacks/*.yaml``: Lightning callbacks by name (bookkeeping: not in the hashes)."""
    seed: int = 0
    """Seeds model initialisation, data order and the held-out split."""
    threads: int | None = None
    """torch CPU threads for this job (null: torch's default, one per core). Set it when jobs run
    side by side (``hydra/launcher=parallel``): two jobs of 2 threads on 2 cores run far slower
    than two of 1, because their OpenMP threads spin against each other."""
    sweep_name: str = "${oc.env:WANDB_SWEEP_ID,${now:%Y-%m-%d}_${now:%H-%M-%S}}"
    """The sweep's name: its folder under ``outputs/multirun/`` and its W&B group. Re-run a sweep
    with the same ``sweep_name`` to skip finished jobs and resume interrupted ones. Default: the
    date and time, or under a W&B sweep agent the W&B sweep's id (all its runs in one folder)."""
    run_name: str = "${model.key}-${finetune.method}-${decode.mode}-s${seed}"
    """The job's name (W&B run name; the folder of a single run under ``outputs/runs/<sweep_name>/``)."""
    output_root: str = "${oc.env:SCALING_OUTPUT_ROOT,outputs}"
    """Where runs, sweeps, the train cache and generated data go."""
    skip_completed: bool = True
    """Skip a job whose ``results.json`` is completed with the same ``config_hash`` and data (``data_hash``)."""
    train_cache: str | None = "${output_root}/trained"
    """Fine-tuned weights keyed by the training part of the config (:mod:`scaling.jobs.cache`):
    jobs that differ only in decoding or in the test set train once. null disables."""
    resume: bool = True
    """Resume from ``<job_dir>/checkpoints/last.ckpt`` when it is this training's (its ``train_hash``)."""
    lock: LockConfig = field(default_factory=LockConfig)
    """One process per job (:class:`LockConfig`)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """What the job scores (:class:`EvalConfig`)."""


@dataclass(frozen=True)
class EvaluateConfig(TrainConfig):
    """``python -m scaling.evaluate`` (``conf/evaluate.yaml``): a job with ``finetune=none``, or a
    finished job scored again without training (``from_job``)."""

    from_job: str | None = None
    """A finished job's folder (``results.json``): score its model, with its own config
    (prompt, decoding, model, training data) and its fine-tuned weights from the train cache,
    on the test set this command names (``data.test_file=...``); other keys given on the
    command line override the job's. Nothing is trained (:mod:`scaling.jobs.from_job`)."""


#: The ``_target_`` each typed group instantiates. They are in the recorded configs, so in the
#: hashes: finished jobs are recognised only while these strings hash as they did (one that
#: moves hashes under its former name, :data:`scaling.jobs.identity.HASHED_TARGETS`).
TARGETS = {"model": "scaling.models.ModelSpec", "data": "scaling.data.source.DataSpec",
           "finetune": "scaling.jobs.config.FinetuneConfig", "decode": "scaling.decode.DecodeConfig"}


def current_targets(cfg: DictConfig) -> DictConfig:
    """``cfg`` (a recorded config merged onto the schema) with each group's ``_target_`` that
    names a former place (:data:`~scaling.jobs.identity.HASHED_TARGETS`) set to today's, in
    place, so it can be built; its hashes stay as they were."""
    today = {old: new for new, old in HASHED_TARGETS.items()}
    for group in TARGETS:
        target = OmegaConf.select(cfg, f"{group}._target_", default=None)
        if target in today:
            OmegaConf.update(cfg, f"{group}._target_", today[target])
    return cfg


#: The typed groups of the config tree, by key (a nested group by its dotted key), and the
#: dataclass each is built from: the schemas below and ``--help``'s settings read this one table.
GROUP_CLASSES: dict[str, type] = {
    "model": ModelSpec, "data": DataSpec, "data.prompt": PromptFormat, "finetune": FinetuneConfig,
    "finetune.optim": OptimConfig, "decode": DecodeConfig, "lock": LockConfig, "eval": EvalConfig,
}
#: The config each entry point composes (``conf/<job>.yaml``), by ``hydra.job.name``.
JOB_CLASSES: dict[str, type] = {"train": TrainConfig, "evaluate": EvaluateConfig}


def _subgroups(prefix: str) -> dict[str, str]:
    """The groups one level under ``prefix`` ("" for the root): ``{field name: group key}``."""
    depth = prefix.count(".") + 1 if prefix else 0
    return {key.rsplit(".", 1)[-1]: key for key in GROUP_CLASSES
            if key.startswith(prefix + "." if prefix else "") and key.count(".") == depth}


@functools.lru_cache(maxsize=None)
def schemas() -> dict[str, type]:
    """The config tree's schemas by ConfigStore name (see the module docstring): made once,
    so a composed config and a check against the schema share one class."""
    here = {"module": __name__}  # importable by name: configs typed with them pickle

    def schema(key: str) -> type:
        nested = {name: schema(sub) for name, sub in _subgroups(key).items()}
        return structured_schema(GROUP_CLASSES[key], TARGETS.get(key), nested=nested or None, **here)

    groups = {name: schema(key) for name, key in _subgroups("").items()}
    return {job: structured_schema(cls, nested=groups, **here) for job, cls in JOB_CLASSES.items()}


def settings_help(job: str) -> str:
    """``python -m scaling.<job> --help``'s settings: every typed key with its type, its default
    and its docstring (:func:`~scaling.typed_config.field_docs`), the job's own keys first, then
    each group's. The docstrings are the one description of a setting: the YAML files hold only
    what a choice changes."""
    lines: list[str] = []

    def describe(prefix: str, cls: type) -> None:
        docs = field_docs(cls)
        subgroups = _subgroups(prefix.rstrip("."))
        own = [f for f in dataclasses.fields(cls) if f.name not in subgroups]
        for f in own:
            lines.append(f"  {prefix}{f.name}: {f.type} = {_default_text(f)}")
            doc = _plain_doc(docs.get(f.name, ""))
            if doc:
                lines.extend(textwrap.wrap(doc, 96, initial_indent=" " * 6, subsequent_indent=" " * 6))
        for key in subgroups.values():
            group = GROUP_CLASSES[key]
            lines.extend(["", f"{key}: {_plain_doc((group.__doc__ or '').strip().splitlines()[0])}"])
            describe(key + ".", group)

    describe("", JOB_CLASSES[job])
    return "\n".join(lines)


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(see below)"
    return value if isinstance(value, str) else json.dumps(value)


def _plain_doc(doc: str) -> str:
    """A docstring as one line of plain text: Sphinx roles and literals unwrapped."""
    doc = re.sub(r":\w+:`~?([^`<]*?)(?: <[^>]*>)?`", r"\1", doc)
    return " ".join(doc.replace("``", "").split())


def register_schemas() -> None:
    """Store :func:`schemas` in Hydra's ConfigStore as the options of the group ``schema``, at
    the config's root: ``conf/train.yaml`` starts with ``schema: train``, ``conf/evaluate.yaml``
    overrides it with ``schema: evaluate``."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in schemas().items():
        store.store(group="schema", name=name, node=node, package="_global_")


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


def from_job_run_name(from_job: str | None, default: str) -> str:
    """``${from_job_run_name:${from_job},<default>}``: the run name a finished job recorded (its
    folder's name when it has none: a missing or unreadable job is reported when the run
    starts), or ``default`` without ``from_job``."""
    if not from_job:
        return default
    try:
        name = RunFolder(from_job).results_json().get("run_name")
    except DataError:
        name = None
    return str(name or Path(from_job).name)


RESOLVERS = {
    "wandb_offline": wandb_offline,
    "job_type": lambda method: "eval" if method == "none" else "train",
    "job_dirname": job_dirname,
    "bookkeeping_keys": lambda: list(BOOKKEEPING_KEYS),
    "auto_precision": auto_precision,
    "run_dir": run_dir,
    "slurm_tasks_per_node": slurm_tasks_per_node,
    "from_job_run_name": from_job_run_name,
    # conf/hydra/default.yaml's help template; '$' doubled: Hydra fills the template with string.Template
    "config_help": lambda job: settings_help(str(job)).replace("$", "$$"),
}

for _name, _fn in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)

register_schemas()

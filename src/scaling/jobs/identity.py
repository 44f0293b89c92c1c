"""What identifies a job: its config without the bookkeeping keys, and its data's content.

:data:`BOOKKEEPING_KEYS` is the one list of config keys that say where, under which name or
how verbosely a job runs, never what it computes. Three things read it and nothing else:

- :func:`config_hash` and :func:`train_hash` leave these keys out, so a re-run recognises
  its finished jobs (``skip_completed``) and its fine-tuned weights (``train_cache``);
- :func:`job_dirname` leaves their overrides out of a sweep job's folder name;
- the train cache is keyed by :func:`train_hash`.

A key covers everything below it: ``callbacks`` covers ``callbacks.kill.step``.

The data's identity (:func:`data_hash`) is the SHA-256 of the files a job read, never
their path: ``data.root`` is bookkeeping, so another path to the same files is the same job,
and other files under any path are another job.

**The training identity does not depend on the test set** (since train identity 2): the
train hash leaves out ``data.test_file``, and its data part (:func:`train_data_hash`) is the
content of what training reads, the training file and the schemas. A finished job can
then be scored on another test set (``data.test_file=...``, or ``scaling.evaluate
from_job=...``) with its cached weights. Identity 1 (:func:`legacy_train_hash`) hashed the
test file too; weights cached and checkpoints written under it are still recognised: the
train cache and resume look for both hashes (:func:`train_hashes`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from scaling.data.prompts import DEFAULT_INSTRUCTION

BOOKKEEPING_KEYS: tuple[str, ...] = (
    "sweep_name", "output_root", "run_name", "train_cache", "skip_completed", "resume", "lock", "logger",
    "callbacks", "hydra", "threads",
    "trainer.enable_progress_bar", "trainer.default_root_dir", "trainer.log_every_n_steps",
    "decode.progress",
    "data.root",
    "finetune.checkpoint_every_n_steps", "from_job",
    # How fast a job trains, not what: the same loss and update, up to float rounding.
    "finetune.gradient_checkpointing", "finetune.logits_at", "finetune.optim.fused",
)
"""Config keys (dotted) that never change what a job computes (only where it runs, under which
name, how verbosely, or how fast: the training-speed options compute the same loss and update
up to float rounding)."""

HASH_OMIT_AT_DEFAULT: tuple[tuple[str, Any], ...] = (
    ("finetune.tier_repeat", None), ("data.train_version", None), ("model.depth", None), ("data.train_fraction", 1.0),
    ("data.exclude_contradicting", False),
    ("model.grow", None),
    ("decode.grounded", False), ("data.extra_train_file", None), ("data.extra_train_fraction", 1.0),
    # Keys the typed schema (scaling.jobs.config) fills in from the dataclasses, which the
    # YAML files of earlier runs did not write.
    ("model.hub_id", None), ("model.revision", None), ("model.path", None), ("model.gguf_package", None),
    ("model.gguf_file", None), ("model.arch", {}), ("model.trust_remote_code", False), ("model.init_std", 0.02),
    ("data.prompt.instruction", DEFAULT_INSTRUCTION), ("finetune.optim.betas", [0.9, 0.95]),
    ("finetune.optim.eps", 1e-8),
)
"""Options added after runs existed (and keys the typed schema fills in that earlier configs
did not hold): while at their default they hash as absent, so finished jobs and cached
weights made before them stay recognised."""

HASHED_TARGETS: dict[str, str] = {"scaling.jobs.config.FinetuneConfig": "scaling.train.FinetuneConfig"}
"""A group's ``_target_`` that moved after runs existed -> the name it hashes under, the one
recorded configs hold: ``finetune``'s pointed at a re-export in ``scaling.train`` before it named
the defining module. Hashed under the old name, finished jobs and cached weights made before the
move stay recognised; a recorded config naming it is built with today's
(:func:`scaling.jobs.config.current_targets`)."""

TRAIN_ONLY_EXCLUDE = ("decode", "eval", "data.test_file")
"""What training does not read: jobs that differ only here share one fine-tune."""

TRAIN_IDENTITY = 2
"""Version of :func:`train_hash` (1: :func:`legacy_train_hash`, which hashed the test file)."""

DIRNAME_LIMIT = 200
"""Longest job folder name before it is shortened with a hash (file systems cap a name at
255 bytes; a sweep with many overrides exceeds that)."""


def is_bookkeeping(key: str) -> bool:
    """Whether a dotted config key (or a Hydra override key: ``+callbacks.kill.step``,
    ``hydra/launcher``, ``model@pkg``) is or lies below a bookkeeping key."""
    key = key.lstrip("~+").split("@", 1)[0].replace("/", ".")
    return any(key == k or key.startswith(k + ".") for k in BOOKKEEPING_KEYS)


def _pop(data: dict, dotted: str) -> None:
    *outer, last = dotted.split(".")
    for part in outer:
        data = data.get(part)
        if not isinstance(data, dict):
            return
    data.pop(last, None)


def _get(data: dict, dotted: str, default: Any) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, default
        data = data[part]
    return True, data


def hashed_config(cfg: Any, exclude: Iterable[str] = ()) -> dict:
    """The resolved config as it enters a hash: bookkeeping keys (and ``exclude``) removed,
    options in :data:`HASH_OMIT_AT_DEFAULT` removed while at their default, a group's
    ``_target_`` under its name in :data:`HASHED_TARGETS`."""
    data = (OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False) if isinstance(cfg, DictConfig)
            else json.loads(json.dumps(cfg, default=str)))
    for key in (*BOOKKEEPING_KEYS, *exclude):
        _pop(data, key)
    for node in data.values():
        if isinstance(node, dict) and node.get("_target_") in HASHED_TARGETS:
            node["_target_"] = HASHED_TARGETS[node["_target_"]]
    for key, default in HASH_OMIT_AT_DEFAULT:
        present, value = _get(data, key, default)
        if present and value == default:
            _pop(data, key)
    return data


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(cfg: Any) -> str:
    """Hash of what the job computes: the config without bookkeeping keys. With
    :func:`data_hash` it decides whether a finished job is skipped."""
    return _digest(hashed_config(cfg))


def train_hash(cfg: Any, train_data: str) -> str:
    """Hash of what *training* computes: the config without bookkeeping, decoding, evaluation
    and the test file, plus ``eval.train_limit`` (it cuts the training data) and
    ``train_data``, the content of the data training reads (:func:`train_data_hash`).

    Jobs of one sweep that differ only in ``decode`` (greedy vs constrained), ``eval`` or the
    test set share it, so the second reuses the first's fine-tuned weights instead of
    training again.
    """
    limit = ((cfg.get("eval") or {}).get("train_limit"))
    return _digest({"config": hashed_config(cfg, exclude=TRAIN_ONLY_EXCLUDE), "train_limit": limit,
                    "train_data": train_data, "identity": TRAIN_IDENTITY})


def legacy_train_hash(cfg: Any, data_hash: str) -> str:
    """The train hash of identity 1 (results.json files written before identity 2): the
    config without bookkeeping, ``decode`` and ``eval`` (test file included), and
    :func:`data_hash` of every file the job read, the test file included."""
    limit = ((cfg.get("eval") or {}).get("train_limit"))
    return _digest({"config": hashed_config(cfg, exclude=("decode", "eval")), "train_limit": limit,
                    "data": data_hash})


def train_hashes(cfg: Any, files: Mapping[str, str]) -> tuple[str, str]:
    """``(train_hash, legacy_train_hash)`` of a job that read ``files`` (``data.files``):
    the one it records and caches under, then the one of identity 1 that its weights or
    checkpoints may have been stored under by an earlier version."""
    return train_hash(cfg, train_data_hash(files)), legacy_train_hash(cfg, data_hash(files))


def _named_files(files: Mapping[str, str]) -> list[tuple[str, str]]:
    named = []
    for i, (path, sha) in enumerate(files.items()):
        p = Path(path)
        named.append((("train", "test")[i] if i < 2 else f"{p.parent.name}/{p.name}", sha))
    return named


def train_data_hash(files: Mapping[str, str]) -> str:
    """Identity of the data *training* reads, from ``{path: sha256}`` as :func:`data_hash`
    takes it: the training file and the schemas, never the test file."""
    named = [item for item in _named_files(files) if item[0] != "test"]
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()[:16]


def data_hash(files: Mapping[str, str]) -> str:
    """Identity of a dataset's content from ``{path: sha256}`` in reading order (train file,
    test file, then each schema file, as :class:`scaling.data.io.Dataset` lists them and
    ``results.json`` records them under ``data.files``). The JSONL files are named by their
    role, schema files by ``<tier>/<file>``: a schema is found by that name, the paths above
    it are not part of the identity."""
    return hashlib.sha256(json.dumps(_named_files(files)).encode()).hexdigest()[:16]


def job_dirname(overrides: Iterable[str], limit: int = DIRNAME_LIMIT) -> str:
    """A sweep job's folder name from its overrides (``hydra.overrides.task``): those of
    bookkeeping keys left out, sorted, joined with ``,``; ``/`` in a value written as
    ``%2F`` (and ``%`` as ``%25``) so a path never nests the folder; shortened with a hash
    beyond ``limit`` characters. ``from_job`` (bookkeeping) is named by the source job's
    folder name, first: a sweep that scores many finished jobs tells them apart."""
    overrides = [str(o) for o in overrides]
    sources = [f"from_job={Path(o.split('=', 1)[1].rstrip('/')).name}" for o in overrides
               if o.split("=", 1)[0] == "from_job"]
    name = ",".join(sources + sorted(o for o in overrides if not is_bookkeeping(o.split("=", 1)[0])))
    name = name.replace("%", "%25").replace("/", "%2F")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: limit - 11]}~{digest}"

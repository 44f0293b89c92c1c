"""A finished job as the source of another run: its record, its config and its fine-tuned weights.

Train once, evaluate anywhere::

    python -m scaling.evaluate from_job=outputs/multirun/<sweep>/<job> data.test_file=<file.jsonl>
    python -m scaling.evaluate -m from_job=<job a>,<job b> data.test_file=<file.jsonl> sweep_name=<name>

:func:`evaluation_config` turns such a command into the config of an ordinary job: the
finished job's own resolved config (``results.json``: model, prompt, training data, fine-tune,
decoding, seed), with the command line's keys on top (``data.test_file``,
``decode.batch_size``, ...) and this run's own bookkeeping (where it writes, its name, its
logger). The job then runs as any other (:mod:`scaling.jobs.run`), except that it never
trains: it loads the source's fine-tuned weights, found by :func:`find_weights`, and refuses
when they are not there. Its ``results.json`` records the source (``source_job``).

This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from omegaconf import DictConfig, OmegaConf

from scaling.errors import LocatedError
from scaling.jobs.config import current_targets, schemas
from scaling.jobs.identity import BOOKKEEPING_KEYS, data_hash, is_bookkeeping, legacy_train_hash
from scaling.results import RESULTS_FILE, RunFolder, read_json

WEIGHTS_FILE = "model.safetensors"  # as scaling.jobs.cache writes it (that module imports torch)

#: Keys of this run, not of the source job, besides the bookkeeping ones: what it scores.
EVALUATION_KEYS = ("eval.split", "eval.limit")

#: Bookkeeping keys that still come from the source job unless the command line sets them:
#: where its data is.
SOURCE_BOOKKEEPING = ("data.root",)


class SourceJobError(LocatedError, RuntimeError):
    """A finished job cannot be used as a source; the message names the file, the field and
    what to do."""


class WeightsNotFound(SourceJobError):
    """The source job's fine-tuned weights are not in any train cache searched."""


def read_record(job_dir: str | os.PathLike) -> dict:
    """The completed ``results.json`` of ``job_dir`` (raises :class:`SourceJobError` naming the
    file and the field otherwise)."""
    path = Path(job_dir) / RESULTS_FILE
    record = RunFolder(job_dir).results_json(SourceJobError, missing="no results.json (expected the folder of a "
                                                                     "finished job of `python -m scaling.train`)")
    if record.get("status") != "completed":
        raise SourceJobError(f"{path}: field status is {record.get('status')!r}; only a completed job can be used")
    for key in ("config", "data", "finetune"):
        if not isinstance(record.get(key), dict):
            raise SourceJobError(f"{path}: field {key!r} is missing")
    return record


# --------------------------------------------------------------------------------------
# the config of a run that scores a finished job
# --------------------------------------------------------------------------------------


def evaluation_config(cfg: DictConfig, overrides: Sequence[str], groups: Iterable[str]) -> DictConfig:
    """The config of the run ``cfg`` (composed from ``conf/evaluate.yaml`` with ``from_job``
    set) that scores ``cfg.from_job``: the source's recorded config, merged onto the typed
    schema, with this run's bookkeeping and evaluation keys (:data:`EVALUATION_KEYS`) and every
    key the command line (``overrides``) names taken from ``cfg``.

    ``groups`` are the config groups: an override that picks an option (``decode=constrained``)
    would replace the job's settings with the option's defaults, so it is refused, naming the
    keys to set instead."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    source = Path(str(cfg.from_job))
    record = read_record(source)
    where = source / RESULTS_FILE
    try:
        config = current_targets(OmegaConf.merge(OmegaConf.structured(schemas()["evaluate"]), record["config"]))
    except Exception as exc:  # noqa: BLE001 - OmegaConf's errors name the key; say which file it is in
        raise SourceJobError(f"{where}: field config does not fit today's config schema ({_first_line(exc)}); "
                             "re-run the job to evaluate it") from None
    run = OmegaConf.to_container(cfg, resolve=True)
    groups = set(groups)
    keys = [*BOOKKEEPING_KEYS, *EVALUATION_KEYS]
    for override in OverridesParser.create().parse_overrides([str(o) for o in overrides]):
        key = override.key_or_group.split("@", 1)[0]
        if key in groups and not is_bookkeeping(key):
            raise SourceJobError(f"{key}={override.value()}: from_job scores the job with its own {key} settings; "
                                 f"set single keys instead (e.g. {key}.<key>=...; python -m scaling.evaluate "
                                 f"--cfg job from_job={source} shows them)")
        keys.append(key)
    for key in dict.fromkeys(keys):
        if key in SOURCE_BOOKKEEPING and not _named(key, overrides):
            continue
        present, value = _select(run, key)
        if present:
            # A typed node (lock, eval) takes the values; a mapping (logger, callbacks) is replaced.
            node = OmegaConf.select(config, key)
            typed = isinstance(node, DictConfig) and OmegaConf.get_type(node) is not dict
            OmegaConf.update(config, key, value, merge=typed, force_add=True)
    config.from_job = str(source)
    return config


def _named(key: str, overrides: Sequence[str]) -> bool:
    return any(str(o).lstrip("+~").split("=", 1)[0] == key for o in overrides)


def _select(data: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------
# the fine-tuned weights
# --------------------------------------------------------------------------------------


def known_train_hashes(record: dict) -> list[str]:
    """Every train hash a job's weights may be cached under: the recorded one, its source's
    (a ``from_job`` run), and the identity-1 hash of jobs recorded before train identity 2
    (:func:`scaling.jobs.identity.legacy_train_hash`)."""
    found = [record.get("train_hash"), (record.get("source_job") or {}).get("train_hash")]
    files = (record.get("data") or {}).get("files")
    if isinstance(record.get("config"), dict) and isinstance(files, dict) and files:
        try:
            found.append(legacy_train_hash(record["config"], data_hash(files)))
        except Exception:  # noqa: BLE001 - a config today's code cannot hash: the recorded hashes remain
            pass
    return [str(h) for h in dict.fromkeys(found) if h]


def candidates(path: str | os.PathLike, job_dir: Path) -> list[Path]:
    """Where a recorded path may be: as it is when absolute; else from the working directory and
    from each folder above the job (a sweep runs from the repository root, with
    ``output_root`` relative to it)."""
    p = Path(path)
    if p.is_absolute():
        return [p]
    return [Path.cwd() / p, *(anc / p for anc in Path(job_dir).resolve().parents)]


def find_weights(record: dict, job_dir: str | os.PathLike, train_caches: Sequence[str | os.PathLike] = ()) -> Path | None:
    """The ``model.safetensors`` of a finished job's fine-tune (None for ``finetune.method=none``).

    Looked for, in order: ``train.reused_from`` as recorded; then ``<cache>/<train hash>`` for
    each of ``train_caches`` and the job's own recorded ``train_cache``, for each of
    :func:`known_train_hashes`. An entry's own ``train.json`` must name one of those hashes
    and the same steps and tokens as the job. Raises :class:`WeightsNotFound` saying where it
    looked."""
    job_dir = Path(job_dir)
    if (record.get("finetune") or {}).get("method") == "none":
        return None
    hashes = known_train_hashes(record)
    tried: list[str] = []
    places: list[tuple[str, str]] = []
    reused = (record.get("train") or {}).get("reused_from")
    if reused:
        places.append((str(reused), f"train.reused_from={reused}"))
    caches = [str(c) for c in train_caches if c] + [str(record["config"].get("train_cache") or "")]
    for cache in dict.fromkeys(c for c in caches if c):
        for h in hashes:
            places.append((os.path.join(cache, h), f"{cache}/{h}"))
    for path, label in places:
        for folder in candidates(path, job_dir):
            if (folder / WEIGHTS_FILE).is_file():
                check_entry(folder, record, hashes, job_dir)
                return folder / WEIGHTS_FILE
        tried.append(label)
    results = job_dir / RESULTS_FILE
    raise WeightsNotFound(
        f"{results}: the job's fine-tuned weights are not in the train cache (looked for {WEIGHTS_FILE} in "
        f"{'; '.join(tried) or 'nothing: no train_cache is set'}, from {Path.cwd()} and the folders above the "
        "job). Run the job again to train them (python -m scaling.train with its overrides: a completed job "
        "is skipped, so its weights come back only if its folder is moved aside), or point at the cache that "
        "holds them with train_cache=<folder>")


def check_entry(folder: Path, record: dict, hashes: Sequence[str], job_dir: Path) -> None:
    """A train-cache entry must describe the job's training: its ``train.json`` names one of
    the job's train hashes, and the same steps and tokens."""
    info_path = folder / "train.json"
    if not info_path.is_file():
        return
    whole = read_json(info_path)
    results = job_dir / RESULTS_FILE
    if whole.get("train_hash") and hashes and whole["train_hash"] not in hashes:
        raise SourceJobError(f"{info_path}: train_hash {whole['train_hash']}, but {results} records "
                             f"{' / '.join(hashes)}: these weights come from another training")
    info, mine = whole.get("train") or {}, record.get("train") or {}
    for key in ("steps", "tokens"):
        if key in info and key in mine and info[key] != mine[key]:
            raise SourceJobError(f"{folder}: its train.json records {key}={info[key]}, but {results} records "
                                 f"train.{key}={mine[key]}: these weights come from another training run")


def source_record(record: dict, job_dir: Path, weights: Path | None) -> dict:
    """What a ``from_job`` run records about its source (``results.json: source_job``)."""
    return {"job_dir": str(Path(job_dir).resolve()), "run_name": record.get("run_name"),
            "config_hash": record.get("config_hash"), "train_hash": (known_train_hashes(record) or [None])[0],
            "data_hash": record.get("data_hash"), "weights": str(weights) if weights else None}

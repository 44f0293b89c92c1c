"""``results.json`` typed: a frozen view of a run's record, section by section.

:class:`Results` is what :meth:`scaling.results.folder.RunFolder.results` returns. Its sections
are typed where the contract (:mod:`scaling.results`) fixes a shape: the config and its hashes,
the data files, the training, the evaluation's stats, the metrics, the status and the error;
what it leaves open (``model``, ``params``, ``finetune``, ``decode``, ``versions``, the config
itself) is a read-only mapping.

The view reads what is there and checks nothing a reader did not ask for: a field that is
absent, or not of its type, is ``None`` (a run from before the field, a failed run that never
got that far, a deployed GGUF file's folder with only ``stats`` and ``metrics``). Whoever
needs a field checks it and names it (fit, compare and export each say what they need and why).
:meth:`Results.to_json` gives back exactly the object :meth:`Results.from_json` was given (the
same keys in the same order, unknown ones included), so a record read, changed and written
again loses nothing; ``results_version`` says which contract a record was written under.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

from scaling.data.io import DataError, json_type_name
from scaling.errors import LocatedError
from scaling.results.files import RESULTS_VERSION


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _of(d: Mapping[str, Any], key: str, *types: type) -> Any:
    """``d[key]`` when it is one of ``types`` (bool never counts as a number), else None."""
    value = d.get(key)
    if isinstance(value, bool) and bool not in types:
        return None
    return value if isinstance(value, types) else None


def _num(d: Mapping[str, Any], key: str) -> float | None:
    value = _of(d, key, int, float)
    return None if value is None else float(value)


def _section(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = d.get(key)
    return value if isinstance(value, Mapping) else {}


def _section_json(section: Any, written_when_set: tuple[str, ...]) -> dict[str, Any]:
    """A written section (``DataSection``, ``TrainSection``): its fields in order, those in
    ``written_when_set`` left out while None, then the unknown keys it was read with (``extra``)."""
    out = {f.name: _thaw(getattr(section, f.name)) for f in fields(section) if f.name != "extra"}
    for name in written_when_set:
        if out[name] is None:
            del out[name]
    return {**out, **_thaw(section.extra)}


@dataclass(frozen=True)
class RunError:
    """``error``: why a run failed (``status: failed``)."""

    type: str | None
    message: str | None
    traceback: str | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunError":
        return cls(_of(d, "type", str), _of(d, "message", str), _of(d, "traceback", str))

    def describe(self) -> str:
        """``"RuntimeError: CUDA out of memory"``."""
        return f"{self.type or 'error'}: {self.message or '?'}"


@dataclass(frozen=True)
class Hashes:
    """What identifies a run: ``config_hash`` (its config without bookkeeping keys),
    ``data_hash`` (the content of its data files) and ``train_hash`` (its training, the train
    cache's key)."""

    config: str | None
    data: str | None
    train: str | None


@dataclass(frozen=True)
class DataSection:
    """``data``: what the run read, trained on and scored.

    Built by the job (:func:`scaling.pipeline.load_data`) and read back by :meth:`from_json`,
    where a field a run never recorded, or recorded with another type, is None."""

    name: str | None = None
    """``data.name``: ``edgejson`` or ``synthetic``."""
    version: str | None = None
    root: str | None = None
    """The folder the data was read from."""
    n_train: int | None = None
    """Records trained on: after the validation split, ``data.exclude_contradicting``,
    ``data.train_fraction`` and ``data.extra_train_file``."""
    train_fraction: float | None = None
    """``data.train_fraction`` as recorded; None in runs from before the option (then 1.0)."""
    n_val: int | None = None
    """Records held out for validation (``finetune.val_fraction``)."""
    n_test: int | None = None
    eval_split: str | None = None
    """What was scored: ``test``, ``val`` or ``none``."""
    n_eval: int | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    """path -> sha256 of every data file read, in the order they were read."""
    extra_train: Mapping[str, Any] | None = None
    """``{"file", "n", "fraction"}`` of ``data.extra_train_file``; written only when set."""
    excluded: Mapping[str, Any] | None = None
    """``{"rule", "n", "ids": {id: why}}`` of ``data.exclude_contradicting``; written only when set."""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Keys this definition does not know, kept so a record read and written again loses nothing."""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "DataSection":
        files, extra_train, excluded = d.get("files"), d.get("extra_train"), d.get("excluded")
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(_of(d, "name", str), _of(d, "version", str), _of(d, "root", str), _of(d, "n_train", int),
                   _num(d, "train_fraction"), _of(d, "n_val", int), _of(d, "n_test", int),
                   _of(d, "eval_split", str), _of(d, "n_eval", int),
                   MappingProxyType({str(k): v for k, v in files.items()} if isinstance(files, Mapping) else {}),
                   _freeze(extra_train) if isinstance(extra_train, Mapping) else None,
                   _freeze(excluded) if isinstance(excluded, Mapping) else None,
                   extra=_freeze({k: v for k, v in d.items() if k not in known}))

    def to_json(self) -> dict[str, Any]:
        """The ``data`` object: every field in this class's order (``extra_train`` and
        ``excluded`` only when set), then the unknown keys it was read with."""
        return _section_json(self, ("extra_train", "excluded"))


@dataclass(frozen=True)
class TrainSection:
    """``train``: what the fine-tuning did and cost (``null`` for a base model's run).

    One definition for both sides: the job builds it (:func:`scaling.pipeline.fit`) and writes
    :meth:`to_json`; readers get it from :meth:`from_json`, where a field a run never recorded
    (a run from before the field) or recorded with another type is None."""

    tokens: int | None = None
    """Tokens in the training batches: prompts, answers and EOS, never padding."""
    target_tokens: int | None = None
    """The tokens that carried loss: each answer and its EOS."""
    steps: int | None = None
    """Optimiser steps taken."""
    epochs: float | None = None
    """Epochs completed (Lightning's ``current_epoch`` at the end)."""
    n_examples: int | None = None
    """Distinct training examples."""
    examples_per_epoch: int | None = None
    """Examples an epoch, with ``finetune.tier_repeat``'s extra passes."""
    n_val: int | None = None
    """Examples held out for validation loss (``finetune.val_fraction``)."""
    n_truncated: int | None = None
    """Training examples longer than ``finetune.max_length`` (they lost prompt tokens)."""
    wall_s: float | None = None
    """Seconds in ``trainer.fit``, set-up and checkpoints included."""
    train_step_s: float | None = None
    """Seconds inside training steps only: the denominator of ``tokens_per_s``."""
    tokens_per_s: float | None = None
    """``tokens / train_step_s``: measured, never assumed."""
    peak_mem_mb: float | None = None
    """Peak memory: resident set on CPU, allocated on CUDA."""
    resumed_from: str | None = None
    """The checkpoint an interrupted job resumed from, or None."""
    resumed_at_step: int | None = None
    final_train_loss: float | None = None
    """Mean training loss of the last epoch."""
    final_val_loss: float | None = None
    """Validation loss at the end (None without ``finetune.val_fraction``)."""
    precision: str | None = None
    """The precision Lightning trained in (``trainer.precision`` resolved, e.g. ``bf16-mixed``)."""
    device: str | None = None
    world_size: int | None = None
    reused_from: str | None = None
    """The train cache entry (or finished job) whose weights were used: the training itself
    did not run in this job. Written only when set."""
    cache_error: str | None = None
    """Why the train cache could not be written (the job evaluated anyway). Written only when set."""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Keys this definition does not know (a newer writer's), kept so a record read and written
    again loses nothing."""

    _INTS = ("tokens", "target_tokens", "steps", "n_examples", "examples_per_epoch", "n_val", "n_truncated",
             "resumed_at_step", "world_size")
    _STRS = ("resumed_from", "precision", "device", "reused_from", "cache_error")

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "TrainSection":
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {name: (_of(d, name, int) if name in cls._INTS else _of(d, name, str) if name in cls._STRS
                         else _num(d, name)) for name in known}
        return cls(**values, extra=MappingProxyType({k: v for k, v in d.items() if k not in known}))

    def to_json(self) -> dict[str, Any]:
        """The ``train`` object: every field in this class's order (``reused_from`` and
        ``cache_error`` only when set), then the unknown keys it was read with."""
        return _section_json(self, ("reused_from", "cache_error"))


@dataclass(frozen=True)
class EvalStats:
    """``eval``: what the evaluation cost."""

    wall_s: float | None
    generated_tokens: int | None
    tokens_per_s: float | None
    latency_s_per_example: float | None
    n: int | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EvalStats":
        return cls(_num(d, "wall_s"), _of(d, "generated_tokens", int), _num(d, "tokens_per_s"),
                   _num(d, "latency_s_per_example"), _of(d, "n", int))


@dataclass(frozen=True)
class Results:
    """One run's ``results.json``, typed and read-only."""

    results_version: int | None
    status: str | None
    """``completed``, ``failed`` or ``running`` (None in a deployed GGUF file's folder)."""
    error: RunError | None
    run_name: str | None
    group: str | None
    job_dir: str | None
    model: Mapping[str, Any]
    params: Mapping[str, Any]
    category: str | None
    finetune: Mapping[str, Any]
    decode: Mapping[str, Any] | None
    """None with ``eval.split=none`` (nothing decoded)."""
    data: DataSection | None
    train: TrainSection | None
    eval: EvalStats | None
    metrics: Mapping[str, Any] | None
    """``overall``, ``by_tier``, ``by_schema`` (and ``complex_plus``); None when nothing was scored."""
    config: Mapping[str, Any]
    hashes: Hashes
    seed: int | None
    versions: Mapping[str, Any]
    created_at: str | None
    finished_at: str | None
    _json: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, d: Any, file: Any = None, error: type[LocatedError] = DataError) -> "Results":
        """The typed view of a ``results.json`` object (``error`` naming ``file`` when ``d`` is
        not an object; nothing inside it is required)."""
        if not isinstance(d, Mapping):
            raise error(f"expected a JSON object, got {json_type_name(d)}", file=file)
        err, data, train, ev = (d.get(k) for k in ("error", "data", "train", "eval"))
        decode, metrics = d.get("decode"), d.get("metrics")
        return cls(
            results_version=_of(d, "results_version", int), status=_of(d, "status", str),
            error=RunError.from_json(err) if isinstance(err, Mapping) else None,
            run_name=_of(d, "run_name", str), group=_of(d, "group", str), job_dir=_of(d, "job_dir", str),
            model=_freeze(_section(d, "model")), params=_freeze(_section(d, "params")),
            category=_of(d, "category", str), finetune=_freeze(_section(d, "finetune")),
            decode=_freeze(decode) if isinstance(decode, Mapping) else None,
            data=DataSection.from_json(data) if isinstance(data, Mapping) else None,
            train=TrainSection.from_json(train) if isinstance(train, Mapping) else None,
            eval=EvalStats.from_json(ev) if isinstance(ev, Mapping) else None,
            metrics=_freeze(metrics) if isinstance(metrics, Mapping) else None,
            config=_freeze(_section(d, "config")),
            hashes=Hashes(_of(d, "config_hash", str), _of(d, "data_hash", str), _of(d, "train_hash", str)),
            seed=_of(d, "seed", int), versions=_freeze(_section(d, "versions")),
            created_at=_of(d, "created_at", str), finished_at=_of(d, "finished_at", str),
            _json=_freeze(d),
        )

    def to_json(self) -> dict:
        """The object this view was read from, as a new plain dict (key order kept)."""
        return _thaw(self._json)

    def get(self, key: str, default: Any = None) -> Any:
        """The recorded value of a top-level key, as JSON (a plain, new copy)."""
        return _thaw(self._json[key]) if key in self._json else default

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def current(self) -> bool:
        """Written under this package's contract (``results_version`` is :data:`RESULTS_VERSION`)."""
        return self.results_version == RESULTS_VERSION


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value

"""Collect training jobs' ``results.json`` (+ ``predictions.jsonl``) into series of models.

A *job* is one ``results.json`` (see :mod:`scaling.results` for the contract). Jobs of the
same model key, fine-tuning method, decode mode and initialisation are *seeds* of one
*model*; models that share method, decode mode and initialisation form a *series* (one
curve on a figure: "base", "fine-tuned (full)", ...). Reference points (a published
study's numbers) come from a small CSV/JSON file and form their own series.

Nothing here fails on one bad job: a failed, unreadable or incomplete job is *skipped* with
a reason, and a bad ``predictions.jsonl`` only costs that job its per-example data (its
aggregate metrics from ``results.json`` are used instead, without intervals).

A job carrying complex+ (:mod:`scaling.complex_plus`) is read with its ``complex_plus.jsonl`` as
the tier ``complex+``; the run that scored its extra complex records, when collected too, is
skipped (its answers are counted in that job's complex+, and it is no seed of its own).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from scaling.complex_plus import COMPLEX_PLUS, COMPLEX_PLUS_TIER, tier_block
from scaling.data.io import TIERS
from scaling.fit.errors import FitError
from scaling.metrics import METRIC_KEYS
from scaling.results import (COMPLEX_PLUS_FILE, PREDICTIONS_FILE, RESULTS_FILE, RESULTS_VERSION, Results, decode_label,
                             read_results_json, read_text, recipe, recipe_label, rung_kind, train_fraction,
                             varying_recipe)
from scaling.results import model_key as results_model_key
from scaling.results import read_predictions as read_prediction_rows
from scaling.stats import OVERALL  # the pseudo-tier meaning "all test examples"

#: Per-example metrics a ``predictions.jsonl`` line carries (all in [0, 1]).
METRICS = METRIC_KEYS
#: Columns of a reference file that describe a point rather than carry a metric.
REFERENCE_INFO_COLUMNS = ("label", "series", "model", "params", "params_non_embedding", "note", "source")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Per-example metric values of one job, in file order.

    ``values[metric]`` is a float array aligned with ``ids``; a ``null`` value counts as 0
    (an example the scorer could not score is a miss) and is counted in ``n_null``.
    """

    ids: tuple[str, ...]
    tiers: tuple[str, ...]
    schema_ids: tuple[str, ...]
    values: Mapping[str, np.ndarray]
    n_null: int = 0


@dataclass(frozen=True, eq=False)
class FinishedJob:
    """One completed training job, as read from its ``results.json``."""

    path: Path                      # the results.json
    run_name: str
    group: str | None
    model_key: str
    family: str | None
    source: str | None
    params_total: int
    params_non_embedding: int
    category: str | None
    method: str                     # finetune.method: full | lora | none
    decode_mode: str
    seed: int
    metrics: Mapping[str, Any]      # results.json "metrics" (aggregates with "ci")
    predictions: Predictions | None
    config: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    n_train: int | None = None      # training records fine-tuned on (data.n_train)
    train_fraction: float = 1.0     # data.train_fraction (the data axis)
    depth: Mapping[str, Any] | None = None   # model.depth: the blocks a depth rung kept
    grow: Mapping[str, Any] | None = None    # model.grow: the blocks a grown rung inserted
    rung: str = "original"          # pruned | original | grown (results.rung_kind)
    complex_plus: Predictions | None = None
    """The complex+ answers' values (``complex_plus.jsonl``), when the job carries complex+."""
    config_hash: str | None = None

    def aggregate(self, metric: str, tier: str) -> float | None:
        """The job's aggregate ``metric`` on ``tier`` (``"overall"``, a tier or ``complex+``) from results.json."""
        block = tier_block(self.metrics, tier)
        return _as_unit_float(block.get(metric)) if block is not None else None

    def aggregate_by_schema(self, metric: str) -> dict[str, float]:
        out = {}
        for sid, block in (self.metrics.get("by_schema") or {}).items():
            v = _as_unit_float(block.get(metric)) if isinstance(block, Mapping) else None
            if v is not None:
                out[sid] = v
        return out


@dataclass(frozen=True, eq=False)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True, eq=False)
class Model:
    """The seeds (jobs) of one model within a series."""

    key: str
    family: str | None
    params_total: int
    params_non_embedding: int
    category: str | None
    jobs: tuple[FinishedJob, ...]
    rung: str = "original"
    """``pruned`` (a depth rung), ``original`` or ``grown`` (a grown rung): how the model
    relates to the pretrained one, labelled on every point of a fit."""

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(j.seed for j in self.jobs)

    def params(self, kind: str) -> int:
        """``kind`` is ``"total"`` or ``"non_embedding"``."""
        return self.params_total if kind == "total" else self.params_non_embedding


@dataclass(frozen=True, eq=False)
class Series:
    """Models measured under one fine-tuning method / decode mode / initialisation."""

    label: str
    method: str
    decode_mode: str
    random_init: bool
    models: tuple[Model, ...]      # sorted by total parameters
    recipe: tuple[tuple[str, str], ...] = ()
    """The recipe parts (prompt, epochs, ...) that set this series apart from the sweep's others."""

    @property
    def is_base(self) -> bool:
        return self.method == "none"


@dataclass(frozen=True, eq=False)
class ReferencePoint:
    """One row of a reference file: a model's published scores.

    ``values`` maps ``(metric, tier)`` to a fraction in [0, 1]; a column ``json_exact`` is
    ``("json_exact", "overall")``, ``json_exact_complex`` is ``("json_exact", "complex")``.
    """

    label: str
    model: str
    params_total: int
    params_non_embedding: int | None
    values: Mapping[tuple[str, str], float]
    file: str
    line: int

    def params(self, kind: str) -> int | None:
        return self.params_total if kind == "total" else self.params_non_embedding


@dataclass(frozen=True, eq=False)
class ReferenceSeries:
    label: str
    points: tuple[ReferencePoint, ...]  # sorted by total parameters


@dataclass(frozen=True, eq=False)
class Collection:
    sweep_dirs: tuple[Path, ...]
    jobs: tuple[FinishedJob, ...]
    skipped: tuple[Skipped, ...]
    series: tuple[Series, ...]
    references: tuple[ReferenceSeries, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def group(self) -> str | None:
        """The sweep's W&B group: the jobs' common ``group``, else None."""
        groups = {j.group for j in self.jobs if j.group}
        return groups.pop() if len(groups) == 1 else None

    def summary(self) -> str:
        msg = f"collect: {len(self.jobs)} jobs, {len(self.skipped)} skipped"
        if self.skipped:
            msg += " (" + "; ".join(f"{s.path}: {s.reason}" for s in self.skipped) + ")"
        msg += f", {len(self.series)} series (" + ", ".join(
            f"{s.label}: {len(s.models)} models" for s in self.series) + ")"
        if self.references:
            msg += f", {sum(len(r.points) for r in self.references)} reference points"
        return msg


# ----------------------------------------------------------------------------- finding sweeps


def newest_sweep(multirun_root: str | Path) -> Path:
    """The newest sweep under ``multirun_root``: the folder holding job folders whose
    ``results.json`` was written last (works for ``<date>_<time>/<job>/`` and
    ``<date>/<time>/<job>/`` layouts alike)."""
    root = Path(multirun_root)
    if not root.is_dir():
        raise FitError("no sweep given and the multirun folder does not exist; pass sweep_dir=...",
                       file=root)
    newest: dict[Path, float] = {}
    for res in root.rglob(RESULTS_FILE):
        sweep = res.parent.parent
        try:
            mtime = res.stat().st_mtime
        except OSError:
            continue
        newest[sweep] = max(newest.get(sweep, 0.0), mtime)
    if not newest:
        raise FitError(f"no {RESULTS_FILE} anywhere below it; pass sweep_dir=...", file=root)
    return max(newest, key=lambda p: (newest[p], str(p)))


# ----------------------------------------------------------------------------- reading jobs


def _as_unit_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0:
        return float(v)
    return None


def _need(d: Mapping[str, Any], dotted: str, typ: type, path: Path) -> Any:
    """The value at ``dotted`` (``"params.total"``), of type ``typ`` (bool is not an int here)."""
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise FitError("missing", file=path, field=dotted)
        cur = cur[part]
    if not isinstance(cur, typ) or (isinstance(cur, bool) and typ is not bool):
        raise FitError(f"expected {typ.__name__}, got {type(cur).__name__}", file=path, field=dotted)
    return cur


def read_job(path: str | Path, metrics: Sequence[str] = METRICS) -> FinishedJob:
    """Read one ``results.json`` (and the ``predictions.jsonl`` beside it).

    Raises :class:`FitError` when the job cannot be used: unreadable or not JSON, a
    ``status`` other than ``"completed"``, an unsupported ``results_version`` or a missing
    required field. A missing or bad ``predictions.jsonl`` is not an error: the job keeps
    its aggregate metrics and records a note.
    """
    path = Path(path)
    d = read_results_json(path, FitError)
    status = d.get("status")
    if not Results.from_json(d).completed:
        err = d.get("error")
        why = ""
        if isinstance(err, Mapping):
            why = f": {err.get('type', 'error')}: {err.get('message', '')}".rstrip(": ")
        raise FitError(f"status {status!r}{why}", file=path, field="status")
    split = ((d.get("config") or {}).get("eval") or {}).get("split", "test")
    if split != "test":
        raise FitError(f"evaluated on eval.split={split!r}, not the test split: fits use test scores only",
                       file=path, field="config.eval.split")
    version = d.get("results_version")
    if version != RESULTS_VERSION:
        raise FitError(f"unsupported results_version {version!r} (expected {RESULTS_VERSION})",
                       file=path, field="results_version")
    _need(d, "model.key", str, path)
    model_key = results_model_key(d["model"])
    total = _need(d, "params.total", int, path)
    non_emb = _need(d, "params.non_embedding", int, path)
    if total <= 0 or non_emb <= 0:
        raise FitError(f"parameter counts must be positive, got total={total}, non_embedding={non_emb}",
                       file=path, field="params")
    method = _need(d, "finetune.method", str, path)
    decode_mode = decode_label(_need(d, "decode.mode", str, path), d.get("config"))  # strict: its own series
    seed = _need(d, "seed", int, path)
    m = _need(d, "metrics", dict, path)
    overall = _need(d, "metrics.overall", dict, path)
    for name in metrics:
        if _as_unit_float(overall.get(name)) is None:
            raise FitError("missing or not a number in [0, 1]", file=path, field=f"metrics.overall.{name}")
    model = d["model"]
    n_train = (d.get("data") or {}).get("n_train") if isinstance(d.get("data"), dict) else None
    notes: list[str] = []
    preds: Predictions | None = None
    ppath = path.with_name(PREDICTIONS_FILE)
    if ppath.is_file():
        try:
            preds = read_predictions(ppath, metrics)
            if preds.n_null:
                notes.append(f"{ppath}: {preds.n_null} null metric values counted as 0")
        except FitError as e:
            notes.append(f"{e}; using aggregate metrics only (no intervals)")
    else:
        notes.append(f"no {PREDICTIONS_FILE} beside {path}; using aggregate metrics only (no intervals)")
    pooled: Predictions | None = None
    if tier_block(m, COMPLEX_PLUS_TIER) is not None:
        try:
            pooled = read_predictions(path.with_name(COMPLEX_PLUS_FILE), metrics)
        except FitError as e:
            notes.append(f"{e}; using its metrics.{COMPLEX_PLUS} only (no paired intervals)")
    return FinishedJob(
        path=path, run_name=str(d.get("run_name") or path.parent.name),
        group=d.get("group") if isinstance(d.get("group"), str) else None,
        model_key=model_key,
        family=model.get("family") if isinstance(model.get("family"), str) else None,
        source=model.get("source") if isinstance(model.get("source"), str) else None,
        params_total=total, params_non_embedding=non_emb,
        category=d.get("category") if isinstance(d.get("category"), str) else None,
        method=method, decode_mode=decode_mode, seed=seed, metrics=m, predictions=preds,
        config=d.get("config") if isinstance(d.get("config"), dict) else {}, notes=tuple(notes),
        n_train=n_train if isinstance(n_train, int) and not isinstance(n_train, bool) else None,
        train_fraction=train_fraction(d.get("config")),
        depth=model.get("depth") if isinstance(model.get("depth"), dict) else None,
        grow=model.get("grow") if isinstance(model.get("grow"), dict) else None,
        rung=rung_kind(model),
        complex_plus=pooled,
        config_hash=d.get("config_hash") if isinstance(d.get("config_hash"), str) else None,
    )


def read_predictions(path: str | Path, metrics: Sequence[str] = METRICS) -> Predictions:
    """Read a ``predictions.jsonl`` (:func:`scaling.results.read_predictions`: one JSON object
    per line, blank lines skipped, a unique string ``id``) whose rows carry ``schema_id``,
    ``tier`` and a value for each of ``metrics`` (bool or number in [0, 1], or null).

    Raises :class:`FitError` naming file, line and field on the first bad line.
    """
    path = Path(path)
    ids: list[str] = []
    tiers: list[str] = []
    schemas: list[str] = []
    vals: dict[str, list[float]] = {m: [] for m in metrics}
    n_null = 0
    for row in read_prediction_rows(path, FitError, unique_ids=True, empty="no predictions"):
        lineno = row["line"]
        for key in ("schema_id", "tier"):
            if not isinstance(row.get(key), (str, int)) or isinstance(row.get(key), bool):
                raise FitError("missing or not a string", file=path, line=lineno, field=key)
        for name in metrics:
            if name not in row:
                raise FitError("missing", file=path, line=lineno, field=name)
            v = row[name]
            if v is None:
                n_null += 1
                vals[name].append(0.0)
                continue
            f = _as_unit_float(v)
            if f is None:
                raise FitError(f"expected a bool or a number in [0, 1], got {v!r}",
                               file=path, line=lineno, field=name)
            vals[name].append(f)
        ids.append(row["id"])
        tiers.append(str(row["tier"]))
        schemas.append(str(row["schema_id"]))
    return Predictions(ids=tuple(ids), tiers=tuple(tiers), schema_ids=tuple(schemas),
                       values=MappingProxyType({k: np.asarray(v, dtype=float) for k, v in vals.items()}),
                       n_null=n_null)


# ----------------------------------------------------------------------------- grouping


def series_label(method: str, decode_mode: str | None = None, random_init: bool = False, recipe: str = "") -> str:
    """``"base"`` for ``method == "none"``, else ``"fine-tuned (<method>)"``; the decode mode
    is appended (``", constrained"``) when given, ``", random init"`` for random weights, and
    the recipe parts that differ between series (``", prompt fields"``)."""
    label = "base" if method == "none" else f"fine-tuned ({method})"
    if random_init:
        label += ", random init"
    if decode_mode:
        label += f", {decode_mode}"
    if recipe:
        label += f", {recipe}"
    return label


def group_jobs(jobs: Iterable[FinishedJob], log: Log = _stderr) -> tuple[Series, ...]:
    """Group jobs into series (method, decode mode, random init, and the recipe parts that
    vary across the jobs: prompt format, epochs, ...) of models (model key). Jobs that differ
    only in seed are replicates of one model."""
    jobs = list(jobs)
    mixed_decode = len({j.decode_mode for j in jobs}) > 1
    varying = varying_recipe(recipe(j.config) for j in jobs)
    by_series: dict[tuple, dict[str, list[FinishedJob]]] = defaultdict(lambda: defaultdict(list))
    for j in jobs:
        parts = tuple(p for p in recipe(j.config) if p[0] in varying)
        by_series[(j.method, j.decode_mode, j.source == "random", parts)][j.model_key].append(j)
    out = []
    for (method, mode, rnd, parts), models in by_series.items():
        label = series_label(method, mode if mixed_decode else None, rnd, recipe_label(parts, varying))
        built = []
        for key, js in models.items():
            js = sorted(js, key=lambda j: (j.seed, str(j.path)))
            first = js[0]
            for j in js[1:]:
                if (j.params_total, j.params_non_embedding) != (first.params_total, first.params_non_embedding):
                    log(f"warning: {label} / {key}: {j.path} reports params {j.params_total} "
                        f"but {first.path} reports {first.params_total}; using the latter")
                kept = [(x.depth or {}).get("kept") for x in (first, j)]
                if kept[0] != kept[1]:
                    log(f"warning: {label} / {key}: {j.path} kept blocks {kept[1]} but {first.path} kept "
                        f"{kept[0]} (model.depth); averaged as seeds of one rung all the same")
                sources = [(x.grow or {}).get("sources") for x in (first, j)]
                if sources[0] != sources[1]:
                    log(f"warning: {label} / {key}: {j.path} copied blocks {sources[1]} but {first.path} copied "
                        f"{sources[0]} (model.grow); averaged as seeds of one rung all the same")
            seeds = [j.seed for j in js]
            if len(set(seeds)) < len(seeds):
                log(f"warning: {label} / {key}: seed repeated across jobs {seeds}; "
                    "treating every job as a separate replicate")
            built.append(Model(key=key, family=first.family, params_total=first.params_total,
                               params_non_embedding=first.params_non_embedding,
                               category=first.category, jobs=tuple(js), rung=first.rung))
        built.sort(key=lambda m: (m.params_total, m.key))
        out.append(Series(label=label, method=method, decode_mode=mode, random_init=rnd, models=tuple(built),
                          recipe=parts))
    # fine-tuned series first (the headline), then base; stable by label
    out.sort(key=lambda s: (s.is_base, s.random_init, s.label))
    return tuple(out)


def collect(sweep_dirs: Sequence[str | Path], *, metrics: Sequence[str] = METRICS,
            references: Sequence[ReferenceSeries] = (), log: Log = _stderr) -> Collection:
    """Read every ``results.json`` below each of ``sweep_dirs`` (recursively).

    Skips (with a message through ``log``) every job that cannot be used; raises
    :class:`FitError` when a sweep folder does not exist or no job is usable.
    """
    if not sweep_dirs:
        raise FitError("no sweep folder given")
    dirs = []
    for d in sweep_dirs:
        p = Path(d)
        if not p.is_dir():
            raise FitError("is a file, not a sweep folder (pass the folder that holds the job folders)"
                           if p.exists() else "sweep folder does not exist", file=p)
        dirs.append(p)
    jobs: list[FinishedJob] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    notes: list[str] = []
    for d in dirs:
        for res in sorted(d.rglob(RESULTS_FILE)):
            real = res.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                job = read_job(res, metrics)
            except FitError as e:
                reason = f"{e.field}: {e.message}" if e.field and e.field != "status" else e.message
                if e.line is not None:
                    reason += f" (line {e.line})"
                skipped.append(Skipped(res, reason))
                log(f"skip: {res}: {reason}")
                continue
            for n in job.notes:
                log(f"note: {n}")
                notes.append(n)
            jobs.append(job)
    jobs, companions = _without_complex_plus_parts(jobs)
    for job, owner in companions:
        reason = f"its answers are the extra part of {owner.path}'s {COMPLEX_PLUS_TIER} (scaling.complex_plus)"
        skipped.append(Skipped(job.path, reason))
        log(f"skip: {job.path}: {reason}")
    if not jobs:
        found = len(skipped)
        raise FitError(f"no completed job to fit ({found} {RESULTS_FILE} found, all skipped)"
                       if found else f"no {RESULTS_FILE} found below it",
                       file=", ".join(str(d) for d in dirs))
    return Collection(sweep_dirs=tuple(dirs), jobs=tuple(jobs), skipped=tuple(skipped),
                      series=group_jobs(jobs, log), references=tuple(references), notes=tuple(notes))


def _without_complex_plus_parts(
        jobs: list[FinishedJob]) -> tuple[list[FinishedJob], list[tuple[FinishedJob, FinishedJob]]]:
    """``(jobs, [(companion, owner)])``: the jobs without the runs whose answers another collected
    job pools as the extra part of its complex+ (matched by the ``config_hash`` it recorded)."""
    owners = {}
    for j in jobs:
        extra = ((tier_block(j.metrics, COMPLEX_PLUS_TIER) or {}).get("parts") or {}).get("extra") or {}
        if isinstance(extra.get("config_hash"), str):
            owners[extra["config_hash"]] = j
    kept = [j for j in jobs if j.config_hash not in owners or owners[j.config_hash] is j]
    return kept, [(j, owners[j.config_hash]) for j in jobs if j not in kept]


# ----------------------------------------------------------------------------- reference points


def _parse_value(raw: Any, path: Path, line: int, column: str) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise FitError(f"expected a number, got {raw!r}", file=path, line=line, field=column)
    percent = False
    if isinstance(raw, str):
        s = raw.strip()
        if s.endswith("%"):
            percent, s = True, s[:-1]
        try:
            v = float(s)
        except ValueError:
            raise FitError(f"expected a number, got {raw!r}", file=path, line=line, field=column) from None
    elif isinstance(raw, (int, float)):
        v = float(raw)
    else:
        raise FitError(f"expected a number, got {raw!r}", file=path, line=line, field=column)
    if percent:
        v /= 100.0
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise FitError(f"{raw!r} is not a fraction in [0, 1] (write percentages as '24.7%')",
                       file=path, line=line, field=column)
    return v


def _parse_count(raw: Any, path: Path, line: int, column: str, required: bool) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise FitError("missing", file=path, line=line, field=column)
        return None
    try:
        v = float(str(raw).replace("_", "").replace(",", "")) if not isinstance(raw, (int, float)) else float(raw)
    except ValueError:
        raise FitError(f"expected a parameter count, got {raw!r}", file=path, line=line, field=column) from None
    if isinstance(raw, bool) or not math.isfinite(v) or v <= 0 or v != int(v):
        raise FitError(f"expected a positive integer, got {raw!r}", file=path, line=line, field=column)
    return int(v)


def _metric_column(column: str, metrics: Sequence[str], tiers: Sequence[str]) -> tuple[str, str] | None:
    if column in metrics:
        return column, OVERALL
    for m in sorted(metrics, key=len, reverse=True):
        if column.startswith(m + "_") and column[len(m) + 1:] in tiers:
            return m, column[len(m) + 1:]
    return None


def load_reference(path: str | Path, *, metrics: Sequence[str] = METRICS,
                   tiers: Sequence[str] = TIERS) -> tuple[ReferenceSeries, ...]:
    """Read labelled reference points from a CSV (header row) or JSON file (a list of
    objects, or ``{"points": [...]}``).

    Columns: ``label`` (or ``series``), ``model``, ``params`` (total), optionally
    ``params_non_embedding``, ``note``, ``source``, and metric values named ``<metric>``
    (overall) or ``<metric>_<tier>`` as fractions in [0, 1] or percentages (``"24.7%"``);
    empty cells are missing values. Any other column is an error (it is likely a typo).
    A label containing the word ``base`` marks a not-fine-tuned series (figure (e)).
    """
    path = Path(path)
    if not path.is_file():
        raise FitError("reference file does not exist", file=path)
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".json":
        text = read_text(path, FitError)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise FitError(f"corrupt JSON: {e.msg}", file=path, line=e.lineno) from None
        if isinstance(data, dict):
            data = data.get("points")
        if not isinstance(data, list):
            raise FitError("expected a list of points or {\"points\": [...]}", file=path)
        for i, row in enumerate(data, 1):
            if not isinstance(row, dict):
                raise FitError("expected an object", file=path, line=i)
            rows.append((i, row))
    else:
        lines = [ln for ln in io.StringIO(read_text(path, FitError), newline="") if not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        for i, row in enumerate(reader, 2):
            if None in row:
                raise FitError("more cells than header columns", file=path, line=i)
            rows.append((i, row))
    if not rows:
        raise FitError("no reference points", file=path)
    series: dict[str, list[ReferencePoint]] = defaultdict(list)
    for line, row in rows:
        label = row.get("label") or row.get("series")
        if not isinstance(label, str) or not label.strip():
            raise FitError("missing", file=path, line=line, field="label")
        model = row.get("model")
        if not isinstance(model, str) or not model.strip():
            raise FitError("missing", file=path, line=line, field="model")
        values: dict[tuple[str, str], float] = {}
        for col, raw in row.items():
            if col in REFERENCE_INFO_COLUMNS:
                continue
            mt = _metric_column(col, metrics, tiers)
            if mt is None:
                raise FitError(f"unknown column (expected one of {', '.join(REFERENCE_INFO_COLUMNS)} "
                               f"or <metric>[_<tier>] with metric in {list(metrics)})",
                               file=path, line=line, field=col)
            v = _parse_value(raw, path, line, col)
            if v is not None:
                values[mt] = v
        series[label.strip()].append(ReferencePoint(
            label=label.strip(), model=model.strip(),
            params_total=_parse_count(row.get("params"), path, line, "params", True),
            params_non_embedding=_parse_count(row.get("params_non_embedding"), path, line,
                                              "params_non_embedding", False),
            values=MappingProxyType(values), file=str(path), line=line))
    return tuple(ReferenceSeries(label=k, points=tuple(sorted(v, key=lambda p: p.params_total)))
                 for k, v in series.items())

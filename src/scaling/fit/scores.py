"""Per-model scores of each series, per metric and tier, with intervals and paired bootstrap replicates.

A measured series whose jobs all have ``predictions.jsonl`` is scored from per-example
values on the ids common to all its jobs (seeds averaged per example), with replicates from
:func:`scaling.stats.paired_bootstrap` (for gains and fits: differences between rungs).
Otherwise its scores are the seed means of the jobs' aggregate metrics, without replicates,
so gains and fits come without intervals.

A rung's interval: for a proportion (JSONExact, compliance) the Wilson interval of its share
on the tier's examples (:func:`scaling.stats.proportion_interval`; with several seeds the
share is their mean and each example counts once), honest at 0% and 100% where a
percentile bootstrap collapses to a point; for Field F1 the percentile interval of the
replicates (of the job's own ``ci`` without predictions), or Wilson's bound where every
example scores the same (:func:`scaling.stats.bounded_mean_interval`).

complex+ (:mod:`scaling.complex_plus`), a tier where the settings list it, is scored from the jobs'
``complex_plus.jsonl`` on the ids they share, with a paired bootstrap of its own
(:func:`complex_plus_scores`), so the other tiers' draws are those of a fit without it; from
``metrics.complex_plus`` without intervals of gains when a job lacks the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

import numpy as np

from scaling.complex_plus import COMPLEX_PLUS_TIER, tier_block
from scaling.metrics import PROPORTION_METRICS, metric_interval
from scaling.stats import (bounded_mean_intervals, paired_bootstrap, percentile_ci, proportion_interval,
                           proportion_intervals)
from scaling.fit.collect import OVERALL, FinishedJob, Log, ReferenceSeries, Series, _stderr
from scaling.results import category_for

#: Size category by total parameters (:data:`scaling.results.CATEGORY_BOUNDS`).
category_of = category_for


@dataclass(frozen=True, eq=False)
class ModelEntry:
    key: str
    params_total: int
    params_non_embedding: int | None
    category: str
    family: str | None = None
    seeds: tuple[int, ...] = ()
    n_examples: int | None = None
    jobs: tuple[str, ...] = ()
    rung: str | None = None
    """``pruned`` / ``original`` / ``grown`` for a measured model (see
    :func:`scaling.results.rung_kind`); None for a reference point."""

    def params(self, kind: str) -> int | None:
        return self.params_total if kind == "total" else self.params_non_embedding


@dataclass(frozen=True, eq=False)
class ScoreRow:
    """One metric on one tier for every model of a series (NaN where unknown)."""

    metric: str
    tier: str
    point: np.ndarray           # (J,)
    lo: np.ndarray              # (J,)
    hi: np.ndarray              # (J,)
    reps: np.ndarray | None     # (B, J) paired bootstrap replicates


@dataclass(frozen=True, eq=False)
class SeriesScores:
    label: str
    kind: str                   # "measured" | "reference"
    method: str | None
    decode_mode: str | None
    models: tuple[ModelEntry, ...]
    rows: Mapping[tuple[str, str], ScoreRow]
    by_schema: Mapping[str, Mapping[str, np.ndarray]]   # metric -> schema_id -> (J,)
    schema_tiers: Mapping[str, str]
    paired: bool
    notes: tuple[str, ...] = ()
    seed_scores: Mapping[tuple[str, str], tuple[np.ndarray, ...]] = field(default_factory=dict)
    """``(metric, tier)`` -> one array per model: the score of each of its seeds (the spread
    the figures show beside the seed mean)."""
    thin: tuple[str, ...] = ()
    """``model/tier (k of n)`` where json_exact rests on fewer than :data:`THIN` successes or
    failures: percentile intervals there are too narrow (see :data:`THIN_NOTE`)."""

    @property
    def is_base(self) -> bool:
        return self.method == "none"

    def row(self, metric: str, tier: str) -> ScoreRow | None:
        return self.rows.get((metric, tier))

    def model_index(self, key: str) -> int | None:
        for i, m in enumerate(self.models):
            if m.key == key:
                return i
        return None


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def score_measured(series: Series, metrics: Sequence[str], tiers: Sequence[str], n_boot: int,
                   seed: int = 0, level: float = 0.95, log: Log = _stderr) -> SeriesScores:
    """Score a measured series (see the module docstring)."""
    jobs = [j for m in series.models for j in m.jobs]
    notes: list[str] = []
    J = len(series.models)
    rows: dict[tuple[str, str], ScoreRow] = {}
    by_schema: dict[str, dict[str, np.ndarray]] = {}
    schema_tiers: dict[str, str] = {}
    seed_scores: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
    thin: list[str] = []
    n_examples: list[int | None] = [None] * J
    common: list[str] = []
    if all(j.predictions is not None for j in jobs):
        common = sorted(set.intersection(*(set(j.predictions.ids) for j in jobs)))
        if not common:
            notes.append(f"{series.label}: the jobs share no example id; using aggregate metrics")
    else:
        missing = [str(j.path) for j in jobs if j.predictions is None]
        notes.append(f"{series.label}: no usable predictions for {len(missing)} job(s) "
                     f"({', '.join(missing)}); using aggregate metrics without paired intervals")
    if common:
        dropped = max(len(j.predictions.ids) for j in jobs) - len(common)
        if dropped:
            notes.append(f"{series.label}: paired on the {len(common)} example ids common to all jobs "
                         f"({dropped} ids of the largest job left out)")
        first = jobs[0].predictions
        pos0 = {ex: i for i, ex in enumerate(first.ids)}
        ex_tiers = [first.tiers[pos0[ex]] for ex in common]
        ex_schemas = [first.schema_ids[pos0[ex]] for ex in common]
        for j in jobs[1:]:
            pos = {ex: i for i, ex in enumerate(j.predictions.ids)}
            bad = sum(j.predictions.tiers[pos[ex]] != t for ex, t in zip(common, ex_tiers))
            if bad:
                notes.append(f"{j.path}: {bad} examples carry a different tier than in {jobs[0].path}; "
                             f"using the latter")
        present = [t for t in tiers if t == OVERALL or t in set(ex_tiers)]
        values: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
        for mi, model in enumerate(series.models):
            per_job = []
            for j in model.jobs:
                pos = {ex: i for i, ex in enumerate(j.predictions.ids)}
                per_job.append(np.array([pos[ex] for ex in common]))
            for m in metrics:
                values[m].append(np.stack([j.predictions.values[m][idx] for j, idx in zip(model.jobs, per_job)]))
            n_examples[mi] = len(common)
        schema_arr = np.asarray(ex_schemas)
        for sid in sorted(set(ex_schemas)):
            schema_tiers[sid] = ex_tiers[ex_schemas.index(sid)]
        tier_arr = np.asarray(ex_tiers)
        for m in metrics:
            point, reps = paired_bootstrap(values[m], ex_tiers, present, n_boot, seed)
            for t in point:
                n_t = len(common) if t == OVERALL else int(np.sum(tier_arr == t))
                if m in PROPORTION_METRICS:
                    lo, hi = proportion_intervals(point[t], n_t, level)
                else:
                    lo, hi = bounded_mean_intervals(point[t], n_t, *percentile_ci(reps[t], level), level)
                rows[(m, t)] = ScoreRow(m, t, point[t], lo, hi, reps[t])
                cols = np.ones(len(common), bool) if t == OVERALL else tier_arr == t
                seed_scores[(m, t)] = tuple(v[:, cols].mean(axis=1) for v in values[m])
            by_schema[m] = {sid: np.array([v.mean(axis=0)[schema_arr == sid].mean() for v in values[m]])
                            for sid in sorted(set(ex_schemas))}
        paired = True
        counts = {}
        if COMPLEX_PLUS_TIER in tiers:
            pooled = complex_plus_scores([m.jobs for m in series.models], metrics, n_boot, seed, level)
            for m in metrics:
                if pooled is not None:
                    counts[COMPLEX_PLUS_TIER], by_metric = pooled
                    rows[(m, COMPLEX_PLUS_TIER)], seed_scores[(m, COMPLEX_PLUS_TIER)] = by_metric[m]
                elif (found := _aggregate_row(series, m, COMPLEX_PLUS_TIER, level)) is not None:
                    rows[(m, COMPLEX_PLUS_TIER)], seed_scores[(m, COMPLEX_PLUS_TIER)] = found
        thin = _thin_tiers(series, rows, ex_tiers, counts)
        if thin:
            log(f"note: {series.label}: json_exact rests on fewer than {THIN} successes or failures for "
                f"{', '.join(thin)}; {THIN_NOTE}")
    else:
        paired = False
        for m in metrics:
            for t in tiers:
                found = _aggregate_row(series, m, t, level)
                if found is not None:
                    rows[(m, t)], seed_scores[(m, t)] = found
            schemas: dict[str, list[list[float]]] = {}
            for mi, model in enumerate(series.models):
                for j in model.jobs:
                    for sid, v in j.aggregate_by_schema(m).items():
                        schemas.setdefault(sid, [[] for _ in range(J)])[mi].append(v)
            by_schema[m] = {sid: np.array([np.mean(v) if v else np.nan for v in per])
                            for sid, per in sorted(schemas.items())}
        for j in jobs:
            for sid, block in (j.metrics.get("by_schema") or {}).items():
                if isinstance(block, Mapping) and isinstance(block.get("tier"), str):
                    schema_tiers.setdefault(sid, block["tier"])
    for n in notes:
        log(f"note: {n}")
    models = tuple(ModelEntry(key=m.key, params_total=m.params_total, params_non_embedding=m.params_non_embedding,
                              category=category_of(m.params_total), family=m.family, seeds=m.seeds,
                              n_examples=n_examples[i], jobs=tuple(str(j.path) for j in m.jobs), rung=m.rung)
                   for i, m in enumerate(series.models))
    return SeriesScores(label=series.label, kind="measured", method=series.method,
                        decode_mode=series.decode_mode, models=models, rows=MappingProxyType(rows),
                        by_schema=MappingProxyType(by_schema), schema_tiers=MappingProxyType(schema_tiers),
                        paired=paired, notes=tuple(notes), seed_scores=MappingProxyType(seed_scores),
                        thin=tuple(thin))


def _aggregate_row(series: Series, m: str, t: str, level: float) -> tuple[ScoreRow, tuple[np.ndarray, ...]] | None:
    """A row from the jobs' results.json (seed means; Wilson intervals for proportions, the job's
    own ``ci`` for a one-seed F1) and each model's seed scores; None when no job has the score."""
    J = len(series.models)
    point, lo, hi = _nan(J), _nan(J), _nan(J)
    for mi, model in enumerate(series.models):
        vals = [j.aggregate(m, t) for j in model.jobs]
        vals = [v for v in vals if v is not None]
        if vals:
            point[mi] = float(np.mean(vals))
        block = _job_block(model.jobs[0], t)
        if m in PROPORTION_METRICS and vals and isinstance(block.get("n"), int) and block["n"] > 0:
            lo[mi], hi[mi] = proportion_interval(point[mi], block["n"], level)
        elif len(model.jobs) == 1:
            ci = metric_interval(block, m, level)
            if ci is not None:
                lo[mi], hi[mi] = ci
    if not np.isfinite(point).any():
        return None
    return ScoreRow(m, t, point, lo, hi, None), tuple(
        np.array([v for v in (j.aggregate(m, t) for j in model.jobs) if v is not None]) for model in series.models)


def complex_plus_scores(models: Sequence[Sequence[FinishedJob]], metrics: Sequence[str], n_boot: int, seed: int,
                        level: float) -> tuple[int, dict[str, tuple[ScoreRow, tuple[np.ndarray, ...]]]] | None:
    """complex+ per metric for models given as their jobs (seeds): ``(n, {metric: (row, seed scores)})``
    from the jobs' ``complex_plus.jsonl`` values on the ``n`` ids every job has, with a paired bootstrap
    of their own; Wilson intervals for proportions, percentile ones (or Wilson's bound) for F1.
    None when a job has no complex+ answers or the jobs share none."""
    jobs = [j for js in models for j in js]
    if not jobs or any(j.complex_plus is None for j in jobs):
        return None
    common = sorted(set.intersection(*(set(j.complex_plus.ids) for j in jobs)))
    if not common:
        return None
    groups = [COMPLEX_PLUS_TIER] * len(common)
    out = {}
    for m in metrics:
        values = []
        for js in models:
            per_seed = []
            for j in js:
                pos = {ex: i for i, ex in enumerate(j.complex_plus.ids)}
                per_seed.append(j.complex_plus.values[m][[pos[ex] for ex in common]])
            values.append(np.stack(per_seed))
        point, reps = paired_bootstrap(values, groups, [COMPLEX_PLUS_TIER], n_boot, seed)
        p, r = point[COMPLEX_PLUS_TIER], reps[COMPLEX_PLUS_TIER]
        if m in PROPORTION_METRICS:
            lo, hi = proportion_intervals(p, len(common), level)
        else:
            lo, hi = bounded_mean_intervals(p, len(common), *percentile_ci(r, level), level)
        out[m] = (ScoreRow(m, COMPLEX_PLUS_TIER, p, lo, hi, r), tuple(v.mean(axis=1) for v in values))
    return len(common), out


#: Fewer successes (or failures) than this in a tier make bootstrap intervals there unreliable.
THIN = 5
THIN_NOTE = ("the paired-bootstrap intervals of gains and fits there are too narrow (in simulation about 85% "
             "coverage for a nominal 95% with 25 examples at 5% vs 10% success); each rung's own score has a "
             "Wilson interval, which is not")


def _thin_tiers(series: Series, rows: Mapping[tuple[str, str], ScoreRow], ex_tiers: Sequence[str],
                extra: Mapping[str, int] | None = None) -> list[str]:
    """``model/tier (k of n)`` where json_exact has fewer than THIN successes or failures
    (``extra``: the example counts of tiers scored apart, complex+)."""
    out = []
    counts = {t: ex_tiers.count(t) for t in set(ex_tiers)}
    counts["overall"] = len(ex_tiers)
    counts.update(extra or {})
    for (metric, tier), row in rows.items():
        if metric != "json_exact" or tier not in counts:
            continue
        n = counts[tier]
        for i, model in enumerate(series.models):
            k = row.point[i] * n
            if min(k, n - k) < THIN:
                out.append(f"{model.key}/{tier} ({k:.4g} of {n})")
    return out


def _job_block(job, tier: str) -> Mapping:
    return tier_block(job.metrics, tier) or {}


def score_reference(ref: ReferenceSeries, metrics: Sequence[str], tiers: Sequence[str]) -> SeriesScores:
    """A reference series as scores without intervals (only the values the file gives)."""
    J = len(ref.points)
    rows = {}
    for m in metrics:
        for t in tiers:
            point = np.array([p.values.get((m, t), np.nan) for p in ref.points], dtype=float)
            if np.isfinite(point).any():
                rows[(m, t)] = ScoreRow(m, t, point, _nan(J), _nan(J), None)
    models = tuple(ModelEntry(key=p.model, params_total=p.params_total, params_non_embedding=p.params_non_embedding,
                              category=category_of(p.params_total), jobs=(f"{p.file}:{p.line}",))
                   for p in ref.points)
    method = "none" if "base" in ref.label.lower().split() else None
    return SeriesScores(label=ref.label, kind="reference", method=method, decode_mode=None, models=models,
                        rows=MappingProxyType(rows), by_schema=MappingProxyType({}),
                        schema_tiers=MappingProxyType({}), paired=False)

"""The data axis: one model fine-tuned on fractions of the training records.

Jobs that differ in ``data.train_fraction`` are different recipes (:func:`scaling.results.recipe`),
so :func:`scaling.fit.collect.group_jobs` puts each fraction in its own series: they are
never seeds of one model nor sizes of one ladder. Here the series that differ *only* in the
fraction are joined again, per model: scores against the number of training records, with
the same intervals as the size axis (Wilson for proportions, the percentile bootstrap for
Field F1: :mod:`scaling.fit.scores`), and the change between adjacent fractions with its
paired-bootstrap interval (over test examples and seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from scaling.complex_plus import COMPLEX_PLUS_TIER
from scaling.fit.collect import OVERALL, Collection, FinishedJob, Series
from scaling.fit.fits import FitStatus, Interval, no_signal
from scaling.fit.scores import complex_plus_scores
from scaling.metrics import PROPORTION_METRICS
from scaling.stats import bounded_mean_intervals, paired_bootstrap, percentile_ci, proportion_intervals
from scaling.results import RECORDS, fraction_label


@dataclass(frozen=True)
class DataStep:
    """The change of a score from one fraction to the next (points of the metric, not per
    record), with its paired interval; ``status`` :attr:`~scaling.fit.fits.FitStatus.NO_SIGNAL` when
    both are at 0 or 100%, else :attr:`~scaling.fit.fits.FitStatus.OK`."""

    from_fraction: float
    to_fraction: float
    delta: float
    ci: Interval
    status: FitStatus = FitStatus.OK

    def to_dict(self) -> dict[str, Any]:
        return {"from_fraction": self.from_fraction, "to_fraction": self.to_fraction, "delta": self.delta,
                "ci": list(self.ci) if self.ci else None, "status": self.status.value}


@dataclass(frozen=True, eq=False)
class DataCurve:
    """One model of one recipe (without the fraction) at every fraction it was trained on."""

    series: str                                   # the series label without the records part
    model: str
    params_total: int
    fractions: tuple[float, ...]                  # ascending
    n_train: tuple[int | None, ...]               # training records per fraction (from results.json)
    seeds: tuple[tuple[int, ...], ...]
    point: Mapping[tuple[str, str], np.ndarray]   # (metric, tier) -> (F,)
    lo: Mapping[tuple[str, str], np.ndarray]
    hi: Mapping[tuple[str, str], np.ndarray]
    seed_scores: Mapping[tuple[str, str], tuple[np.ndarray, ...]]
    steps: Mapping[tuple[str, str], tuple[DataStep, ...]]
    paired: bool

    @property
    def label(self) -> str:
        return f"{self.model} ({self.series})" if self.series else self.model

    def to_dict(self) -> dict[str, Any]:
        scores: dict[str, dict[str, list]] = {}
        for (metric, tier), p in self.point.items():
            lo, hi = self.lo[(metric, tier)], self.hi[(metric, tier)]
            scores.setdefault(metric, {})[tier] = [
                {"fraction": f, "n_train": n, "score": float(v),
                 "ci": [float(a), float(b)] if math.isfinite(a) and math.isfinite(b) else None,
                 "seeds": [float(x) for x in s]}
                for f, n, v, a, b, s in zip(self.fractions, self.n_train, p, lo, hi,
                                             self.seed_scores[(metric, tier)])]
        return {"series": self.series, "model": self.model, "params_total": self.params_total,
                "fractions": list(self.fractions), "n_train": list(self.n_train),
                "seeds": [list(s) for s in self.seeds], "paired": self.paired, "scores": scores,
                "steps": {f"{m}/{t}": [s.to_dict() for s in st] for (m, t), st in self.steps.items()}}


def _fraction(series: Series) -> float:
    return series.models[0].jobs[0].train_fraction if series.models and series.models[0].jobs else 1.0


def data_curves(collection: Collection, metrics: Sequence[str], tiers: Sequence[str], n_boot: int,
                seed: int = 0, level: float = 0.95) -> tuple[DataCurve, ...]:
    """Every model measured at two or more training fractions under one otherwise identical
    recipe (method, decoding, initialisation, prompt, epochs, ...)."""
    groups: dict[tuple, list[Series]] = {}
    for s in collection.series:
        key = (s.method, s.decode_mode, s.random_init, tuple(p for p in s.recipe if p[0] != RECORDS))
        groups.setdefault(key, []).append(s)
    out = []
    for _, members in groups.items():
        if len({_fraction(s) for s in members}) < 2:
            continue
        label = _strip_records(members[0].label)
        by_model: dict[str, list[tuple[float, list[FinishedJob], int]]] = {}
        for s in members:
            for m in s.models:
                by_model.setdefault(m.key, []).append((_fraction(s), list(m.jobs), m.params_total))
        for key, entries in sorted(by_model.items()):
            if len({f for f, _, _ in entries}) < 2:
                continue
            entries.sort(key=lambda e: e[0])
            out.append(_curve(label, key, entries, metrics, tiers, n_boot, seed, level))
    return tuple(out)


def _strip_records(label: str) -> str:
    """A series label without its ``records <fraction>`` part."""
    parts = [p for p in label.split(", ") if not p.startswith(f"{RECORDS} ")]
    return ", ".join(parts)


def _curve(label: str, key: str, entries, metrics, tiers, n_boot, seed, level) -> DataCurve:
    fractions = tuple(f for f, _, _ in entries)
    jobs = [js for _, js, _ in entries]
    n_train = tuple(_common([j.n_train for j in js]) for js in jobs)
    seeds = tuple(tuple(j.seed for j in js) for js in jobs)
    point: dict = {}
    lo: dict = {}
    hi: dict = {}
    seed_scores: dict = {}
    steps: dict = {}
    everything = [j for js in jobs for j in js]
    paired = all(j.predictions is not None for j in everything)
    common = sorted(set.intersection(*(set(j.predictions.ids) for j in everything))) if paired else []
    if common:
        first = everything[0].predictions
        pos0 = {ex: i for i, ex in enumerate(first.ids)}
        ex_tiers = [first.tiers[pos0[ex]] for ex in common]
        present = [t for t in tiers if t == OVERALL or t in set(ex_tiers)]
        tier_arr = np.asarray(ex_tiers)
        for m in metrics:
            values = []
            for js in jobs:
                rows = []
                for j in js:
                    pos = {ex: i for i, ex in enumerate(j.predictions.ids)}
                    rows.append(j.predictions.values[m][[pos[ex] for ex in common]])
                values.append(np.stack(rows))
            pt, reps = paired_bootstrap(values, ex_tiers, present, n_boot, seed)
            for t in pt:
                cols = np.ones(len(common), bool) if t == OVERALL else tier_arr == t
                a, b = (proportion_intervals(pt[t], int(cols.sum()), level) if m in PROPORTION_METRICS
                        else bounded_mean_intervals(pt[t], int(cols.sum()), *percentile_ci(reps[t], level), level))
                point[(m, t)], lo[(m, t)], hi[(m, t)] = pt[t], a, b
                seed_scores[(m, t)] = tuple(v[:, cols].mean(axis=1) for v in values)
                steps[(m, t)] = _steps(fractions, pt[t], reps[t], level)
        pooled = complex_plus_scores(jobs, metrics, n_boot, seed, level) if COMPLEX_PLUS_TIER in tiers else None
        for m, (row, per_seed) in (pooled[1] if pooled is not None else {}).items():
            key = (m, COMPLEX_PLUS_TIER)
            point[key], lo[key], hi[key], seed_scores[key] = row.point, row.lo, row.hi, per_seed
            steps[key] = _steps(fractions, row.point, row.reps, level)
    else:
        paired = False
        for m in metrics:
            for t in tiers:
                per = [[j.aggregate(m, t) for j in js] for js in jobs]
                per = [[v for v in vs if v is not None] for vs in per]
                if not all(per):
                    continue
                pt = np.array([float(np.mean(vs)) for vs in per])
                point[(m, t)] = pt
                lo[(m, t)] = np.full(len(pt), np.nan)
                hi[(m, t)] = np.full(len(pt), np.nan)
                seed_scores[(m, t)] = tuple(np.array(vs) for vs in per)
                steps[(m, t)] = _steps(fractions, pt, None, level)
    return DataCurve(series=label, model=key, params_total=entries[0][2], fractions=fractions, n_train=n_train,
                     seeds=seeds, point=MappingProxyType(point), lo=MappingProxyType(lo), hi=MappingProxyType(hi),
                     seed_scores=MappingProxyType(seed_scores), steps=MappingProxyType(steps), paired=paired)


def _common(values: Sequence[int | None]) -> int | None:
    """The records count shared by a fraction's jobs (seeds may draw different subsets of
    the same size); the rounded mean when they differ, None when unknown."""
    known = [v for v in values if v is not None]
    return int(round(float(np.mean(known)))) if known else None


def _steps(fractions, y: np.ndarray, reps: np.ndarray | None, level: float) -> tuple[DataStep, ...]:
    out = []
    for i in range(len(fractions) - 1):
        d = float(y[i + 1] - y[i])
        ci = None
        if reps is not None:
            a, b = percentile_ci(reps[:, i + 1] - reps[:, i], level)
            ci = (float(a), float(b))
        flat = no_signal(y[i:i + 2], reps[:, i:i + 2] if reps is not None else None)
        out.append(DataStep(fractions[i], fractions[i + 1], d, ci, FitStatus.NO_SIGNAL if flat else FitStatus.OK))
    return tuple(out)


def describe_fraction(fraction: float, n_train: int | None) -> str:
    """``"25% (157 records)"``."""
    return fraction_label(fraction) + (f" ({n_train:,} records)" if n_train is not None else "")


__all__ = ["DataCurve", "DataStep", "data_curves", "describe_fraction"]

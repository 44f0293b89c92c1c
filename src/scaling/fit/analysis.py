"""From a :class:`~scaling.fit.collect.Collection` to every number of the study."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from scaling.complex_plus import COMPLEX_PLUS_TIER, POOLED_TIER, tier_block
from scaling.fit.ceiling import TierCeiling, collect_ceilings
from scaling.fit.collect import Collection, Log, _stderr
from scaling.fit.data_axis import DataCurve, data_curves
from scaling.fit.errors import FitError
from scaling.fit.config import Settings
from scaling.fit.fits import (CapacityThreshold, DiminishingReturns, FitStatus, LogisticFit, LogLinearFit, RungGain,
                              capacity_threshold, diminishing_returns, fit_logistic, fit_loglinear, no_signal,
                              rung_gains, span_gain)
from scaling.fit.scores import SeriesScores, score_measured, score_reference
from scaling.fit.verdicts import LadderRow, Recommendation, Verdict, build_ladder, evaluate_tracks


@dataclass(frozen=True, eq=False)
class Curve:
    """One series' scores on one metric and tier against size, with its fits.

    Only models with a score (and, for ``params: non_embedding``, a non-embedding count)
    are included; ``N`` is sorted ascending and ``reps`` columns follow it."""

    series: str
    kind: str
    metric: str
    tier: str
    keys: tuple[str, ...]
    N: np.ndarray
    y: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    reps: np.ndarray | None
    gains: tuple[RungGain, ...]
    loglinear: LogLinearFit
    logistic: LogisticFit
    diminishing: DiminishingReturns
    seed_y: tuple[np.ndarray, ...] | None = None
    """Each model's per-seed scores (in ``keys`` order), for the seed spread on figures."""
    rungs: tuple[str | None, ...] = ()
    """Each model's rung kind (in ``keys`` order): ``pruned`` / ``original`` / ``grown``
    (None for reference points): one fit, its points labelled."""

    @property
    def no_signal(self) -> str | None:
        """``"all rungs 0"`` / ``"all rungs 100%"`` when the scores cannot tell sizes apart."""
        return no_signal(self.y, self.reps)

    @property
    def span(self) -> RungGain | None:
        """Gain per 100M from the smallest to the largest size, with its paired interval."""
        return span_gain(self.N, self.y, self.reps, self.keys)

    def to_dict(self) -> dict[str, Any]:
        seeds = self.seed_y if self.seed_y is not None else [None] * len(self.keys)
        rungs = self.rungs or (None,) * len(self.keys)
        return {
            "series": self.series, "metric": self.metric, "tier": self.tier,
            "points": [{"model": k, "N": float(n), "score": _f(v), "ci": _pair(lo, hi),
                        "seeds": None if s is None else [float(x) for x in s], "rung": r}
                       for k, n, v, lo, hi, s, r in zip(self.keys, self.N, self.y, self.lo, self.hi, seeds, rungs)],
            "no_signal": self.no_signal,
            "span_gain_per_100m": self.span.to_dict() if self.span is not None else None,
            "gain_per_100m": [g.to_dict() for g in self.gains],
            "loglinear": self.loglinear.to_dict(), "logistic": self.logistic.to_dict(),
            "diminishing_returns": self.diminishing.to_dict(),
        }


def _f(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _pair(lo, hi):
    return [float(lo), float(hi)] if math.isfinite(lo) and math.isfinite(hi) else None


@dataclass(frozen=True, eq=False)
class Capacity:
    series: str
    metric: str
    tier: str
    result: CapacityThreshold


@dataclass(frozen=True, eq=False)
class Analysis:
    settings: Settings
    collection: Collection
    scores: tuple[SeriesScores, ...]
    curves: tuple[Curve, ...]
    capacity: tuple[Capacity, ...]
    verdicts: tuple[Verdict, ...]
    ladder: tuple[LadderRow, ...]
    recommendations: tuple[Recommendation, ...]
    data: tuple[DataCurve, ...] = ()
    """The data axis: models measured at several ``data.train_fraction`` values."""
    ceilings: Mapping[str, TierCeiling] = field(default_factory=dict)
    """tier -> what the prompts determine: the best JSONExact any reader of them can expect."""
    ceiling_notes: tuple[str, ...] = ()

    def curve(self, series: str, metric: str, tier: str) -> Curve | None:
        for c in self.curves:
            if (c.series, c.metric, c.tier) == (series, metric, tier):
                return c
        return None

    def series_scores(self, label: str) -> SeriesScores | None:
        return next((s for s in self.scores if s.label == label), None)

    def gain_per_100m(self) -> dict[str, dict[str, dict[str, list[dict]]]]:
        """``{series: {metric: {tier: [rung gain, ...]}}}`` (fractions per 1e8 parameters)."""
        out: dict[str, dict[str, dict[str, list[dict]]]] = {}
        for c in self.curves:
            if c.gains:
                out.setdefault(c.series, {}).setdefault(c.metric, {})[c.tier] = [g.to_dict() for g in c.gains]
        return out


def build_curve(scores: SeriesScores, metric: str, tier: str, settings: Settings) -> Curve | None:
    """The :class:`Curve` of one series/metric/tier, or None when no model has a score."""
    row = scores.row(metric, tier)
    if row is None:
        return None
    sizes = [m.params(settings.params) for m in scores.models]
    keep = [i for i, n in enumerate(sizes) if n is not None and math.isfinite(row.point[i])]
    if not keep:
        return None
    keep.sort(key=lambda i: sizes[i])
    N = np.array([sizes[i] for i in keep], dtype=float)
    y = row.point[keep]
    reps = row.reps[:, keep] if row.reps is not None else None
    keys = tuple(scores.models[i].key for i in keep)
    per_seed = scores.seed_scores.get((metric, tier))
    level = settings.level
    loglin = fit_loglinear(N, y, reps, level)
    return Curve(
        series=scores.label, kind=scores.kind, metric=metric, tier=tier, keys=keys, N=N, y=y,
        lo=row.lo[keep], hi=row.hi[keep], reps=reps,
        gains=rung_gains(N, y, reps, keys, level), loglinear=loglin,
        logistic=fit_logistic(N, y, reps, level, n_boot=settings.n_boot_fit),
        diminishing=diminishing_returns(N, y, reps, keys, settings.threshold_per_100m, level,
                                        settings.min_sizes_curve),
        seed_y=tuple(per_seed[i] for i in keep) if per_seed is not None else None,
        rungs=tuple(scores.models[i].rung for i in keep),
    )


def with_complex_plus(settings: Settings, collection: Collection) -> Settings:
    """``settings`` with the tier complex+ after ``complex`` when a collected job carries it
    (:mod:`scaling.complex_plus`) and the tiers list ``complex``; unchanged otherwise, so a fit
    without complex+ reads as before."""
    tiers = list(settings.tiers)
    if COMPLEX_PLUS_TIER in tiers or POOLED_TIER not in tiers:
        return settings
    if not any(tier_block(j.metrics, COMPLEX_PLUS_TIER) is not None for j in collection.jobs):
        return settings
    tiers.insert(tiers.index(POOLED_TIER) + 1, COMPLEX_PLUS_TIER)
    return replace(settings, tiers=tuple(tiers))


def complex_plus_note(analysis: Analysis) -> str | None:
    """What the tier complex+ is and on how many examples, for the report; None without it."""
    if COMPLEX_PLUS_TIER not in analysis.settings.tiers:
        return None
    sizes = sorted({len(j.complex_plus.ids) if j.complex_plus is not None
                    else (tier_block(j.metrics, COMPLEX_PLUS_TIER) or {}).get("n") for j in analysis.collection.jobs
                    if tier_block(j.metrics, COMPLEX_PLUS_TIER) is not None}, key=str)
    # The run folder's name: two folders of one sweep can hold the same run name (a job and its re-decoding).
    without = [j.path.parent.name for j in analysis.collection.jobs if tier_block(j.metrics, COMPLEX_PLUS_TIER) is None]
    return (f"{COMPLEX_PLUS_TIER} (n = {', '.join(map(str, sizes))}): the complex tier on its test examples together "
            "with the extra complex test records (`v3_extra/test_complex.jsonl`, pooled by scaling.complex_plus); "
            "the other tiers and overall stay the test split's. Its scores have intervals of their own, drawn on its "
            "examples" + (f"; jobs without it: {', '.join(without)}" if without else "") + ".")


def analyse(collection: Collection, settings: Settings, log: Log = _stderr) -> Analysis:
    """Score every series, fit every curve, evaluate thresholds, verdicts and the ladder
    (with the tier complex+ where the jobs carry it: :func:`with_complex_plus`)."""
    settings = with_complex_plus(settings, collection)
    scores: list[SeriesScores] = []
    for s in collection.series:
        scores.append(score_measured(s, settings.metrics, settings.tiers, settings.n_boot,
                                     settings.seed, settings.level, log))
    for ref in collection.references:
        sc = score_reference(ref, settings.metrics, settings.tiers)
        if settings.params == "non_embedding":
            missing = [m.key for m in sc.models if m.params_non_embedding is None]
            if missing:
                log(f"note: reference '{ref.label}': no params_non_embedding for {', '.join(missing)}; "
                    f"left out of the fits")
        scores.append(sc)
    curves: list[Curve] = []
    for sc in scores:
        for m in settings.metrics:
            for t in settings.tiers:
                c = build_curve(sc, m, t, settings)
                if c is not None:
                    curves.append(c)
    capacity = []
    for c in curves:
        if c.metric != settings.target_metric:
            continue
        for target in settings.targets:
            capacity.append(Capacity(c.series, c.metric, c.tier,
                                     capacity_threshold(c.N, c.y, c.reps, c.keys, target, c.loglinear)))
    ladder, recs = build_ladder(scores, settings)
    data = data_curves(collection, settings.metrics, settings.tiers, settings.n_boot, settings.seed, settings.level)
    ceilings, notes = collect_ceilings(collection.jobs, settings.tiers)
    return Analysis(settings=settings, collection=collection, scores=tuple(scores), curves=tuple(curves),
                    capacity=tuple(capacity), verdicts=evaluate_tracks(scores, settings), ladder=ladder,
                    recommendations=recs, data=data, ceilings=ceilings, ceiling_notes=tuple(notes))


def fit_summary(analysis: Analysis) -> str:
    """One progress line: how many curves, which fits succeeded, the headline gains."""
    n_ok = sum(c.loglinear.ok for c in analysis.curves)
    n_logi = sum(c.logistic.ok for c in analysis.curves)
    parts = [f"fit: {len(analysis.curves)} curves, {n_ok} log-linear ok, {n_logi} logistic ok"]
    m = analysis.settings.headline_metric
    for sc in analysis.scores:
        c = analysis.curve(sc.label, m, "overall")
        if c is None or not c.gains:
            continue
        gains = ", ".join(f"{g.from_key}->{g.to_key} no signal" if g.status is FitStatus.NO_SIGNAL
                          else f"{g.from_key}->{g.to_key} {g.gain * 100:+.1f}" if g.gain is not None
                          else f"{g.from_key}->{g.to_key} n/a" for g in c.gains)
        parts.append(f"{sc.label}: {m} points per 100M: {gains}")
    return "; ".join(parts)


def headline_series(analysis: Analysis) -> SeriesScores | None:
    """The series the report opens with: ``headline_series`` when configured, else the
    measured fine-tuned series with the most sizes (then the most jobs, then the first)."""
    st = analysis.settings
    if st.headline_series:
        found = analysis.series_scores(st.headline_series)
        if found is None:
            labels = "; ".join(s.label for s in analysis.scores)
            raise FitError(f"no series {st.headline_series!r} in this fit (series: {labels})", field="headline_series")
        return found
    measured = [s for s in analysis.scores if s.kind == "measured" and not s.is_base] or [
        s for s in analysis.scores if s.kind == "measured"]
    if not measured:
        return None
    return max(enumerate(measured), key=lambda e: (n_sizes(e[1]), sum(len(m.seeds) for m in e[1].models), -e[0]))[1]


def n_sizes(series: SeriesScores) -> int:
    """Distinct parameter counts of a series (what a gain or a fit needs two of)."""
    return len({m.params_total for m in series.models})

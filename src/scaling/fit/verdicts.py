"""Decisions from the scores: success verdicts (Track 1 / Track 2), the model ladder and the
smallest model recommended per tier."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scaling.fit.config import Settings, Track
from scaling.fit.fits import _AsDict, _fmt_n
from scaling.fit.scores import SeriesScores


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


@dataclass(frozen=True)
class CheckResult(_AsDict):
    """``passed``: value > threshold. ``ci_above``: the whole interval is above it (the
    pass is clear of sampling noise); None without an interval."""

    metric: str
    tier: str
    threshold: float
    value: float | None
    ci: tuple[float, float] | None
    passed: bool | None
    ci_above: bool | None


@dataclass(frozen=True)
class Verdict(_AsDict):
    track: str
    title: str
    series: str
    status: str                     # "evaluated" | "not evaluated (...)"
    model: str | None = None
    params: float | None = None
    checks: tuple[CheckResult, ...] = ()
    passed: bool | None = None
    verdict: str | None = None


def pick_rung(scores: SeriesScores, track: Track, tolerance: float) -> int | None:
    """Index of the track's rung: the model named ``track.model``, else the model whose total
    parameters are closest to ``track.params`` and within ``tolerance`` (relative) of it."""
    if track.model:
        return scores.model_index(track.model)
    if not scores.models:
        return None
    dist = [abs(m.params_total - track.params) / track.params for m in scores.models]
    i = int(np.argmin(dist))
    return i if dist[i] <= tolerance else None


def evaluate_track(scores: SeriesScores, track: Track, tolerance: float = 0.25) -> Verdict:
    """Evaluate one track on one series (see :class:`scaling.fit.config.Track`)."""
    i = pick_rung(scores, track, tolerance)
    if i is None:
        near = f"model '{track.model}'" if track.model else f"model near {_fmt_n(track.params)}"
        return Verdict(track.name, track.title, scores.label, f"not evaluated (no {near})")
    model = scores.models[i]
    checks = []
    for c in track.checks:
        row = scores.row(c.metric, c.tier)
        value = _finite(row.point[i]) if row is not None else None
        ci = None
        if row is not None and math.isfinite(row.lo[i]) and math.isfinite(row.hi[i]):
            ci = (float(row.lo[i]), float(row.hi[i]))
        checks.append(CheckResult(c.metric, c.tier, c.threshold, value, ci,
                                  None if value is None else value > c.threshold,
                                  None if ci is None else ci[0] > c.threshold))
    missing = [f"{c.metric} on {c.tier}" for c in checks if c.value is None]
    if missing:
        return Verdict(track.name, track.title, scores.label, f"not evaluated (no {', '.join(missing)})",
                       model.key, float(model.params_total), tuple(checks))
    passed = all(c.passed for c in checks)
    return Verdict(track.name, track.title, scores.label, "evaluated", model.key, float(model.params_total),
                   tuple(checks), passed, track.pass_verdict if passed else track.fail_verdict)


def evaluate_tracks(all_scores: Sequence[SeriesScores], settings: Settings) -> tuple[Verdict, ...]:
    """Every track on every measured fine-tuned series (base and reference series are
    context, not candidates)."""
    out = []
    for s in all_scores:
        if s.kind != "measured" or s.is_base:
            continue
        for t in settings.tracks:
            out.append(evaluate_track(s, t, settings.rung_tolerance))
    return tuple(out)


@dataclass(frozen=True)
class LadderRow(_AsDict):
    series: str
    kind: str
    model: str
    params_total: int
    params_non_embedding: int | None
    category: str
    seeds: int
    metric: str
    scores: tuple[tuple[str, float | None, tuple[float, float] | None], ...]  # (tier, value, ci)


@dataclass(frozen=True)
class Recommendation(_AsDict):
    """The smallest model of ``series`` whose ``metric`` on ``tier`` reaches ``target``."""

    series: str
    tier: str
    metric: str
    target: float
    model: str | None
    params_total: int | None
    score: float | None


def build_ladder(all_scores: Sequence[SeriesScores], settings: Settings
                 ) -> tuple[tuple[LadderRow, ...], tuple[Recommendation, ...]]:
    """Ladder rows (every model of every series, by size) and per-tier recommendations
    for ``settings.recommend_target`` on ``settings.target_metric``."""
    rows, recs = [], []
    metric = settings.target_metric
    for s in all_scores:
        for i, m in enumerate(s.models):
            cells = []
            for t in settings.tiers:
                r = s.row(metric, t)
                v = _finite(r.point[i]) if r is not None else None
                ci = None
                if r is not None and math.isfinite(r.lo[i]) and math.isfinite(r.hi[i]):
                    ci = (float(r.lo[i]), float(r.hi[i]))
                cells.append((t, v, ci))
            rows.append(LadderRow(s.label, s.kind, m.key, m.params_total, m.params_non_embedding, m.category,
                                  len(m.seeds), metric, tuple(cells)))
        for t in settings.tiers:
            r = s.row(metric, t)
            if r is None:
                continue
            order = np.argsort([m.params_total for m in s.models], kind="stable")
            pick = next((int(i) for i in order if math.isfinite(r.point[i])
                         and r.point[i] >= settings.recommend_target), None)
            recs.append(Recommendation(s.label, t, metric, settings.recommend_target,
                                       s.models[pick].key if pick is not None else None,
                                       s.models[pick].params_total if pick is not None else None,
                                       float(r.point[pick]) if pick is not None else None))
    return tuple(rows), tuple(recs)

"""Paired differences between runs scored on the same examples.

For a pair (reference run A, compared run B) and a group of examples (overall, a tier, a
schema, a named group of schemas, and complex+ where every run carries it: the tier's 145
examples of :mod:`scaling.complex_plus`, paired by id and drawn on their own):

* the **delta** of each metric is B's mean minus A's mean over the group's examples;
* its **interval** is a paired percentile bootstrap: one replicate draws one multiset of
  example ids and recomputes every run's mean on it
  (:func:`scaling.stats.paired_bootstrap`, stratified by the grouping: the overall
  and tier rows resample within tiers, schema rows within schemas, group rows within groups).
  Where every replicate gives the same delta the bootstrap has collapsed to a point: for a
  0/1 metric (no example right in one run only) the interval is then Newcombe's score
  interval for paired proportions (:func:`scaling.stats.paired_proportion_difference`); for
  Field F1 (every example the same difference) there is none (``ci`` None, method ``none``);
* the **exact McNemar test** on JSONExact counts the discordant examples, ``gained`` (A wrong,
  B right) and ``lost`` (A right, B wrong), and gives the two-sided binomial p-value of
  ``gained`` out of ``gained + lost`` at 1/2 (:func:`scaling.stats.mcnemar_exact`); with no
  discordant example p = 1. Examples both runs answer alike carry no evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from scaling.compare.runs import METRICS, Alignment, Run, complex_plus_ids, tier_rank
from scaling.complex_plus import COMPLEX_PLUS_TIER
from scaling.metrics import PROPORTION_METRICS
from scaling.stats import (OVERALL, McNemar, collapsed, mcnemar_exact, paired_bootstrap, paired_proportion_difference,
                           percentile_ci)

#: Schemas that no named group lists.
OTHERS = "others"


@dataclass(frozen=True)
class Delta:
    """One metric of one pair on one group."""

    a: float
    b: float
    delta: float
    ci: tuple[float, float] | None
    method: str = "bootstrap"
    """How ``ci`` was made: ``bootstrap``, ``newcombe`` (the bootstrap collapsed on a 0/1
    metric) or ``none`` (it collapsed on Field F1: every example the same difference)."""


@dataclass(frozen=True)
class GroupComparison:
    """One pair on one group of examples."""

    group: str
    kind: str
    """``overall``, ``tier``, ``schema`` or ``group``."""
    tier: str | None
    """The tier of a schema row (None otherwise)."""
    n: int
    metrics: Mapping[str, Delta]
    mcnemar: McNemar


@dataclass(frozen=True)
class PairComparison:
    """Run B against run A over the aligned examples."""

    a: str
    b: str
    rows: Sequence[GroupComparison]
    gained: Sequence[tuple[str, str, str]]
    """(id, schema, tier) of the examples B answers exactly and A does not."""
    lost: Sequence[tuple[str, str, str]]
    """(id, schema, tier) of the examples A answers exactly and B does not."""

    def by_kind(self, *kinds: str) -> list[GroupComparison]:
        return [r for r in self.rows if r.kind in kinds]

    def row(self, group: str) -> GroupComparison:
        return next(r for r in self.rows if r.group == group)


def group_labels(schemas: Sequence[str], groups: Mapping[str, Sequence[str]]) -> tuple[str, ...] | None:
    """Each example's named group (:data:`OTHERS` for schemas no group lists); None without groups."""
    if not groups:
        return None
    owner = {s: g for g, members in groups.items() for s in members}
    return tuple(owner.get(s, OTHERS) for s in schemas)


def _deltas(boot: Mapping[str, tuple[dict, dict]], values: Mapping[str, np.ndarray], key: str, mask: np.ndarray,
            i: int, j: int, level: float) -> dict[str, Delta]:
    """Each metric's delta of run j against run i on group ``key`` (``mask``: its examples), with
    its paired-bootstrap interval, or Newcombe's where the bootstrap collapsed on a 0/1 metric."""
    deltas = {}
    for m in METRICS:
        point, reps = boot[m]
        lo, hi = percentile_ci(reps[key][:, j] - reps[key][:, i], level)
        ci, method = (float(lo), float(hi)), "bootstrap"
        if collapsed(lo, hi):
            if m in PROPORTION_METRICS:
                ci, method = paired_proportion_difference(values[m][i][mask], values[m][j][mask], level), "newcombe"
            else:
                ci, method = None, "none"
        deltas[m] = Delta(float(point[key][i]), float(point[key][j]), float(point[key][j] - point[key][i]), ci, method)
    return deltas


def complex_plus_rows(runs: Sequence[Run], pairs: Sequence[tuple[int, int]], n_boot: int, seed: int, level: float,
                      intersect: bool = False) -> dict[tuple[int, int], GroupComparison]:
    """The complex+ row of each pair (:data:`scaling.complex_plus.COMPLEX_PLUS_TIER`), when every run
    carries complex+ on the same examples (:func:`scaling.compare.runs.complex_plus_ids`): its own
    paired bootstrap over those examples, so the other rows' draws stay as they were."""
    ids = complex_plus_ids(runs, intersect)
    if ids is None:
        return {}
    groups = [COMPLEX_PLUS_TIER] * len(ids)
    values = {m: np.array([[r.complex_plus[i].value(m) for i in ids] for r in runs]) for m in METRICS}
    boot = {m: paired_bootstrap([v[None, :] for v in values[m]], groups, [COMPLEX_PLUS_TIER], n_boot, seed)
            for m in METRICS}
    mask = np.ones(len(ids), bool)
    return {(i, j): GroupComparison(COMPLEX_PLUS_TIER, "tier", None, len(ids),
                                    _deltas(boot, values, COMPLEX_PLUS_TIER, mask, i, j, level),
                                    mcnemar_exact(values["json_exact"][i], values["json_exact"][j]))
            for i, j in pairs}


def compare_runs(runs: Sequence[Run], alignment: Alignment, pairs: Sequence[tuple[int, int]],
                 groups: Mapping[str, Sequence[str]] | None = None, n_boot: int = 10000, seed: int = 0,
                 level: float = 0.95, intersect: bool = False) -> list[PairComparison]:
    """Deltas, intervals and McNemar tests of each ``(i, j)`` in ``pairs`` (run j against run i).

    One bootstrap per grouping draws the replicates for every run at once, so every pair and
    every metric is resampled on the same draws. The complex+ row, where there is one, follows
    the tiers (:func:`complex_plus_rows`)."""
    ids, tiers, schemas = alignment.ids, alignment.tiers, alignment.schemas
    values = {m: np.array([[r.examples[i].value(m) for i in ids] for r in runs]) for m in METRICS}
    tier_keys = [OVERALL] + sorted(set(tiers), key=tier_rank)
    schema_keys = list(dict.fromkeys(schemas))  # already in tier, schema order
    labels = group_labels(schemas, groups or {})
    groupings: list[tuple[str, Sequence[str], list[str]]] = [("tier", tiers, tier_keys), ("schema", schemas, schema_keys)]
    if labels is not None:
        groupings.append(("group", labels, [g for g in [*groups, OTHERS] if g in set(labels)]))

    boot: dict[tuple[str, str], tuple[dict, dict]] = {}
    for kind, group_of, keys in groupings:
        for m in METRICS:
            boot[(kind, m)] = paired_bootstrap([v[None, :] for v in values[m]], group_of, keys, n_boot, seed)

    exact = values["json_exact"]
    pooled = complex_plus_rows(runs, pairs, n_boot, seed, level, intersect)
    out = []
    for i, j in pairs:
        rows = []
        for kind, group_of, keys in groupings:
            members = np.asarray(group_of)
            for key in keys:
                mask = np.ones(len(ids), bool) if key == OVERALL else members == key
                deltas = _deltas({m: boot[(kind, m)] for m in METRICS}, values, key, mask, i, j, level)
                row_kind = "overall" if key == OVERALL else kind
                tier = tiers[int(np.flatnonzero(mask)[0])] if kind == "schema" else None
                rows.append(GroupComparison(key, row_kind, tier, int(mask.sum()), deltas,
                                            mcnemar_exact(exact[i][mask], exact[j][mask])))
            if kind == "tier" and (i, j) in pooled:
                rows.append(pooled[(i, j)])
        flips = [(ids[k], schemas[k], tiers[k]) for k in range(len(ids))]
        gained = [f for k, f in enumerate(flips) if exact[j][k] and not exact[i][k]]
        lost = [f for k, f in enumerate(flips) if exact[i][k] and not exact[j][k]]
        out.append(PairComparison(runs[i].label, runs[j].label, rows, gained, lost))
    return out


"""Paired bootstrap of per-model scores.

Every model of a series is scored on the same test examples, so differences between models
(the gain per 100M parameters) are estimated *paired*: one bootstrap replicate draws one
multiset of example ids and recomputes every model's mean on it. Resampling is stratified
by tier (each tier's examples are drawn from that tier, so the tier counts stay fixed) and
the ``"overall"`` score of a replicate is the mean over all its drawn examples. When a model
has several seeds, the replicate also draws that model's seeds with replacement and
averages each example over the drawn seeds.

Intervals are percentile intervals of the replicates.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from scaling.fit.collect import OVERALL

#: Replicates computed per block, to bound memory at about CHUNK x n_examples floats.
CHUNK = 256


def stratified_weights(groups: Sequence[str], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling counts: row ``b`` says how often each example is drawn in
    replicate ``b``; within each group (tier) the counts sum to the group's size."""
    groups = np.asarray(groups)
    n = len(groups)
    w = np.zeros((n_boot, n), dtype=np.float64)
    for g in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == g)
        w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=n_boot)
    return w


def seed_weights(n_seeds: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n_seeds)`` counts of each seed in each replicate (each row sums to n_seeds)."""
    if n_seeds == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot).astype(np.float64)


def tier_index(groups: Sequence[str], tiers: Sequence[str]) -> dict[str, np.ndarray]:
    """Example indices of each of ``tiers`` (``"overall"`` = all); tiers without examples
    are left out."""
    groups = np.asarray(groups)
    out = {}
    for t in tiers:
        idx = np.arange(len(groups)) if t == OVERALL else np.flatnonzero(groups == t)
        if len(idx):
            out[t] = idx
    return out


def point_scores(values: np.ndarray, index: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean over examples of the per-example seed mean, per tier. ``values``: ``(seeds, n)``."""
    per_example = values.mean(axis=0)
    return {t: float(per_example[idx].mean()) for t, idx in index.items()}


def replicate_scores(values: np.ndarray, weights: np.ndarray, seeds: np.ndarray,
                     index: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bootstrap replicates of :func:`point_scores`.

    ``values``: ``(S, n)`` per-example scores of one model's S seeds; ``weights``:
    ``(B, n)`` example counts (shared by all models of a series, which makes the bootstrap
    paired); ``seeds``: ``(B, S)`` seed counts. Returns ``{tier: (B,)}``.
    """
    n_boot = weights.shape[0]
    n_seeds = values.shape[0]
    out = {t: np.empty(n_boot) for t in index}
    for start in range(0, n_boot, CHUNK):
        sl = slice(start, min(start + CHUNK, n_boot))
        per_example = (seeds[sl] @ values) / n_seeds          # (b, n): seed-resampled example means
        weighted = weights[sl] * per_example
        for t, idx in index.items():
            out[t][sl] = weighted[:, idx].sum(axis=1) / weights[sl][:, idx].sum(axis=1)
    return out


def percentile_ci(reps: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates along ``axis`` (NaN replicates ignored)."""
    alpha = (1.0 - level) / 2.0
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(reps, [100 * alpha, 100 * (1 - alpha)], axis=axis)
    return lo, hi


def paired_bootstrap(values: Sequence[np.ndarray], groups: Sequence[str], tiers: Sequence[str],
                     n_boot: int, seed: int | Sequence[int] = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Point scores and paired replicates of J models scored on the same examples.

    ``values[j]``: ``(S_j, n)`` scores of model j (seeds x examples), columns aligned to
    ``groups`` (the tier of each example). Returns ``(point, reps)`` with ``point[tier]``
    of shape ``(J,)`` and ``reps[tier]`` of shape ``(n_boot, J)``. The example draws depend
    only on ``seed`` and ``groups``, so two series scored on the same ids with the same seed
    are paired with each other too.
    """
    index = tier_index(groups, tiers)
    base = [seed] if isinstance(seed, int) else list(seed)
    weights = stratified_weights(groups, n_boot, np.random.default_rng(base + [0]))
    point = {t: np.empty(len(values)) for t in index}
    reps = {t: np.empty((n_boot, len(values))) for t in index}
    for j, v in enumerate(values):
        v = np.atleast_2d(np.asarray(v, dtype=float))
        sw = seed_weights(v.shape[0], n_boot, np.random.default_rng(base + [1, j]))
        for t, s in point_scores(v, index).items():
            point[t][j] = s
        for t, r in replicate_scores(v, weights, sw, index).items():
            reps[t][:, j] = r
    return point, reps

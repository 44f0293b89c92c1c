"""Intervals and tests, in one place. No model, no torch.

**A proportion** (JSONExact, schema compliance: 0/1 per example) gets a score interval that
stays honest at 0% and 100%: :func:`wilson_interval` (the default) or
:func:`clopper_pearson_interval` (exact, wider). 0 of 25 is compatible with up to 13.3%
(Wilson) or 13.7% (Clopper-Pearson); a percentile bootstrap would say [0, 0].
:func:`proportion_interval` takes a share and a count; for a rung with several seeds the
share is the mean over seeds and the count the examples (each example counted once: a
seed-averaged answer varies less than one answer, so the interval is conservative).

**A mean of per-example values** that are not 0/1 (Field F1) gets a percentile bootstrap over
examples: :func:`bootstrap_ci`, and :func:`bootstrap_intervals` for several metrics at once
(one index matrix, :func:`bootstrap_indices`, which the prompt ceiling of
:mod:`scaling.ceiling` draws too). When every value is the same (every F1 0), the bootstrap
has nothing to resample and collapses to a point; :func:`bounded_mean_interval` then gives the
Wilson bound (values in [0, 1]). **A ratio of sums** over units (the share of leaves right over
answers, :mod:`scaling.failures`) gets :func:`ratio_interval`.

**Differences between models scored on the same examples** keep the paired bootstrap
(:func:`paired_bootstrap`: one replicate draws one multiset of examples, stratified by tier,
and recomputes every model's mean on it; with several seeds it also draws each model's
seeds), with :func:`percentile_ci` intervals of the replicates. Where every replicate gives
the same difference of a 0/1 metric (no example answered right by one model only), the
bootstrap collapses to a point; :func:`paired_proportion_difference` (Newcombe's score
interval for paired proportions) is the interval there. :func:`mcnemar_exact` tests such
a difference. :func:`proportion_intervals` and :func:`bounded_mean_intervals` give the
intervals of several models' scores at once.

Two conventions name the interval's width, kept as each caller has always used them (the
floats differ in the last bits): the per-run bootstraps take ``alpha`` and numpy's quantiles
(:func:`quantile_interval`), the paired bootstrap's replicates take ``level`` and
:func:`percentile_ci` (NaN replicates ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Mapping, Sequence

import numpy as np

OVERALL = "overall"
"""The group of every example (beside the tiers)."""


# --------------------------------------------------------------------------------------
# proportions
# --------------------------------------------------------------------------------------


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def _check_count(k: float, n: float) -> None:
    if not n > 0:
        raise ValueError(f"a proportion needs n > 0 trials, got {n}")
    if not -1e-9 <= k <= n + 1e-9:
        raise ValueError(f"{k} successes out of {n}")


def wilson_interval(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (``k`` may be fractional:
    a mean over seeds times ``n``). At ``k = 0`` its lower end is exactly 0 and its upper end
    ``z^2 / (n + z^2)``: 13.3% for 0 of 25 at 95%."""
    _check_count(k, n)
    z = _z(level)
    p = min(max(k / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p == 0 else max(0.0, centre - half)
    hi = 1.0 if p == 1 else min(1.0, centre + half)
    return lo, hi


def clopper_pearson_interval(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact") interval of ``k`` successes in ``n`` trials: beta quantiles,
    never narrower than the nominal level (13.7% upper end for 0 of 25 at 95%)."""
    from scipy.stats import beta

    _check_count(k, n)
    alpha = 1 - level
    lo = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


PROPORTION_METHODS = {"wilson": wilson_interval, "clopper_pearson": clopper_pearson_interval}


def proportion_interval(share: float, n: float, level: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """The interval of a proportion ``share`` (in [0, 1]) measured on ``n`` examples."""
    if method not in PROPORTION_METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(PROPORTION_METHODS)}")
    return PROPORTION_METHODS[method](share * n, n, level)


def paired_proportion_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Newcombe's score interval (1998, method 10) for ``mean(b) - mean(a)`` of two paired 0/1
    vectors: Wilson intervals of both shares, combined with the pairs' correlation. Unlike
    the paired bootstrap it does not collapse when no example is answered right by one side
    only (then it is about as wide as the two Wilson intervals allow)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    n = len(a)
    if n == 0 or len(b) != n:
        raise ValueError(f"paired vectors of equal, non-zero length expected, got {len(a)} and {len(b)}")
    both, only_a = int(np.sum(a & b)), int(np.sum(a & ~b))
    only_b, neither = int(np.sum(~a & b)), int(np.sum(~a & ~b))
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson_interval(both + only_a, n, level)
    l2, u2 = wilson_interval(both + only_b, n, level)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    # Newcombe's continuity-corrected correlation: shrunk towards 0, never past it.
    cross = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = cross / math.sqrt(margins) if margins > 0 else 0.0
    d = p2 - p1
    lo = d - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    hi = d + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def collapsed(lo: float, hi: float) -> bool:
    """Whether a bootstrap interval is a single point (every replicate gave the same value:
    all values equal, nothing to resample)."""
    return math.isfinite(lo) and math.isfinite(hi) and hi - lo <= 1e-12


def bounded_mean_interval(mean: float, n: float, lo: float, hi: float, level: float = 0.95) -> tuple[float, float]:
    """The bootstrap interval ``(lo, hi)`` of a mean of ``n`` values in [0, 1] (Field F1, a share
    of leaves), unless it collapsed (:func:`collapsed`: every value equal, say every F1 0):
    then the Wilson interval of ``mean`` on ``n``, a bound that holds because a value in
    [0, 1] with mean p varies at most as a 0/1 value does."""
    if collapsed(lo, hi) and n > 0 and 0.0 <= mean <= 1.0:
        return proportion_interval(mean, n, level)
    return lo, hi


# --------------------------------------------------------------------------------------
# the bootstrap of a mean (one run)
# --------------------------------------------------------------------------------------


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` example indices drawn with replacement (``numpy`` ``default_rng(seed)``):
    row ``b`` is replicate ``b``'s resample. Every per-run bootstrap draws these, so two
    statistics of the same ``n`` examples with the same seed are drawn on the same resamples."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap means, shape (n_boot, k) for values of shape (n, k): one index
    matrix shared by every column, so metrics are resampled jointly."""
    return values[bootstrap_indices(values.shape[0], n_boot, seed)].mean(axis=1)


def quantile_interval(values: np.ndarray, alpha: float = 0.05, axis: int = 0) -> np.ndarray:
    """The ``alpha/2`` and ``1 - alpha/2`` quantiles of ``values`` along ``axis`` (numpy's
    linear interpolation), stacked on a new first axis: the percentile interval of a per-run
    bootstrap, in the ``alpha`` convention of :func:`bootstrap_ci` (the paired bootstrap's
    replicates take :func:`percentile_ci`, in the ``level`` convention)."""
    return np.quantile(values, [alpha / 2, 1 - alpha / 2], axis=axis)


def check_bootstrap_args(n: int, n_boot: int, alpha: float) -> None:
    if n == 0:
        raise ValueError("bootstrap needs at least one value")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of ``values``.

    Draws ``n_boot`` resamples of size ``n`` with replacement (``numpy``
    ``default_rng(seed)``, one index matrix), and returns the ``alpha/2`` and
    ``1 - alpha/2`` quantiles of the resample means. Deterministic for a given seed.
    """
    lo, hi = bootstrap_intervals(np.asarray(values, dtype=float).reshape(-1, 1), n_boot, seed, alpha)[:, 0]
    return float(lo), float(hi)


def bootstrap_intervals(values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> np.ndarray:
    """:func:`bootstrap_ci` of every column of ``values`` (shape ``(n, k)``) at once, on one
    index matrix (the columns are resampled jointly): shape ``(2, k)``, lower ends then upper."""
    check_bootstrap_args(values.shape[0], n_boot, alpha)
    return quantile_interval(bootstrap_means(values, n_boot, seed), alpha)


# --------------------------------------------------------------------------------------
# the paired bootstrap (models, or runs, scored on the same examples)
# --------------------------------------------------------------------------------------


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


def ratio_interval(weights: np.ndarray, num: np.ndarray, den: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of a ratio of sums, ``sum(num) / sum(den)`` over units (answers)
    that each carry ``num[i]`` of ``den[i]`` (right leaves of its leaves), under the resampling
    counts ``weights`` (``(B, n)``, :func:`stratified_weights`): replicate ``b``'s ratio is
    ``weights[b] @ num / weights[b] @ den``. A replicate that drew no denominator is left out.
    Where every unit has the same ratio the bootstrap collapses to a point; the interval is
    then Wilson's bound with the units that have a denominator as the count
    (:func:`bounded_mean_interval`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = (weights @ num) / (weights @ den)
    lo, hi = percentile_ci(ratios, level)
    share = float(num.sum() / den.sum())
    return bounded_mean_interval(share, int((den > 0).sum()), float(lo), float(hi), level)


def proportion_intervals(shares: np.ndarray, n: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`proportion_interval` of each share on ``n`` examples (several models at once;
    NaN where a share is unknown)."""
    lo, hi = np.full(len(shares), np.nan), np.full(len(shares), np.nan)
    for i, share in enumerate(shares):
        if np.isfinite(share) and n > 0:
            lo[i], hi[i] = proportion_interval(float(share), n, level)
    return lo, hi


def bounded_mean_intervals(means: np.ndarray, n: int, lo: np.ndarray, hi: np.ndarray,
                           level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bounded_mean_interval` of each mean (several models at once): its bootstrap
    interval ``(lo[i], hi[i])``, or Wilson's bound where that collapsed."""
    lo, hi = np.array(lo, dtype=float), np.array(hi, dtype=float)
    for i, mean in enumerate(means):
        if np.isfinite(mean):
            lo[i], hi[i] = bounded_mean_interval(float(mean), n, float(lo[i]), float(hi[i]), level)
    return lo, hi


# --------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test on JSONExact for one pair and group."""

    gained: int
    """Examples B answers exactly and A does not."""
    lost: int
    """Examples A answers exactly and B does not."""
    both_right: int
    both_wrong: int
    p: float

    @property
    def discordant(self) -> int:
        return self.gained + self.lost


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemar:
    """The exact (binomial) McNemar test of two paired 0/1 outcome vectors."""
    from scipy.stats import binomtest

    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    gained, lost = int(np.sum(~a & b)), int(np.sum(a & ~b))
    n = gained + lost
    p = 1.0 if n == 0 else float(binomtest(gained, n, 0.5, alternative="two-sided").pvalue)
    return McNemar(gained, lost, int(np.sum(a & b)), int(np.sum(~a & ~b)), min(p, 1.0))



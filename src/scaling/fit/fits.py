"""Scaling fits: pure functions of (sizes, scores, bootstrap replicates) -> frozen results.

Conventions used throughout:

* ``N``: parameter counts of the models (one per size, any order; sorted internally).
* ``y``: their scores, fractions in [0, 1].
* ``reps``: optional ``(B, J)`` bootstrap replicates of ``y`` (same column order as ``N``);
  intervals are percentile intervals of the statistic recomputed on every replicate.
* Gains are in score units (fractions) per 1e8 parameters: 0.05 means 5 points per 100M.
* Curves are fitted in log space: ``x = log10(N)``.

Every result is a frozen dataclass whose outcome is an enum with a docstring per member:
a fit's or a gain's :class:`FitStatus` (``ok``, ``insufficient_sizes``, ``failed`` with its
``why``, serialised ``"failed: <why>"``, ``no_signal``, ``same_size``), a diminishing-returns
answer's :class:`ReturnsKind`, a capacity threshold's :class:`ThresholdStatus`. Each is a
``str`` whose value is what ``fit.json`` writes. Nothing here raises on bad luck with the data.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
from scipy.optimize import least_squares

from scaling.stats import percentile_ci

HUNDRED_M = 1e8
LN10 = math.log(10.0)
LOG10_2 = math.log10(2.0)

Interval = tuple[float, float] | None


def _ci(values: np.ndarray, level: float) -> Interval:
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.isfinite(values).any():
        return None
    lo, hi = percentile_ci(values, level)
    return float(lo), float(hi)


def _prep(N: Sequence[float], y: Sequence[float], reps: np.ndarray | None,
          keys: Sequence[str] | None = None):
    N = np.asarray(N, dtype=float)
    y = np.asarray(y, dtype=float)
    if N.shape != y.shape or N.ndim != 1:
        raise ValueError(f"N and y must be 1-D of equal length, got {N.shape} and {y.shape}")
    if np.any(N <= 0):
        raise ValueError("parameter counts must be positive")
    order = np.argsort(N, kind="stable")
    keys = [str(i) for i in range(len(N))] if keys is None else list(keys)
    reps_sorted = None
    if reps is not None:
        reps = np.asarray(reps, dtype=float)
        if reps.ndim != 2 or reps.shape[1] != len(N):
            raise ValueError(f"reps must be (B, {len(N)}), got {reps.shape}")
        reps_sorted = reps[:, order]
    return N[order], y[order], reps_sorted, [keys[i] for i in order]


class _Outcome(str, enum.Enum):
    """An outcome: a ``str`` equal to its value, which is also how it prints and serialises."""

    def __str__(self) -> str:
        return self.value


class FitStatus(_Outcome):
    """How a fit, or a gain between two sizes, ended."""

    OK = "ok"
    """Estimated: every value is set (and its interval where bootstrap replicates were given)."""
    INSUFFICIENT_SIZES = "insufficient_sizes"
    """Too few distinct sizes for this fit (2 for the log-linear, 4 for the logistic): nothing estimated."""
    FAILED = "failed"
    """Not estimated for another reason, which the result's ``why`` says (non-finite scores, a least
    squares that converged from no start); serialised ``"failed: <why>"``."""
    NO_SIGNAL = "no_signal"
    """Every size, on every bootstrap replicate, scores 0 (or every one 100%): a gain of 0 [0, 0]
    there is the metric unable to move, not a measured absence of gain (:func:`no_signal`)."""
    SAME_SIZE = "same_size"
    """Two rungs of the same size: there is no gain per parameter between them."""


class ReturnsKind(_Outcome):
    """What kind of answer a diminishing-returns search gave (see :class:`DiminishingReturns`)."""

    RANGE = "range"
    """From rungs: the first adjacent pair of sizes whose gain is below the threshold is
    ``between = (N_i, N_j)``: growing from N_i to N_j buys less than the threshold per 100M.
    ``ci_between`` spans the pairs that bootstrap replicates pick (95%); its upper end is None
    when some replicates never fall below."""
    NOT_REACHED = "not_reached"
    """From rungs: every step pays at least the threshold; ``between = (N_max, None)``."""
    POINT = "point"
    """From a log-linear fit over >= 4 sizes: ``n`` solves ``b / (n ln 10) * 1e8 = threshold``;
    ``ci`` from the replicates' fits (a replicate with ``b <= 0`` counts as n = 0: already below
    everywhere). ``rungs`` holds the rung-based answer as well."""
    BELOW_EVERYWHERE = "below_everywhere"
    """The fitted gain per decade is <= 0: no size pays the threshold."""
    NO_SIGNAL = "no_signal"
    """Every size scores 0 (or 100%): the metric says nothing about size."""
    INSUFFICIENT_SIZES = "insufficient_sizes"
    """Fewer than two sizes."""
    FAILED = "failed"
    """The log-linear fit a point needs did not succeed (``note`` says how); ``rungs`` holds the
    rung-based answer."""


class ThresholdStatus(_Outcome):
    """Whether a measured size reaches a capacity target (see :class:`CapacityThreshold`)."""

    REACHED = "reached"
    """A measured size scores at least the target; the result names the smallest."""
    NOT_REACHED = "not_reached"
    """No measured size reaches the target."""


class _AsDict:
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, _Outcome):
                v = v.value
            elif isinstance(v, _AsDict):
                v = v.to_dict()
            elif isinstance(v, tuple) and v and isinstance(v[0], _AsDict):
                v = [x.to_dict() for x in v]
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


class _Fitted(_AsDict):
    """A fit with a :class:`FitStatus` and, when it failed, the reason (``why``)."""

    status: FitStatus
    why: str

    @property
    def ok(self) -> bool:
        return self.status is FitStatus.OK

    @property
    def outcome(self) -> str:
        """The status as ``fit.json`` and the tables write it: ``"failed: <why>"`` for a failure."""
        return f"{self.status.value}: {self.why}" if self.why else self.status.value

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["status"] = self.outcome
        del out["why"]
        return out


# ----------------------------------------------------------------------------- signal


def no_signal(y, reps=None) -> str | None:
    """Why scores carry no signal about size, or None when they do: every size (and every
    bootstrap replicate) sits at the floor (``"all rungs 0"``) or at the ceiling (``"all rungs
    100%"``). A gain between two such scores is 0 with the interval [0, 0] by construction,
    not a measured absence of gain: the metric cannot move there."""
    y = np.asarray(y, dtype=float)
    if y.size == 0 or not np.all(np.isfinite(y)):
        return None
    for value, words in ((0.0, "0"), (1.0, "100%")):
        if np.all(y == value) and (reps is None or np.all(np.asarray(reps, dtype=float) == value)):
            return f"all rungs {words}" if y.size > 1 else f"score {words}"
    return None


# ----------------------------------------------------------------------------- rung gains


@dataclass(frozen=True)
class RungGain(_AsDict):
    """Gain between adjacent sizes: ``(y_to - y_from) / ((N_to - N_from) / 1e8)``.
    ``status``: :attr:`FitStatus.OK`, :attr:`FitStatus.SAME_SIZE` (no gain) or
    :attr:`FitStatus.NO_SIGNAL` (both sizes at 0, or both at 100%, on every replicate: the gain
    is 0 [0, 0] only because the metric cannot move; see :func:`no_signal`)."""

    from_key: str
    to_key: str
    n_from: float
    n_to: float
    score_from: float
    score_to: float
    gain: float | None
    ci: Interval
    status: FitStatus = FitStatus.OK


def rung_gains(N, y, reps=None, keys=None, level: float = 0.95) -> tuple[RungGain, ...]:
    """Gain per 100M parameters between each pair of adjacent sizes (sorted by N), with a
    paired-bootstrap interval when ``reps`` is given. Sizes that are equal give
    :attr:`FitStatus.SAME_SIZE` and no gain."""
    N, y, reps, keys = _prep(N, y, reps, keys)
    out = []
    for i in range(len(N) - 1):
        dn = (N[i + 1] - N[i]) / HUNDRED_M
        if dn <= 0:
            out.append(RungGain(keys[i], keys[i + 1], float(N[i]), float(N[i + 1]), float(y[i]),
                                float(y[i + 1]), None, None, FitStatus.SAME_SIZE))
            continue
        g = (y[i + 1] - y[i]) / dn
        ci = _ci((reps[:, i + 1] - reps[:, i]) / dn, level) if reps is not None else None
        flat = no_signal(y[i:i + 2], reps[:, i:i + 2] if reps is not None else None)
        out.append(RungGain(keys[i], keys[i + 1], float(N[i]), float(N[i + 1]), float(y[i]),
                            float(y[i + 1]), float(g) if math.isfinite(g) else None, ci,
                            FitStatus.NO_SIGNAL if flat else FitStatus.OK))
    return tuple(out)


def span_gain(N, y, reps=None, keys=None, level: float = 0.95) -> RungGain | None:
    """The gain per 100M from the smallest to the largest size (the ladder as one step),
    with its paired interval; None with fewer than two distinct sizes."""
    N, y, reps, keys = _prep(N, y, reps, keys)
    if len(N) < 2 or N[-1] <= N[0]:
        return None
    ends = [0, len(N) - 1]
    return rung_gains(N[ends], y[ends], reps[:, ends] if reps is not None else None,
                      [keys[0], keys[-1]], level)[0]


# ----------------------------------------------------------------------------- log-linear


@dataclass(frozen=True)
class LogLinearFit(_Fitted):
    """``score = a + b * log10(N)``: ``b`` is the gain per decade of parameters,
    ``gain_per_doubling = b * log10(2)``. ``loo_rmse``: root mean squared error of
    predicting each size from a fit to the others (needs >= 3 sizes)."""

    status: FitStatus
    n_sizes: int
    a: float | None = None
    b: float | None = None
    gain_per_doubling: float | None = None
    rmse: float | None = None
    loo_rmse: float | None = None
    ci_a: Interval = None
    ci_b: Interval = None
    ci_gain_per_doubling: Interval = None
    n_boot: int = 0
    why: str = ""
    """Why the fit failed (:attr:`FitStatus.FAILED`); empty otherwise."""

    def predict(self, N) -> np.ndarray:
        return self.a + self.b * np.log10(np.asarray(N, dtype=float))

    def marginal_gain_per_100m(self, N) -> np.ndarray:
        """d score / d N, times 1e8: ``b / (N ln 10) * 1e8``."""
        return self.b / (np.asarray(N, dtype=float) * LN10) * HUNDRED_M


def _ols(x: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line through (x, Y[k]) for every row k of Y: returns (a, b)."""
    xm = x.mean()
    dx = x - xm
    b = (Y - Y.mean(axis=-1, keepdims=True)) @ dx / (dx @ dx)
    a = Y.mean(axis=-1) - b * xm
    return a, b


def fit_loglinear(N, y, reps=None, level: float = 0.95, min_sizes: int = 2) -> LogLinearFit:
    """Least-squares fit of ``y = a + b log10 N`` (one point per size), with bootstrap
    intervals for a, b and the gain per doubling from refits to every replicate."""
    N, y, reps, _ = _prep(N, y, reps)
    distinct = len(np.unique(N))
    if distinct < max(2, min_sizes):
        return LogLinearFit(status=FitStatus.INSUFFICIENT_SIZES, n_sizes=distinct)
    if not np.all(np.isfinite(y)):
        return LogLinearFit(status=FitStatus.FAILED, n_sizes=distinct, why="non-finite scores")
    x = np.log10(N)
    a, b = _ols(x, y[None, :])
    a, b = float(a[0]), float(b[0])
    rmse = float(np.sqrt(np.mean((a + b * x - y) ** 2)))
    loo = None
    if distinct >= 3:
        errs = []
        for j in range(len(x)):
            keep = np.arange(len(x)) != j
            if len(np.unique(x[keep])) < 2:
                continue
            aj, bj = _ols(x[keep], y[keep][None, :])
            errs.append(float(aj[0] + bj[0] * x[j] - y[j]))
        loo = float(np.sqrt(np.mean(np.square(errs)))) if errs else None
    ci_a = ci_b = ci_d = None
    n_boot = 0
    if reps is not None and len(reps):
        ra, rb = _ols(x, reps)
        ci_a, ci_b, ci_d = _ci(ra, level), _ci(rb, level), _ci(rb * LOG10_2, level)
        n_boot = int(np.isfinite(rb).sum())
    return LogLinearFit(status=FitStatus.OK, n_sizes=distinct, a=a, b=b, gain_per_doubling=b * LOG10_2,
                        rmse=rmse, loo_rmse=loo, ci_a=ci_a, ci_b=ci_b, ci_gain_per_doubling=ci_d,
                        n_boot=n_boot)


# ----------------------------------------------------------------------------- logistic


@dataclass(frozen=True)
class LogisticFit(_Fitted):
    """Saturating curve in log N:
    ``score = lo + (hi - lo) / (1 + exp(-k (log10 N - x0)))`` with ``lo, hi`` in [0, 1] and
    ``k > 0``; ``n50 = 10**x0`` is the size at the midpoint. ``loo_rmse``: error of
    predicting each size from a fit to the others; with 5+ sizes every refit is the full
    curve, with exactly 4 a refit has 3 points for 4 parameters, so there the floor ``lo`` is
    fixed at 0 (a model that has learnt nothing scores 0) and ``loo_note`` says so."""

    status: FitStatus
    n_sizes: int
    lo: float | None = None
    hi: float | None = None
    k: float | None = None
    x0: float | None = None
    n50: float | None = None
    rmse: float | None = None
    loo_rmse: float | None = None
    ci_lo: Interval = None
    ci_hi: Interval = None
    ci_k: Interval = None
    ci_x0: Interval = None
    n_boot: int = 0
    loo_note: str = ""
    why: str = ""
    """Why the fit failed (:attr:`FitStatus.FAILED`); empty otherwise."""

    def predict(self, N) -> np.ndarray:
        return logistic(np.log10(np.asarray(N, dtype=float)), self.lo, self.hi, self.k, self.x0)


def logistic(x, lo, hi, k, x0):
    """The saturating curve at ``x = log10 N``."""
    z = np.clip(-k * (np.asarray(x, dtype=float) - x0), -500, 500)
    return lo + (hi - lo) / (1.0 + np.exp(z))


K_BOUNDS = (1e-3, 100.0)
X0_MARGIN = 3.0  # decades beyond the measured sizes the midpoint may lie


def _logistic_lsq(x: np.ndarray, y: np.ndarray, starts: Sequence[Sequence[float]],
                  fix_lo: float | None = None) -> np.ndarray | None:
    """Best bounded least-squares logistic over ``starts``; with ``fix_lo`` the floor is held
    there and only (hi, k, x0) are fitted (the result still has all four parameters)."""
    lower = [0.0, 0.0, K_BOUNDS[0], x.min() - X0_MARGIN]
    upper = [1.0, 1.0, K_BOUNDS[1], x.max() + X0_MARGIN]
    if fix_lo is not None:
        lower, upper = lower[1:], upper[1:]
        starts = [list(p0)[1:] for p0 in starts]

    def full(p):
        return np.concatenate([[fix_lo], p]) if fix_lo is not None else p

    def resid(p):
        return logistic(x, *full(p)) - y

    def jac(p):
        # analytic: finite differences cost a residual call per parameter per step
        lo, hi, k, x0 = full(p)
        z = np.clip(-k * (x - x0), -500, 500)
        s = 1.0 / (1.0 + np.exp(z))
        ds = (hi - lo) * s * (1.0 - s)
        cols = [1.0 - s, s, ds * (x - x0), -ds * k]
        return np.stack(cols[1:] if fix_lo is not None else cols, axis=1)

    best, best_cost = None, math.inf
    for p0 in starts:
        p0 = np.clip(np.asarray(p0, dtype=float), np.add(lower, 1e-9), np.subtract(upper, 1e-9))
        try:
            r = least_squares(resid, p0, jac=jac, bounds=(lower, upper), method="trf", x_scale="jac",
                              xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
        except (ValueError, FloatingPointError):
            continue
        # status 0 (evaluation budget spent) is kept: on step-like data k runs towards its bound
        # and the cost is already at its floor long before the 1e-12 tolerances stop the
        # solver; the best cost over the starts still decides.
        if r.status >= 0 and np.all(np.isfinite(r.x)) and r.cost < best_cost:
            best, best_cost = full(r.x), r.cost
    return best


def _starts(x: np.ndarray, y: np.ndarray) -> list[list[float]]:
    lo, hi = float(np.min(y)), float(np.max(y))
    span = max(hi - lo, 1e-3)
    out = []
    for x0 in np.quantile(x, [0.25, 0.5, 0.75]):
        for k in (1.0, 4.0, 16.0):
            out.append([max(lo - 0.1 * span, 0.0), min(hi + 0.1 * span, 1.0), k, float(x0)])
    return out


def fit_logistic(N, y, reps=None, level: float = 0.95, min_sizes: int = 4,
                 n_boot: int | None = None) -> LogisticFit:
    """Bounded least-squares fit of :func:`logistic` in log10 N (multi-start), with
    bootstrap intervals from refits to the first ``n_boot`` replicates (all when None);
    needs ``min_sizes`` (>= 4) distinct sizes."""
    N, y, reps, _ = _prep(N, y, reps)
    distinct = len(np.unique(N))
    if distinct < max(4, min_sizes):
        return LogisticFit(status=FitStatus.INSUFFICIENT_SIZES, n_sizes=distinct)
    if not np.all(np.isfinite(y)):
        return LogisticFit(status=FitStatus.FAILED, n_sizes=distinct, why="non-finite scores")
    x = np.log10(N)
    p = _logistic_lsq(x, y, _starts(x, y))
    if p is None:
        return LogisticFit(status=FitStatus.FAILED, n_sizes=distinct,
                           why="least squares did not converge from any start")
    rmse = float(np.sqrt(np.mean((logistic(x, *p) - y) ** 2)))
    loo = None
    loo_note = ""
    if len(x) == distinct:  # one point per size: leaving one out leaves the others' sizes
        fix_lo = 0.0 if distinct == 4 else None
        if fix_lo is not None:
            loo_note = "refits to 3 sizes hold the floor at 0"
        errs = []
        for j in range(len(x)):
            keep = np.arange(len(x)) != j
            # warm start from the full fit; the multi-start only when that fails (as for replicates)
            pj = _logistic_lsq(x[keep], y[keep], [p], fix_lo=fix_lo)
            if pj is None:
                pj = _logistic_lsq(x[keep], y[keep], _starts(x[keep], y[keep]), fix_lo=fix_lo)
            if pj is not None:
                errs.append(float(logistic(x[j], *pj) - y[j]))
        loo = float(np.sqrt(np.mean(np.square(errs)))) if errs else None
        if errs and len(errs) < len(x):
            loo_note = "; ".join(filter(None, [loo_note, f"from {len(errs)} of {len(x)} refits (the others did not converge)"]))
    cis: list[Interval] = [None] * 4
    n_ok = 0
    if reps is not None and len(reps):
        use = reps if n_boot is None else reps[:n_boot]
        boot = np.full((len(use), 4), np.nan)
        for i, yr in enumerate(use):
            # warm start from the point estimate; a cold multi-start only when that fails
            pb = _logistic_lsq(x, yr, [p])
            if pb is None:
                pb = _logistic_lsq(x, yr, _starts(x, yr))
            if pb is not None:
                boot[i] = pb
        n_ok = int(np.isfinite(boot[:, 0]).sum())
        cis = [_ci(boot[:, c], level) for c in range(4)]
    lo, hi, k, x0 = (float(v) for v in p)
    return LogisticFit(status=FitStatus.OK, n_sizes=distinct, lo=lo, hi=hi, k=k, x0=x0, n50=float(10 ** x0),
                       rmse=rmse, loo_rmse=loo, ci_lo=cis[0], ci_hi=cis[1], ci_k=cis[2], ci_x0=cis[3],
                       n_boot=n_ok, loo_note=loo_note)


# ----------------------------------------------------------------------------- diminishing returns


@dataclass(frozen=True)
class DiminishingReturns(_AsDict):
    """Where the marginal gain per 100M parameters falls below ``threshold``; ``kind`` says
    what kind of answer this is and which fields it sets (:class:`ReturnsKind`).

    Steps between two sizes that both score 0 (or both 100%) are never "below the
    threshold": a floor followed by a rise is not a diminishing return.
    """

    kind: ReturnsKind
    threshold: float
    method: str
    n: float | None = None
    ci: Interval = None
    within_measured: bool | None = None
    between: tuple[float, float | None] | None = None
    between_keys: tuple[str, str | None] | None = None
    ci_between: tuple[float, float | None] | None = None
    probabilities: tuple[tuple[str, float], ...] = ()
    note: str = ""
    rungs: "DiminishingReturns | None" = None


def _fmt_n(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n < 95e3:  # the demo's smallest rung is 25k parameters, not "0.0M"
        return f"{n / 1e3:.0f}k"
    # Below 10M keep one decimal: the demo ladder is 25k / 0.2M / 0.9M, not "0M / 0M / 1M".
    return f"{n / 1e6:.1f}M" if n < 9.95e6 else f"{n / 1e6:.0f}M"


def diminishing_returns_rungs(N, y, reps=None, keys=None, threshold: float = 0.05,
                              level: float = 0.95) -> DiminishingReturns:
    """Rung-based diminishing-returns range (see :class:`DiminishingReturns`)."""
    N, y, reps, keys = _prep(N, y, reps, keys)
    uniq = np.unique(N)
    if len(uniq) < 2:
        return DiminishingReturns(kind=ReturnsKind.INSUFFICIENT_SIZES, threshold=threshold, method="rungs",
                                  note="needs at least 2 sizes")
    flat = no_signal(y, reps)
    if flat:
        return DiminishingReturns(kind=ReturnsKind.NO_SIGNAL, threshold=threshold, method="rungs",
                                  note=f"no signal: {flat}")
    gains = rung_gains(N, y, reps, keys)
    valid = [i for i, g in enumerate(gains) if g.gain is not None and g.status is not FitStatus.NO_SIGNAL]

    def first_below(gvals: np.ndarray) -> int:
        for i in valid:
            if gvals[i] < threshold:
                return i
        return len(gains)  # never below

    point_idx = first_below(np.array([g.gain if g.gain is not None else np.nan for g in gains]))
    probs: tuple[tuple[str, float], ...] = ()
    ci_between = None
    if reps is not None and len(reps):
        dn = np.diff(N) / HUNDRED_M
        with np.errstate(divide="ignore", invalid="ignore"):
            rg = np.diff(reps, axis=1) / dn
        # a replicate whose two sizes are both at 0 (or 100%) has no signal at that step
        for i in range(rg.shape[1]):
            both = ((reps[:, i] == 0) & (reps[:, i + 1] == 0)) | ((reps[:, i] == 1) & (reps[:, i + 1] == 1))
            rg[both, i] = np.nan
        idx = np.array([first_below(row) for row in rg])
        counts = np.bincount(idx, minlength=len(gains) + 1) / len(idx)
        labels = [f"{_fmt_n(g.n_from)}-{_fmt_n(g.n_to)}" for g in gains] + [f"beyond {_fmt_n(N[-1])}"]
        probs = tuple((lab, float(p)) for lab, p in zip(labels, counts) if p > 0)
        alpha = (1 - level) / 2
        lo_i, hi_i = (int(v) for v in np.quantile(idx, [alpha, 1 - alpha], method="inverted_cdf"))
        ci_between = (float(gains[lo_i].n_from) if lo_i < len(gains) else float(N[-1]),
                      float(gains[hi_i].n_to) if hi_i < len(gains) else None)
    if point_idx == len(gains):
        return DiminishingReturns(
            kind=ReturnsKind.NOT_REACHED, threshold=threshold, method="rungs", between=(float(N[-1]), None),
            between_keys=(keys[-1], None), ci_between=ci_between, probabilities=probs,
            note=f"every step pays at least {threshold * 100:g} points per 100M up to {_fmt_n(N[-1])}")
    g = gains[point_idx]
    note = (f"gain falls below {threshold * 100:g} points per 100M between {_fmt_n(g.n_from)} and "
            f"{_fmt_n(g.n_to)} ({g.from_key} -> {g.to_key}); with rungs only this is a range, not a point")
    if point_idx == 0:
        note += "; already at the first step"
    return DiminishingReturns(kind=ReturnsKind.RANGE, threshold=threshold, method="rungs",
                              between=(g.n_from, g.n_to), between_keys=(g.from_key, g.to_key),
                              ci_between=ci_between, probabilities=probs, note=note)


def diminishing_returns(N, y, reps=None, keys=None, threshold: float = 0.05, level: float = 0.95,
                        min_sizes_point: int = 4) -> DiminishingReturns:
    """Diminishing-returns point from the log-linear fit when there are at least
    ``min_sizes_point`` sizes, else the rung-based range (see :class:`DiminishingReturns`)."""
    rungs = diminishing_returns_rungs(N, y, reps, keys, threshold, level)
    Ns, ys, rs, _ = _prep(N, y, reps, keys)
    if len(np.unique(Ns)) < min_sizes_point or rungs.kind is ReturnsKind.NO_SIGNAL:
        return rungs
    fit = fit_loglinear(Ns, ys, rs, level)
    if not fit.ok:
        return DiminishingReturns(kind=ReturnsKind.FAILED, threshold=threshold, method="loglinear",
                                  note=f"log-linear fit {fit.outcome}", rungs=rungs)
    scale = HUNDRED_M / (threshold * LN10)
    ci = None
    if rs is not None and len(rs):
        _, rb = _ols(np.log10(Ns), rs)
        ci = _ci(np.where(rb > 0, rb * scale, 0.0), level)
    if fit.b <= 0:
        return DiminishingReturns(kind=ReturnsKind.BELOW_EVERYWHERE, threshold=threshold, method="loglinear",
                                  ci=ci, note=f"fitted gain per decade {fit.b:.3f} <= 0: no size pays "
                                              f"{threshold * 100:g} points per 100M", rungs=rungs)
    n = fit.b * scale
    inside = bool(Ns[0] <= n <= Ns[-1])
    note = (f"log-linear fit: marginal gain b/(N ln10)*1e8 = {threshold * 100:g} points per 100M at "
            f"N = {_fmt_n(n)}" + ("" if inside else " (extrapolated beyond the measured sizes)"))
    return DiminishingReturns(kind=ReturnsKind.POINT, threshold=threshold, method="loglinear", n=float(n), ci=ci,
                              within_measured=inside, note=note, rungs=rungs)


# ----------------------------------------------------------------------------- capacity thresholds


@dataclass(frozen=True)
class CapacityThreshold(_AsDict):
    """The smallest measured size whose score reaches ``target`` (:attr:`ThresholdStatus.REACHED`)
    or :attr:`ThresholdStatus.NOT_REACHED`. ``probabilities``: how often each size is the smallest to reach the
    target across bootstrap replicates (``"not reached"`` included). ``fitted_n``: where
    the log-linear fit crosses the target (None without an increasing fit)."""

    target: float
    status: ThresholdStatus
    key: str | None = None
    n: float | None = None
    score: float | None = None
    probabilities: tuple[tuple[str, float], ...] = ()
    fitted_n: float | None = None


def capacity_threshold(N, y, reps=None, keys=None, target: float = 0.5,
                       loglinear: LogLinearFit | None = None) -> CapacityThreshold:
    """See :class:`CapacityThreshold`."""
    N, y, reps, keys = _prep(N, y, reps, keys)
    fitted = None
    if loglinear is not None and loglinear.ok and loglinear.b and loglinear.b > 0:
        fitted = float(10 ** ((target - loglinear.a) / loglinear.b))
    probs: tuple[tuple[str, float], ...] = ()
    if reps is not None and len(reps):
        reached = reps >= target
        first = np.where(reached.any(axis=1), reached.argmax(axis=1), len(N))
        counts = np.bincount(first, minlength=len(N) + 1) / len(first)
        labels = list(keys) + ["not reached"]
        probs = tuple((lab, float(p)) for lab, p in zip(labels, counts) if p > 0)
    hit = np.flatnonzero(y >= target)
    if not len(hit):
        return CapacityThreshold(target=target, status=ThresholdStatus.NOT_REACHED, probabilities=probs,
                                 fitted_n=fitted)
    i = int(hit[0])
    return CapacityThreshold(target=target, status=ThresholdStatus.REACHED, key=keys[i], n=float(N[i]),
                             score=float(y[i]), probabilities=probs, fitted_n=fitted)


__all__ = ["FitStatus", "ReturnsKind", "ThresholdStatus", "no_signal", "span_gain", "RungGain", "LogLinearFit",
           "LogisticFit", "DiminishingReturns", "CapacityThreshold", "rung_gains", "fit_loglinear", "fit_logistic",
           "logistic", "diminishing_returns", "diminishing_returns_rungs", "capacity_threshold"]

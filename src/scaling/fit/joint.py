"""Accuracy jointly in training records and optimizer steps (and depth where it varies).

The steps and data axes each move the 135M's complex tier, and they move together: a job with
more records also takes more steps per epoch. A separate curve per axis cannot say which of the
two bought an accuracy gain; a joint model can. Per tier, each job's exact answers are
binomial with

    logit p = a + b_records * log10(records) + b_steps * log10(steps) [+ b_params * log10(params)]

fitted by maximum likelihood over the jobs' (right, n) counts. Standard errors come from the
observed information (the GLM's ``X' W X``); the held-out error is leave-one-job-out: each job
predicted by the fit to all the others, as points of accuracy.

Like :mod:`scaling.fit.fits`, a pure function returning a frozen dataclass with a status; it
never raises on bad luck with the data.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import minimize

from scaling.results import RESULTS_FILE, atomic_write_json, atomic_write_text, read_json

__all__ = ["JointStatus", "JointFit", "fit_joint", "AXES", "JobPoint", "job_point", "fit_tiers", "report"]

#: The axes a job can vary on, in the order their coefficients are reported.
AXES = ("records", "steps", "params")

_Z95 = 1.959963984540054


class JointStatus(str, enum.Enum):
    """How a joint fit ended."""

    OK = "ok"
    """Fitted; coefficients, intervals and the held-out error are set."""
    INSUFFICIENT_POINTS = "insufficient_points"
    """Fewer distinct jobs than coefficients + 1: nothing is left to hold out."""
    NO_VARIATION = "no_variation"
    """No axis varies across the jobs: there is nothing to attribute."""
    FAILED = "failed"
    """The optimiser did not converge (separable data: every job all right or all wrong)."""


@dataclass(frozen=True)
class JointFit:
    """One tier's joint fit."""

    status: JointStatus
    axes: tuple[str, ...] = ()
    """The axes that vary across the jobs and got a coefficient (``records``, ``steps``, ``params``)."""
    intercept: float | None = None
    coef: tuple[float, ...] = ()
    """Change in the log-odds of an exact answer per tenfold of each axis, in ``axes`` order."""
    coef_ci: tuple[tuple[float, float], ...] = ()
    """95% Wald intervals of ``coef``."""
    n_jobs: int = 0
    n_examples: int = 0
    heldout_mae: float | None = None
    """Mean absolute error (accuracy points, 0-100) of predicting each job from the others."""
    heldout: tuple[tuple[float, float], ...] = ()
    """Per job, in input order: (measured accuracy, held-out prediction), in points."""
    note: str = ""

    def predict(self, **axes: float) -> float | None:
        """Predicted accuracy (0-1) at the given records / steps / params."""
        if self.status is not JointStatus.OK:
            return None
        z = self.intercept + sum(c * math.log10(axes[a]) for a, c in zip(self.axes, self.coef))
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict:
        return {"status": self.status.value, "axes": list(self.axes), "intercept": self.intercept,
                "coef": list(self.coef), "coef_ci": [list(c) for c in self.coef_ci], "n_jobs": self.n_jobs,
                "n_examples": self.n_examples, "heldout_mae": self.heldout_mae,
                "heldout": [list(h) for h in self.heldout], "note": self.note}


def _mle(X: np.ndarray, right: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, bool]:
    def nll(beta):
        z = X @ beta
        return float(np.sum(n * np.logaddexp(0.0, z) - right * z))

    def grad(beta):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))
        return X.T @ (n * p - right)

    res = minimize(nll, np.zeros(X.shape[1]), jac=grad, method="BFGS", options={"gtol": 1e-8, "maxiter": 500})
    return res.x, bool(res.success) or np.linalg.norm(grad(res.x)) < 1e-4


def fit_joint(right: Sequence[int], n: Sequence[int], records: Sequence[float], steps: Sequence[float],
              params: Sequence[float] | None = None) -> JointFit:
    """Fit one tier over jobs: ``right[i]`` exact answers of ``n[i]`` for a job trained on
    ``records[i]`` records for ``steps[i]`` optimizer steps (of a ``params[i]``-parameter model)."""
    right_a, n_a = np.asarray(right, dtype=float), np.asarray(n, dtype=float)
    columns = {"records": records, "steps": steps}
    if params is not None:
        columns["params"] = params
    logs = {k: np.log10(np.asarray(v, dtype=float)) for k, v in columns.items()}
    k = len(right_a)
    if k == 0:
        return JointFit(JointStatus.INSUFFICIENT_POINTS, note="no job carries this tier")
    axes = tuple(a for a in AXES if a in logs and np.ptp(logs[a]) > 1e-9)
    if not axes:
        return JointFit(JointStatus.NO_VARIATION, n_jobs=k, n_examples=int(n_a.sum()),
                        note="records, steps and params are the same for every job")
    if k < len(axes) + 2:
        return JointFit(JointStatus.INSUFFICIENT_POINTS, axes=axes, n_jobs=k, n_examples=int(n_a.sum()),
                        note=f"{k} jobs for {len(axes) + 1} coefficients: none left to hold out")
    if np.all(right_a == n_a) or np.all(right_a == 0):
        return JointFit(JointStatus.FAILED, axes=axes, n_jobs=k, n_examples=int(n_a.sum()),
                        note=f"every job {'all right' if right_a[0] else 'all wrong'}: the odds have no maximum")
    X = np.column_stack([np.ones(k)] + [logs[a] for a in axes])
    beta, ok = _mle(X, right_a, n_a)
    if not ok or np.max(np.abs(beta)) > 1e3:
        return JointFit(JointStatus.FAILED, axes=axes, n_jobs=k, n_examples=int(n_a.sum()),
                        note="maximum likelihood did not converge")
    p = 1.0 / (1.0 + np.exp(-(X @ beta)))
    info = X.T @ (X * (n_a * p * (1 - p))[:, None])
    try:
        se = np.sqrt(np.diag(np.linalg.inv(info)))
    except np.linalg.LinAlgError:
        se = np.full(len(beta), np.nan)
    heldout = []
    for i in range(k):
        keep = np.arange(k) != i
        b_i, _ = _mle(X[keep], right_a[keep], n_a[keep])
        heldout.append((100.0 * right_a[i] / n_a[i], 100.0 / (1.0 + math.exp(-(X[i] @ b_i)))))
    mae = float(np.mean([abs(m - q) for m, q in heldout]))
    return JointFit(JointStatus.OK, axes=axes, intercept=float(beta[0]), coef=tuple(float(b) for b in beta[1:]),
                    coef_ci=tuple((float(b - _Z95 * s), float(b + _Z95 * s)) for b, s in zip(beta[1:], se[1:])),
                    n_jobs=k, n_examples=int(n_a.sum()), heldout_mae=mae, heldout=tuple(heldout))


# ------------------------------------------------------------------------------------ runs


@dataclass(frozen=True)
class JobPoint:
    """What the joint fit reads of one finished job."""

    name: str
    records: int
    steps: int
    params: int
    counts: dict  # tier -> (right, n)


def job_point(results: dict, name: str) -> JobPoint | None:
    """A fine-tuned job's records, steps, parameters and exact answers per tier (``complex+``
    from ``metrics.complex_plus`` where the job carries it); None for an untrained job."""
    steps = (results.get("train") or {}).get("steps")
    records = (results.get("data") or {}).get("n_train")
    if not steps or not records:
        return None
    metrics = results.get("metrics") or {}
    counts = {t: (round(m["json_exact"] * m["n"]), int(m["n"])) for t, m in (metrics.get("by_tier") or {}).items()}
    overall = metrics.get("overall") or {}
    if overall.get("n"):
        counts["overall"] = (round(overall["json_exact"] * overall["n"]), int(overall["n"]))
    plus = metrics.get("complex_plus")
    if isinstance(plus, dict) and plus.get("n"):
        counts["complex+"] = (round(plus["json_exact"] * plus["n"]), int(plus["n"]))
    return JobPoint(name, int(records), int(steps), int((results.get("params") or {}).get("total", 0)), counts)


def fit_tiers(points: Sequence[JobPoint], tiers: Sequence[str]) -> dict[str, JointFit]:
    """:func:`fit_joint` per tier over the jobs that carry it."""
    out = {}
    for tier in tiers:
        have = [p for p in points if tier in p.counts]
        params = [p.params for p in have] if all(p.params for p in have) else None
        out[tier] = fit_joint([p.counts[tier][0] for p in have], [p.counts[tier][1] for p in have],
                              [p.records for p in have], [p.steps for p in have], params)
    return out


def report(points: Sequence[JobPoint], fits: dict[str, JointFit]) -> str:
    """Markdown: the jobs, then per tier the coefficients (log-odds per tenfold) and the
    held-out error."""
    lines = ["| job | records | steps | " + " | ".join(fits) + " |", "|---|---:|---:|" + "---:|" * len(fits)]
    for p in points:
        cells = [f"{p.counts[t][0]}/{p.counts[t][1]}" if t in p.counts else "–" for t in fits]
        lines.append(f"| {p.name} | {p.records} | {p.steps} | " + " | ".join(cells) + " |")
    lines += ["", "| tier | status | jobs | " + " | ".join(f"{a} (log-odds per 10x, 95%)" for a in AXES[:2])
              + " | held-out error (points) |", "|---|---|---:|---:|---:|---:|"]
    for tier, fit in fits.items():
        coef = {a: f"{c:+.2f} [{lo:+.2f}, {hi:+.2f}]" for a, c, (lo, hi) in zip(fit.axes, fit.coef, fit.coef_ci)}
        mae = f"{fit.heldout_mae:.1f}" if fit.heldout_mae is not None else "–"
        lines.append(f"| {tier} | {fit.status.value}{': ' + fit.note if fit.note else ''} | {fit.n_jobs} | "
                     + " | ".join(coef.get(a, "–") for a in AXES[:2]) + f" | {mae} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m scaling.fit.joint",
                                 description="Accuracy per tier jointly in log records and log steps over finished jobs.")
    ap.add_argument("runs", nargs="+", help="job folders holding results.json")
    ap.add_argument("--tiers", default="overall,simple,medium,complex,complex+")
    ap.add_argument("--out", help="folder for joint.md and joint.json (default: print)")
    args = ap.parse_args(argv)
    points = []
    for run in args.runs:
        path = Path(run) / RESULTS_FILE
        if not path.is_file():
            print(f"error: {path}: no results.json (argument runs)", file=sys.stderr)
            return 2
        point = job_point(read_json(path), "/".join(Path(run).resolve().parts[-2:]))
        if point is None:
            print(f"{run}: not fine-tuned (no train.steps / data.n_train): left out", file=sys.stderr)
            continue
        points.append(point)
    fits = fit_tiers(points, [t for t in args.tiers.split(",") if t])
    text = report(points, fits)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "joint.md", text)
        atomic_write_json(out / "joint.json", {"command": "python -m scaling.fit.joint " + " ".join(
            argv if argv is not None else sys.argv[1:]), "jobs": [p.__dict__ for p in points],
            "fits": {t: f.to_dict() for t, f in fits.items()}})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does a score rise with size? The check a study (or the demo) states as its message.

``rising`` in ``conf/fit.yaml`` lists the scores expected to rise with every step up the
ladder (``field_f1``, ``field_f1_simple``). For each measured fine-tuned series with two or
more sizes, :func:`check_rising` compares each rung with the next on the same test examples
(the paired bootstrap the gains use) and says whether the claim holds, in words a reader can
quote, so a run where it does not hold (another CPU, another seed) says so instead of
showing a figure that contradicts its caption.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scaling.fit.analysis import Analysis, Curve
from scaling.fit.collect import OVERALL
from scaling.fit.fits import FitStatus


class TrendStatus(str, enum.Enum):
    """What the rungs of one series show for a score expected to rise with size."""

    CLEAR = "rises clearly"
    """Every step up the ladder scores higher, each with its paired 95% interval above 0."""
    RISES = "rises, not every step separated"
    """Every step up scores higher, but at least one step's paired interval includes 0: on
    other seeds or another CPU that step could come out level or lower."""
    FAILS = "does not hold"
    """At least one step up scores lower (or equal) than the rung below."""
    NOT_MEASURED = "not measured"
    """The series has fewer than two sizes with this score."""


@dataclass(frozen=True)
class Step:
    """One rung to the next: the difference of the scores and its paired interval."""

    from_key: str
    to_key: str
    score_from: float
    score_to: float
    diff: float
    ci: tuple[float, float] | None

    def words(self, scale: float = 100.0) -> str:
        ci = "" if self.ci is None else f" [{self.ci[0] * scale:+.1f}, {self.ci[1] * scale:+.1f}]"
        return f"{self.from_key} -> {self.to_key} {self.diff * scale:+.1f}{ci}"


@dataclass(frozen=True)
class TrendCheck:
    """The verdict of one ``rising`` claim on one series."""

    series: str
    metric: str
    tier: str
    status: TrendStatus
    steps: tuple[Step, ...]

    @property
    def holds(self) -> bool:
        return self.status in (TrendStatus.CLEAR, TrendStatus.RISES)

    @property
    def claim(self) -> str:
        where = "" if self.tier == OVERALL else f" on the {self.tier} tier"
        return f"{self.metric}{where} rises with size"

    def line(self) -> str:
        """``check: field_f1 rises with size (series): tiny_s 12.2 -> tiny_m 23.4 -> ...: holds``."""
        if not self.steps:
            return f"check: {self.claim} ({self.series}): {self.status.value}"
        chain = " -> ".join([f"{self.steps[0].from_key} {self.steps[0].score_from * 100:.1f}"]
                            + [f"{s.to_key} {s.score_to * 100:.1f}" for s in self.steps])
        weak = [s for s in self.steps if s.diff <= 0 or (s.ci is not None and s.ci[0] <= 0)]
        detail = "" if not weak else " (" + "; ".join(s.words() for s in weak) + " points)"
        return f"check: {self.claim} ({self.series}): {chain}: {self.status.value.upper() if not self.holds else self.status.value}{detail}"

    def to_dict(self) -> dict:
        return {"series": self.series, "metric": self.metric, "tier": self.tier, "claim": self.claim,
                "status": self.status.name.lower(), "holds": self.holds,
                "steps": [{"from": s.from_key, "to": s.to_key, "score_from": s.score_from, "score_to": s.score_to,
                           "diff": s.diff, "ci": list(s.ci) if s.ci else None} for s in self.steps]}


def _steps(curve: Curve) -> tuple[Step, ...]:
    out = []
    for g in curve.gains:
        if g.status is FitStatus.SAME_SIZE:
            continue
        dn = (g.n_to - g.n_from) / 1e8
        ci = None if g.ci is None or g.ci[0] is None else (float(g.ci[0]) * dn, float(g.ci[1]) * dn)
        out.append(Step(g.from_key, g.to_key, g.score_from, g.score_to, g.score_to - g.score_from, ci))
    return tuple(out)


def check_rising(analysis: Analysis, metric: str, tier: str) -> tuple[TrendCheck, ...]:
    """One :class:`TrendCheck` per measured fine-tuned series on ``metric`` / ``tier``."""
    out = []
    for scores in analysis.scores:
        if scores.kind != "measured" or scores.is_base:
            continue
        curve = analysis.curve(scores.label, metric, tier)
        steps = _steps(curve) if curve is not None else ()
        if not steps:
            status = TrendStatus.NOT_MEASURED
        elif any(s.diff <= 0 for s in steps):
            status = TrendStatus.FAILS
        elif all(s.ci is not None and s.ci[0] > 0 for s in steps):
            status = TrendStatus.CLEAR
        else:
            status = TrendStatus.RISES
        out.append(TrendCheck(scores.label, metric, tier, status, steps))
    return tuple(out)


def trend_checks(analysis: Analysis) -> tuple[TrendCheck, ...]:
    """Every ``rising`` claim of the settings, on every measured fine-tuned series."""
    return tuple(c for metric, tier in analysis.settings.rising for c in check_rising(analysis, metric, tier))

"""What the prompt determines, in a fit: each tier's ceiling and each model's answers by kind.

Both come from the jobs' ``results.json`` (``metrics.<group>.ceiling`` and ``.answers``, written
by :func:`scaling.ceiling.summarise` when a run is scored); the fit never reads the data. The
ceiling belongs to the test set, not to a model: jobs scored on the same test file carry the
same one, and a tier whose jobs disagree (scored on different test files) gets none, with a
note. Jobs scored before the ceiling existed carry none either: re-scoring their predictions
with today's scorer adds it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from scaling.complex_plus import tier_block
from scaling.fit.collect import OVERALL, FinishedJob


@dataclass(frozen=True)
class TierCeiling:
    """One tier's ceiling: the best JSONExact any reader of its prompts can expect."""

    tier: str
    expected: float
    ci: tuple[float, float] | None
    reader_exact: float | None
    """Share of records whose most probable reading is the gold."""
    n: int
    """Records whose prompt is the template (the ceiling's denominator)."""
    determined: int
    contradicts: int
    jobs: int
    """Jobs that carry it."""

    def to_dict(self) -> dict[str, Any]:
        return {"tier": self.tier, "expected": self.expected, "ci": list(self.ci) if self.ci else None,
                "reader_exact": self.reader_exact, "n": self.n, "determined": self.determined,
                "contradicts": self.contradicts, "jobs": self.jobs}


def _block(job: FinishedJob, tier: str) -> Mapping[str, Any] | None:
    return tier_block(job.metrics, tier)


def collect_ceilings(jobs: Sequence[FinishedJob], tiers: Iterable[str]) -> tuple[dict[str, TierCeiling], list[str]]:
    """``({tier: TierCeiling}, notes)`` from the jobs' results."""
    out: dict[str, TierCeiling] = {}
    notes: list[str] = []
    without = [j for j in jobs if not isinstance((_block(j, OVERALL) or {}).get("ceiling"), Mapping)]
    if without:
        notes.append(f"{len(without)} of {len(jobs)} jobs carry no ceiling (scored before scaling.ceiling: "
                     "re-score their predictions to add it)")
    for tier in tiers:
        seen: dict[tuple, tuple[Mapping[str, Any], int]] = {}
        for j in jobs:
            c = (_block(j, tier) or {}).get("ceiling")
            if not isinstance(c, Mapping) or c.get("expected") is None:
                continue
            key = (round(float(c["expected"]), 9), c.get("n"))
            seen[key] = (c, seen.get(key, (c, 0))[1] + 1)
        if len(seen) > 1:
            notes.append(f"{tier}: the jobs were scored on test sets with different ceilings "
                         f"({', '.join(f'{100 * k[0]:.1f}%' for k in sorted(seen))}): none is drawn")
        elif seen:
            c, k = next(iter(seen.values()))
            ci = c.get("ci")
            prompts = c.get("prompts") or {}
            out[tier] = TierCeiling(tier, float(c["expected"]), (float(ci[0]), float(ci[1])) if ci else None,
                                    c.get("reader_exact"), int(c.get("n") or 0), int(c.get("determined") or 0),
                                    int(prompts.get("contradicts") or 0), k)
    return out, notes


def answers(jobs: Sequence[FinishedJob], tier: str) -> dict[str, Any] | None:
    """The answers by kind of some jobs (a model's seeds) on a tier, summed: ``{"kinds": Counter,
    "lists": Counter}``; None when a job carries none."""
    kinds: Counter = Counter()
    lists: Counter = Counter()
    for j in jobs:
        a = (_block(j, tier) or {}).get("answers")
        if not isinstance(a, Mapping):
            return None
        kinds.update(a.get("kinds") or {})
        lists.update(a.get("lists") or {})
    return {"kinds": kinds, "lists": lists} if jobs else None


def wrong_answers_text(a: Mapping[str, Any]) -> str:
    """``"of its 21 wrong answers: 10 unparsed, 11 inconsistent with the prompt (9 lose or add list
    items), 0 another reading of it"``."""
    k, lists = a["kinds"], a["lists"]
    wrong = sum(v for key, v in k.items() if key != "exact")
    if not wrong:
        return "no wrong answer"
    parts = [f"{k.get('unparsed', 0)} unparsed",
             f"{k.get('inconsistent', 0)} inconsistent with the prompt"
             + (f" ({lists.get('answers_lose_or_add_items', 0)} lose or add list items)" if k.get("inconsistent") else ""),
             f"{k.get('other_reading', 0)} another reading of it"]
    if k.get("gold_contradicts"):
        parts.append(f"{k['gold_contradicts']} on records whose gold contradicts the prompt")
    return f"of its {wrong} wrong answers: " + ", ".join(parts)

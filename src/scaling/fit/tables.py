"""Tables (Markdown and LaTeX) from an :class:`~scaling.fit.analysis.Analysis`.

Scores are shown in percent (``45.6 [38.0, 53.2]``: point and 95% interval), Field F1 too
(as the study reports it in points); gains in points per 100M parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from scaling.fit.analysis import Analysis, headline_series
from scaling.fit.data_axis import describe_fraction
from scaling.fit.figures import metric_label
from scaling.fit.fits import FitStatus, ReturnsKind, ThresholdStatus, _fmt_n
from scaling.fit.scores import SeriesScores
from scaling.results import describe_categories


@dataclass(frozen=True)
class Table:
    name: str
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def to_markdown(self) -> str:
        def cell(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(cell(h) for h in self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        cols = "l" * min(2, len(self.header)) + "r" * max(0, len(self.header) - 2)
        lines = ["\\begin{table}[t]", "\\centering", "\\small",
                 f"\\caption{{{latex_escape(self.caption)}}}", f"\\label{{tab:{self.name.replace('_', '-')}}}",
                 f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
                 " & ".join(latex_escape(h) for h in self.header) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(c) for c in r) + " \\\\" for r in self.rows]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
          "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\n": " ",
          "→": r"$\rightarrow$", "±": r"$\pm$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in s)


def interval_note(level: float = 0.95) -> str:
    """How a table's score intervals were made (one phrase, for captions and the report)."""
    return (f"{level * 100:g}% intervals: Wilson for JSONExact and compliance (a proportion of the test examples), "
            "percentile paired bootstrap over test examples and seeds for Field F1")


def pct(v: float | None, ci: Sequence[float] | None = None, digits: int = 1) -> str:
    """``45.6 [38.0, 53.2]`` (percent), ``-`` when unknown."""
    if v is None or not math.isfinite(v):
        return "-"
    s = f"{v * 100:.{digits}f}"
    if ci is not None and all(c is not None and math.isfinite(c) for c in ci):
        s += f" [{ci[0] * 100:.{digits}f}, {ci[1] * 100:.{digits}f}]"
    return s


def _ci(lo: float, hi: float):
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def ladder_table(analysis: Analysis) -> Table:
    """The model ladder: every model by series and size with its category and per-tier scores."""
    st = analysis.settings
    header = ("series", "model", "params", "non-embedding", "category", "seeds") + tuple(st.tiers)
    rows = []
    for r in analysis.ladder:
        rows.append((r.series, r.model, f"{r.params_total:,}",
                     f"{r.params_non_embedding:,}" if r.params_non_embedding else "-", r.category,
                     str(r.seeds) if r.kind == "measured" else "ref")
                    + tuple(pct(v, ci) for _, v, ci in r.scores))
    return Table("ladder", f"Model ladder: {st.target_metric} (%) per tier ({interval_note(st.level)}); "
                           f"category by total parameters ({describe_categories()}).", header, tuple(rows))


def recommendation_table(analysis: Analysis) -> Table:
    st = analysis.settings
    rows = []
    for r in analysis.recommendations:
        rows.append((r.series, r.tier, f"{r.target * 100:g}",
                     f"{r.model} ({_fmt_n(r.params_total)})" if r.model else "none reaches it",
                     pct(r.score)))
    return Table("recommendation", f"Smallest model per tier reaching {st.target_metric} >= "
                                   f"{st.recommend_target * 100:g}%.",
                 ("series", "tier", "target (%)", "smallest model", "score (%)"), tuple(rows))


def rung_name(series: SeriesScores, i: int) -> str:
    """A model's key, with its rung kind (``smol135_gguf_g8 (grown)``) in a series that mixes
    pruned, original and grown rungs."""
    m = series.models[i]
    kinds = {x.rung for x in series.models if x.rung is not None}
    return f"{m.key} ({m.rung})" if len(kinds) > 1 and m.rung is not None else m.key


def tier_scores_table(analysis: Analysis) -> Table:
    """Every metric per tier for every model (percent, with intervals)."""
    st = analysis.settings
    rows = []
    for s in analysis.scores:
        for i, m in enumerate(s.models):
            for metric in st.metrics:
                cells = []
                for t in st.tiers:
                    r = s.row(metric, t)
                    cells.append(pct(r.point[i], _ci(r.lo[i], r.hi[i])) if r is not None else "-")
                if any(c != "-" for c in cells):
                    rows.append((s.label, rung_name(s, i), metric) + tuple(cells))
    return Table("tier_scores", f"Scores per tier (%; {interval_note(st.level)}).",
                 ("series", "model", "metric") + tuple(st.tiers), tuple(rows))


def gain_text(g, digits: int = 1) -> str:
    """``+12.3 [+4.0, +20.1]`` (points per 100M), ``no signal (both 0)`` or ``n/a (same_size)``."""
    if g.status is FitStatus.NO_SIGNAL:
        return f"no signal (both {_floor_or_ceiling(g.score_from)})"
    if g.gain is None:
        return f"n/a ({g.status.value})"
    ci = f" [{g.ci[0] * 100:+.{digits}f}, {g.ci[1] * 100:+.{digits}f}]" if g.ci else ""
    return f"{g.gain * 100:+.{digits}f}{ci}"


def _floor_or_ceiling(v: float) -> str:
    return "0" if v == 0 else "100%"


def headline_table(analysis: Analysis, series: SeriesScores) -> Table:
    """The report's opening table: every rung of ``series`` on every tier, each metric with
    its interval, and the headline metric's gain per 100M from the rung below."""
    st = analysis.settings
    m = st.headline_metric
    header = ("tier", "rung", "params", "seeds") + tuple(f"{_metric_name(x)} (%)" for x in st.metrics) + (
        f"{_metric_name(m)} gain / 100M from the rung below (points)",)
    rows = []
    for t in st.tiers:
        curve = analysis.curve(series.label, m, t)
        gains = {g.to_key: g for g in curve.gains} if curve is not None else {}
        first = True
        for i in sorted(range(len(series.models)), key=lambda i: (series.models[i].params_total, series.models[i].key)):
            model = series.models[i]
            cells = []
            for metric in st.metrics:
                r = series.row(metric, t)
                cells.append(pct(r.point[i], _ci(r.lo[i], r.hi[i])) if r is not None else "-")
            if all(c == "-" for c in cells):
                continue
            g = gains.get(model.key)
            rows.append((t if first else "", rung_name(series, i), _fmt_n(model.params_total), _seeds_cell(series, m, t, i),
                         *cells, gain_text(g) if g is not None else "-"))
            first = False
    return Table("headline", f"{series.label}: scores per rung and tier (%; {interval_note(st.level)}) and the "
                             f"{_metric_name(m)} gain per 100M parameters from the rung below (points, paired "
                             f"bootstrap).", header, tuple(rows))


def _seeds_cell(series: SeriesScores, metric: str, tier: str, i: int) -> str:
    """How many of model ``i``'s seeds the tier's score rests on: ``2 of 3`` where some seeds lack
    the tier (complex+ scored for some of them only)."""
    total = len(series.models[i].seeds)
    per_seed = series.seed_scores.get((metric, tier))
    scored = len(per_seed[i]) if per_seed is not None and i < len(per_seed) else total
    return str(total or "-") if scored >= total else f"{scored} of {total}"


def _metric_name(metric: str) -> str:
    return metric_label(metric)


def data_axis_table(analysis: Analysis) -> Table:
    """The data axis: each model's scores per fraction of the training records, and the
    change from the previous fraction (points, paired interval)."""
    st = analysis.settings
    m = st.headline_metric
    rows = []
    for d in analysis.data:
        for t in st.tiers:
            if (m, t) not in d.point:
                continue
            steps = {s.to_fraction: s for s in d.steps[(m, t)]}
            for i, f in enumerate(d.fractions):
                step = steps.get(f)
                if step is None:
                    change = "-"
                elif step.status is FitStatus.NO_SIGNAL:
                    change = f"no signal (both {_floor_or_ceiling(d.point[(m, t)][i])})"
                else:
                    change = f"{step.delta * 100:+.1f}" + (f" [{step.ci[0] * 100:+.1f}, {step.ci[1] * 100:+.1f}]"
                                                           if step.ci else "")
                rows.append((d.label, t, describe_fraction(f, d.n_train[i]), str(len(d.seeds[i])),
                             pct(d.point[(m, t)][i], _ci(d.lo[(m, t)][i], d.hi[(m, t)][i])), change))
    return Table("data_axis", f"The data axis: {_metric_name(m)} (%) per share of the training records "
                              f"({interval_note(analysis.settings.level)}); change from the previous share in points "
                              f"(paired bootstrap).",
                 ("model", "tier", "training records", "seeds", f"{_metric_name(m)} (%)", "change (points)"),
                 tuple(rows))


def gain_table(analysis: Analysis) -> Table:
    """Gain per 100M parameters between adjacent rungs (points), every series/metric/tier."""
    rows = []
    for c in analysis.curves:
        for g in c.gains:
            gain = "-" if g.gain is None else f"{g.gain * 100:+.1f}"
            flat = g.status is FitStatus.NO_SIGNAL
            if flat:
                gain = f"no signal (both {_floor_or_ceiling(g.score_from)})"
            ci = f"[{g.ci[0] * 100:+.1f}, {g.ci[1] * 100:+.1f}]" if g.ci and not flat else "-"
            rows.append((c.series, c.metric, c.tier, f"{g.from_key} → {g.to_key}",
                         f"{_fmt_n(g.n_from)} → {_fmt_n(g.n_to)}", gain, ci))
    return Table("gain_per_100m", f"Gain per 100M parameters between adjacent rungs (points; threshold "
                                  f"{analysis.settings.threshold_per_100m * 100:g}), 95% paired-bootstrap intervals.",
                 ("series", "metric", "tier", "step", "sizes", "gain / 100M", "95% CI"), tuple(rows))


def fits_table(analysis: Analysis) -> Table:
    """Log-linear slope (per decade and per doubling), LOO error, logistic status and the
    diminishing-returns answer per curve."""
    rows = []
    for c in analysis.curves:
        ll, lg, dr = c.loglinear, c.logistic, c.diminishing
        per_dec = f"{ll.b * 100:+.1f}" if ll.ok else ll.outcome
        per_dbl = (f"{ll.gain_per_doubling * 100:+.1f}" + (f" [{ll.ci_gain_per_doubling[0] * 100:+.1f}, "
                   f"{ll.ci_gain_per_doubling[1] * 100:+.1f}]" if ll.ci_gain_per_doubling else "")) if ll.ok else "-"
        loo = f"{ll.loo_rmse * 100:.1f}" if ll.loo_rmse is not None else "-"
        logi = (f"ok, N50 {_fmt_n(lg.n50)}, hi {lg.hi * 100:.0f}" if lg.ok else lg.outcome)
        rows.append((c.series, c.metric, c.tier, per_dec, per_dbl, loo, logi, describe_diminishing(dr)))
    return Table("fits", "Fits in log10(parameters): log-linear gain per decade and per doubling (points, "
                         "95% CI), leave-one-size-out RMSE (points), logistic fit, diminishing-returns point.",
                 ("series", "metric", "tier", "per decade", "per doubling", "LOO RMSE", "logistic",
                  "diminishing returns"), tuple(rows))


def describe_diminishing(dr) -> str:
    """One phrase: where the gain per 100M falls below the threshold, with the bootstrap's
    distribution over steps for the rung-based answer."""
    if dr.kind is ReturnsKind.NO_SIGNAL:
        return dr.note or "no signal"
    if dr.kind is ReturnsKind.POINT:
        s = f"at {_fmt_n(dr.n)}"
        if dr.ci:
            s += f" [{_fmt_n(dr.ci[0])}, {_fmt_n(dr.ci[1])}]"
        s += "" if dr.within_measured else " (extrapolated)"
        return s + (f"; rungs: {describe_diminishing(dr.rungs)}" if dr.rungs is not None else "")
    if dr.kind in (ReturnsKind.RANGE, ReturnsKind.NOT_REACHED):
        if dr.kind is ReturnsKind.RANGE:
            s = f"between {_fmt_n(dr.between[0])} and {_fmt_n(dr.between[1])} (a range: rungs only)"
        else:
            s = f"not reached up to {_fmt_n(dr.between[0])}"
        if dr.probabilities:
            s += "; bootstrap: " + ", ".join(f"{lab} {p * 100:.0f}%" for lab, p in dr.probabilities)
        return s
    return f"{dr.kind.value}: {dr.note}" if dr.note else dr.kind.value


def capacity_table(analysis: Analysis) -> Table:
    rows = []
    for cap in analysis.capacity:
        r = cap.result
        where = f"{r.key} ({_fmt_n(r.n)})" if r.status is ThresholdStatus.REACHED else "not reached"
        p = dict(r.probabilities)
        prob = f"{p.get(r.key, 0.0) * 100:.0f}%" if r.status is ThresholdStatus.REACHED and p else "-"
        rows.append((cap.series, cap.metric, cap.tier, f"{r.target * 100:g}", where, prob,
                     _fmt_n(r.fitted_n) if r.fitted_n else "-"))
    return Table("capacity", "Capacity thresholds: smallest measured model whose score reaches the target; "
                             "how often the bootstrap picks the same model; the log-linear fit's crossing.",
                 ("series", "metric", "tier", "target (%)", "smallest model", "bootstrap agrees",
                  "fitted crossing"), tuple(rows))


def verdict_table(analysis: Analysis) -> Table:
    rows = []
    for v in analysis.verdicts:
        if v.status != "evaluated" and not v.checks:
            rows.append((v.title, v.series, "-", "-", "-", "-", v.status))
            continue
        for c in v.checks:
            name = c.metric if c.tier == "overall" else f"{c.metric} ({c.tier})"
            rows.append((v.title, v.series, f"{v.model} ({_fmt_n(v.params)})", name,
                         pct(c.value, c.ci), f"> {c.threshold * 100:g}",
                         "pass" if c.passed else ("fail" if c.passed is not None else "-")))
    return Table("verdicts", "Success criteria on the rung nearest each track's size: measured value (%) with "
                             "95% interval against the threshold.",
                 ("track", "series", "rung", "metric", "measured", "threshold", "result"), tuple(rows))


def ceiling_table(analysis: Analysis, series: SeriesScores | None) -> Table:
    """Each tier's ceiling (what its prompts determine) and, for every rung of ``series``,
    JSONExact beside it and as a share of it (the ceiling held at its value on this test set)."""
    models = sorted(range(len(series.models)), key=lambda i: series.models[i].params_total) if series else []
    header = ("tier", "records", "gold contradicts the prompt", "only one answer fits",
              "most probable reading = gold (%)", "ceiling (%)") + tuple(
        f"{series.models[i].key}: JSONExact (%, share of the ceiling)" for i in models)
    rows = []
    for t, c in analysis.ceilings.items():
        cells = []
        r = series.row("json_exact", t) if series else None
        for i in models:
            if r is None or not math.isfinite(r.point[i]):
                cells.append("-")
                continue
            share = f"{100 * r.point[i] / c.expected:.0f}%" if c.expected else "-"
            cells.append(f"{pct(r.point[i], _ci(r.lo[i], r.hi[i]))} ({share})")
        rows.append((t, str(c.n), str(c.contradicts), str(c.determined), pct(c.reader_exact), pct(c.expected, c.ci),
                     *cells))
    return Table("ceiling", "What the prompt determines: per tier, the records whose gold contradicts the prompt, "
                            "those one answer fits, how often the most probable reading is the gold, and the "
                            "ceiling, the best JSONExact any reader of the prompts can expect (95% bootstrap "
                            "interval); each rung's JSONExact beside it.", header, tuple(rows))


def all_tables(analysis: Analysis) -> tuple[Table, ...]:
    head = headline_series(analysis)
    return ((headline_table(analysis, head),) if head is not None else ()) + (
        ladder_table(analysis), recommendation_table(analysis), tier_scores_table(analysis),
        gain_table(analysis), fits_table(analysis), capacity_table(analysis), verdict_table(analysis)) + (
        (data_axis_table(analysis),) if analysis.data else ()) + (
        (ceiling_table(analysis, head),) if analysis.ceilings else ())


def write_tables(analysis: Analysis, out_dir: str | Path) -> tuple[Path, ...]:
    """Write every table as ``<name>.md`` and ``<name>.tex``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in all_tables(analysis):
        for ext, text in (("md", t.to_markdown()), ("tex", t.to_latex())):
            p = out_dir / f"{t.name}.{ext}"
            p.write_text(text, encoding="utf-8")
            paths.append(p)
    return tuple(paths)

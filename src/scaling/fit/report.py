"""``report.md``: the analysis in words and tables, the answer to the study's question first."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence


from scaling.fit.analysis import Analysis, Curve, complex_plus_note, headline_series, n_sizes
from scaling.fit.ceiling import answers, wrong_answers_text
from scaling.fit.trend import trend_checks
from scaling.fit.collect import OVERALL
from scaling.fit.figures import FigureFile, metric_label
from scaling.fit.fits import FitStatus, ReturnsKind, ThresholdStatus, _fmt_n
from scaling.fit.scores import THIN, THIN_NOTE, SeriesScores
from scaling.fit.tables import (Table, ceiling_table, data_axis_table, describe_diminishing, gain_text,
                                headline_table, interval_note, ladder_table, pct)


def _pct_ci(c: Curve, i: int) -> str:
    """``63.9% [58.9, 70.3]``."""
    lo, hi = c.lo[i], c.hi[i]
    ci = f" [{lo * 100:.1f}, {hi * 100:.1f}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{pct(c.y[i])}%{ci}"


def _levels(c: Curve) -> str:
    """``20.1 → 42.0 → 63.0`` (percent, one value per size)."""
    return " → ".join(pct(v) for v in c.y)


def _short_diminishing(dr) -> str:
    if dr.kind is ReturnsKind.POINT:
        s = f"at {_fmt_n(dr.n)}" + (f" [{_fmt_n(dr.ci[0])}, {_fmt_n(dr.ci[1])}]" if dr.ci else "")
        return s + ("" if dr.within_measured else " (extrapolated)")
    if dr.kind is ReturnsKind.RANGE:
        return f"between {_fmt_n(dr.between[0])} and {_fmt_n(dr.between[1])}"
    if dr.kind is ReturnsKind.NOT_REACHED:
        return f"not below it up to {_fmt_n(dr.between[0])}"
    if dr.kind is ReturnsKind.BELOW_EVERYWHERE:
        return "below it everywhere (fitted slope <= 0)"
    if dr.kind is ReturnsKind.NO_SIGNAL:
        return dr.note
    return dr.note or dr.kind.value


def answer(analysis: Analysis, head: SeriesScores | None) -> list[str]:
    """The study's question (how the headline metric grows with size, tier by tier) answered
    in three sentences from the numbers of the headline series."""
    st = analysis.settings
    m = st.headline_metric
    name = metric_label(m)
    if head is None:
        return ["No measured series: nothing to answer.", "", ""]
    over = analysis.curve(head.label, m, OVERALL)
    if over is None:
        return [f"The headline series ({head.label}) has no {name} score.", "", ""]
    tiers = [t for t in st.tiers if t != OVERALL and analysis.curve(head.label, m, t) is not None]
    if len(set(over.N.tolist())) < 2:
        per_tier = ", ".join(f"{t} {_pct_ci(analysis.curve(head.label, m, t), 0)}" for t in tiers)
        s1 = (f"The headline series ({head.label}) has one size, `{over.keys[0]}` ({_fmt_n(over.N[0])}): {name} "
              f"{_pct_ci(over, 0)} overall" + (f"; {per_tier}" if per_tier else "") + ".")
        multi = [s.label for s in analysis.scores if s.kind == "measured" and n_sizes(s) >= 2]
        s2 = ("A gain per 100M parameters, a fitted curve and a diminishing-returns point need two or more sizes "
              "under one recipe, and " + (f"only {'; '.join(multi)} has them" if multi else
                                          "no measured series here has them") +
              " (the depth ladder `model=smol135_gguf_d8,smol135_gguf_d15,smol135_gguf_d22,smol135_gguf` adds "
              "sizes).")
        ref = next((c for c in (analysis.curve(s.label, m, OVERALL) for s in analysis.scores if s.kind == "reference")
                    if c is not None and len(set(c.N.tolist())) >= 2), None)
        if ref is not None:
            g = ref.span
            s3 = (f"For scale, {ref.series} reports {name} {pct(ref.y[0])}% at {ref.keys[0]} and {pct(ref.y[-1])}% at "
                  f"{ref.keys[-1]} overall, {gain_text(g)} points per 100M.")
        else:
            s3 = "No reference series with two sizes is loaded for scale (include_published=true adds the published study)."
        return [s1, s2, s3]
    flat = {t: analysis.curve(head.label, m, t).no_signal for t in [OVERALL] + tiers}
    lo_n, hi_n = _fmt_n(over.N[0]), _fmt_n(over.N[-1])
    if all(flat.values()):
        where = "every tier" if tiers else "the test set"
        levels = {f for f in flat.values()}
        s1 = (f"{name} has no signal on this ladder: every rung ({lo_n} to {hi_n}) scores "
              f"{'0' if levels == {'all rungs 0'} else 'the same extreme'} on {where}, so it shows no gain per 100M "
              f"and no diminishing-returns point.")
        moved = [c for c in (analysis.curve(head.label, x, OVERALL) for x in st.metrics if x != m)
                 if c is not None and not c.no_signal and len(set(c.N.tolist())) >= 2]
        if not moved:
            return [s1, f"No other metric moved either ({', '.join(metric_label(x) for x in st.metrics if x != m)}).",
                    "The rungs are too small or too briefly trained to separate on this task."]
        best = max(moved, key=lambda c: abs(c.y[-1] - c.y[0]))
        other = metric_label(best.metric)
        s2 = (f"{other} is what moved: {_levels(best)} (points) overall from `{best.keys[0]}` to `{best.keys[-1]}`, "
              f"{gain_text(best.span)} points per 100M.")
        parts = []
        for t in tiers:
            c = analysis.curve(head.label, best.metric, t)
            if c is not None:
                parts.append(f"{t} {_levels(c)}" if not c.no_signal else f"{t}: no signal ({c.no_signal})")
        s3 = f"By tier, {other}: " + "; ".join(parts) + "." if parts else f"{other} has no per-tier scores."
        return [s1, s2, s3]
    span = over.span
    if over.no_signal:
        s1 = f"Overall, {name} has no signal from {lo_n} to {hi_n} ({over.no_signal})."
    else:
        s1 = (f"From `{over.keys[0]}` ({lo_n}) to `{over.keys[-1]}` ({hi_n}), {name} goes from {_pct_ci(over, 0)} to "
              f"{_pct_ci(over, len(over.y) - 1)} overall: {gain_text(span)} points per 100M parameters")
        if span.ci and span.ci[0] <= 0 <= span.ci[1]:
            s1 += ", an interval that includes 0"
        s1 += "."
    parts = []
    for t in tiers:
        c = analysis.curve(head.label, m, t)
        if c.no_signal:
            parts.append(f"{t}: no signal ({c.no_signal})")
        else:
            parts.append(f"{t} {pct(c.y[0])}% → {pct(c.y[-1])}%, {gain_text(c.span)}")
    s2 = f"Per tier, across the ladder ({name}, points per 100M): " + "; ".join(parts) + "." if parts else ""
    drs = []
    for t in [OVERALL] + tiers:
        c = analysis.curve(head.label, m, t)
        drs.append(f"{t} {_short_diminishing(c.diminishing)}")
    s3 = f"The gain falls below {st.threshold_per_100m * 100:g} points per 100M: " + "; ".join(drs) + "."
    return [s1, s2, s3]


def ceiling_lines(analysis: Analysis, head: SeriesScores | None) -> list[str]:
    """The report's "What the prompt determines" section: each tier's JSONExact against its
    ceiling for the headline series' largest rung, its wrong answers by kind, and the table."""
    if not analysis.ceilings:
        return []
    L = ["## What the prompt determines", ""]
    if head is not None and head.models:
        i = max(range(len(head.models)), key=lambda k: head.models[k].params_total)
        model = head.models[i]
        jobs = [j for j in analysis.collection.jobs if str(j.path) in model.jobs]
        parts = []
        for t, c in analysis.ceilings.items():
            r = head.row("json_exact", t)
            if r is None or not math.isfinite(r.point[i]):
                continue
            ci = f" [{pct(c.ci[0])}, {pct(c.ci[1])}]" if c.ci else ""
            text = (f"{t}: {_pct_ci_row(r, i)} of a ~{pct(c.expected)}%{ci} ceiling "
                    f"({100 * r.point[i] / c.expected:.0f}% of it)" if c.expected else f"{t}: ceiling 0")
            a = answers(jobs, t)
            parts.append(text + (f"; {wrong_answers_text(a)}" if a is not None else ""))
        seeds = f"{len(model.seeds)} seeds" if len(model.seeds) > 1 else "one seed"
        L += [f"`{model.key}` ({_fmt_n(model.params_total)}, {head.label}, {seeds}) against the ceiling, the best "
              "JSONExact any reader of the prompts can expect (the answers that render to each prompt, weighted "
              "as EdgeJSON's generator draws them; 0 where the gold contradicts the prompt):", ""]
        L += [f"- {p}." for p in parts] + [""]
    L += [ceiling_table(analysis, head).to_markdown()]
    return L


def _pct_ci_row(r, i: int) -> str:
    lo, hi = r.lo[i], r.hi[i]
    return f"{pct(r.point[i])}%" + (f" [{lo * 100:.1f}, {hi * 100:.1f}]" if math.isfinite(lo) and math.isfinite(hi) else "")


def render_report(analysis: Analysis, name: str, figures: Sequence[FigureFile] = (),
                  figures_skipped: Sequence[tuple[str, str]] = (), out_dir: Path | None = None) -> str:
    """``report.md``: the headline table and the answer first, then verdicts, the other
    series' gains, diminishing returns, fits, the data axis, the ladder, figures and notes.
    Every series is described once: those with one size are listed together, not given a
    section each."""
    st = analysis.settings
    col = analysis.collection
    m = st.headline_metric
    mname = metric_label(m)
    head = headline_series(analysis)
    multi = [s for s in analysis.scores if n_sizes(s) >= 2]
    single = [s for s in analysis.scores if n_sizes(s) < 2]
    L = [f"# Scaling fit: {name}", ""]
    L.append(f"Sweeps: {', '.join(f'`{d}`' for d in col.sweep_dirs)}. {len(col.jobs)} jobs used, "
             f"{len(col.skipped)} skipped. Parameters: {st.params.replace('_', '-')}. Scores in percent, "
             f"{interval_note(st.level)}; gains and fits: {st.level * 100:g}% paired bootstrap over test examples "
             f"(and seeds), {st.n_boot} replicates. "
             f"Headline metric: {mname} (`headline_metric`).")
    L.append("")
    if col.skipped:
        L.append("Skipped jobs:")
        L += [f"- `{s.path}`: {s.reason}" for s in col.skipped]
        L.append("")
    if head is not None:
        L += [f"## Headline: {head.label}", "", headline_table(analysis, head).to_markdown()]
    if (pooled := complex_plus_note(analysis)) is not None:
        L += [pooled, ""]
    L += ["## Answer", ""]
    L += [" ".join(s for s in answer(analysis, head) if s), ""]
    checks = trend_checks(analysis)
    if checks:
        L += ["## Trend checks", "",
              "Scores this study expects to rise with every step up the ladder (`rising`), rung against rung on "
              "the same test examples (differences in points, paired 95% intervals):", ""]
        L += [f"- {c.line().removeprefix('check: ')}" for c in checks] + [""]
    L += _verdict_lines(analysis)
    L += ceiling_lines(analysis, head)
    others = [s for s in multi if s is not head]
    if others:
        L += [f"## Gain per 100M parameters in the other series ({mname}, points)", ""]
        for s in others:
            for t in st.tiers:
                c = analysis.curve(s.label, m, t)
                if c is None or not c.gains:
                    continue
                if c.no_signal:
                    L.append(f"- {s.label}, {t}: no signal ({c.no_signal})")
                    continue
                L.append(f"- {s.label}, {t}: " + "; ".join(f"{g.from_key} → {g.to_key} {gain_text(g)}"
                                                             for g in c.gains))
        L.append("")
    if multi:
        L += ["## Where returns diminish", "",
              f"Where the {mname} gain falls below {st.threshold_per_100m * 100:g} points per 100M parameters "
              f"(`threshold_per_100m`): a point from the log-linear fit with {st.min_sizes_curve}+ sizes, "
              f"else a range between rungs.", ""]
        for s in multi:
            L += _per_tier_lines(analysis, s, lambda c: describe_diminishing(c.diminishing))
        L += ["", "## Fits", "", f"{mname} against log10(parameters): log-linear from 2 sizes, logistic from 4; "
                                 f"leave-one-size-out (LOO) RMSE in points.", ""]
        for s in multi:
            L += _per_tier_lines(analysis, s, _fit_text)
        L.append("")
        cap = capacity_rows(analysis, multi)
        if cap:
            L += ["## Capacity thresholds", "", f"Smallest rung whose {st.target_metric} reaches each target.", "",
                  cap.to_markdown()]
    if analysis.data:
        L += ["## The data axis", "",
              f"The same model fine-tuned on a share of the training records (`data.train_fraction`, drawn per "
              f"schema by seed; the smaller shares lie inside the larger), {mname} per tier:", "",
              data_axis_table(analysis).to_markdown()]
    L += ["## Model ladder", "", ladder_table(analysis).to_markdown()]
    if single:
        L.append("Series with one size (no gain, fit or diminishing-returns point): "
                 + "; ".join(s.label for s in single) + ".")
        L.append("")
    L += ["## Figures", ""]
    for f in figures:
        files = ", ".join(f"`{p.relative_to(out_dir) if out_dir else p}`" for p in f.paths)
        L.append(f"- {f.title}: {files}")
    for n, r in figures_skipped:
        L.append(f"- {n}: skipped ({r})")
    L += ["", "Tables (Markdown and LaTeX) are in `tables/`; every number is in `fit.json`.", ""]
    notes = list(dict.fromkeys(list(col.notes) + [n for s in analysis.scores for n in s.notes]
                               + list(analysis.ceiling_notes)))
    thin = [f"{s.label}: {', '.join(s.thin)}" for s in analysis.scores if s.thin]
    if thin:
        notes.append(f"json_exact rests on fewer than {THIN} successes or failures in: " + "; ".join(thin)
                     + f". {THIN_NOTE[0].upper()}{THIN_NOTE[1:]}.")
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(L)


def _per_tier_lines(analysis: Analysis, series: SeriesScores, text) -> list[str]:
    """``- <series>, <tier>: <text(curve)>`` per tier of the headline metric, or one line
    ``- <series>, every tier: ...`` when every tier says the same (a metric with no signal)."""
    found = [(t, text(c)) for t in analysis.settings.tiers
             if (c := analysis.curve(series.label, analysis.settings.headline_metric, t)) is not None]
    if len(found) > 1 and len({x for _, x in found}) == 1:
        return [f"- {series.label}, every tier: {found[0][1]}"]
    return [f"- {series.label}, {t}: {x}" for t, x in found]


def _fit_text(c: Curve) -> str:
    if c.no_signal:
        return f"no signal ({c.no_signal})"
    ll, lg = c.loglinear, c.logistic
    if ll.ok:
        ci = (f" [{ll.ci_gain_per_doubling[0] * 100:+.1f}, {ll.ci_gain_per_doubling[1] * 100:+.1f}]"
              if ll.ci_gain_per_doubling else "")
        loo = f", LOO RMSE {ll.loo_rmse * 100:.1f}" if ll.loo_rmse is not None else ""
        txt = f"log-linear {ll.b * 100:+.1f} per decade, {ll.gain_per_doubling * 100:+.1f}{ci} per doubling{loo}"
    else:
        txt = f"log-linear {ll.outcome}"
    if lg.ok:
        loo = (f", LOO RMSE {lg.loo_rmse * 100:.1f}" + (f" ({lg.loo_note})" if lg.loo_note else "")
               if lg.loo_rmse is not None else "")
        txt += f"; logistic N50 {_fmt_n(lg.n50)}, ceiling {lg.hi * 100:.0f}{loo}"
    elif lg.status is not FitStatus.INSUFFICIENT_SIZES:   # too few sizes is said once, in the section's header
        txt += f"; logistic {lg.outcome}"
    return txt


def _verdict_lines(analysis: Analysis) -> list[str]:
    """Each track's verdict once per series that has the rung it needs; the series without
    it are named once, grouped by which rungs they lack."""
    st = analysis.settings
    L = ["## Verdicts", ""]
    if not st.tracks:
        return L + ["No verdicts configured (`verdicts.track*`).", ""]
    if not analysis.verdicts:
        return L + ["No measured fine-tuned series: nothing to judge.", ""]
    judged = [v for v in analysis.verdicts if v.model is not None]
    lacking: dict[str, list[str]] = {}
    for v in analysis.verdicts:
        if v.model is None:
            lacking.setdefault(v.series, []).append(v.track)
    rows = []
    for v in judged:
        head = (f"**{v.title}** — {v.series}: rung `{v.model}` ({_fmt_n(v.params)}): "
                f"**{v.verdict if v.status == 'evaluated' else v.status}**")
        L.append(f"- {head}")
        for c in v.checks:
            name_ = c.metric if c.tier == OVERALL else f"{c.metric} ({c.tier})"
            res = "-" if c.passed is None else ("pass" if c.passed else "fail")
            clear = "-" if c.ci_above is None else ("yes" if c.ci_above else "no")
            rows.append((v.track, v.series, name_, pct(c.value, c.ci), f"> {c.threshold * 100:g}", res, clear))
    if rows:
        L += ["", Table("verdict_checks", "", ("track", "series", "check", "measured (%)", "threshold (%)", "result",
                                                 "interval clear of threshold"), tuple(rows)).to_markdown()]
    by_need: dict[tuple[str, ...], list[str]] = {}
    for series, tracks in lacking.items():
        by_need.setdefault(tuple(tracks), []).append(series)
    titles = {t.name: t for t in st.tracks}
    for tracks, series in by_need.items():
        need = " or ".join(f"{_fmt_n(titles[t].params) if not titles[t].model else '`' + titles[t].model + '`'} "
                           f"({t.replace('track', 'Track ')})" for t in tracks)
        n_all = len({v.series for v in analysis.verdicts})
        if len(series) == n_all:
            who = "the only measured fine-tuned series has no" if n_all == 1 else \
                f"none of the {n_all} measured fine-tuned series has a"
            L.append(f"Not judged: {who} rung near {need}.")
        else:
            L.append(f"Not judged, no rung near {need}: " + "; ".join(series) + ".")
        L.append("")
    if not by_need:
        L.append("")
    return L


def capacity_rows(analysis: Analysis, series: Sequence[SeriesScores]) -> Table | None:
    """Smallest rung reaching each target (one row per series and tier) for multi-size series."""
    st = analysis.settings
    labels = {s.label for s in series}
    cells: dict[tuple[str, str], dict[float, str]] = {}
    for cap in analysis.capacity:
        if cap.series not in labels:
            continue
        r = cap.result
        cells.setdefault((cap.series, cap.tier), {})[r.target] = (
            f"`{r.key}` ({_fmt_n(r.n)})" if r.status is ThresholdStatus.REACHED else "not reached")
    if not cells:
        return None
    header = ("series", "tier") + tuple(f">= {t * 100:g}%" for t in st.targets)
    rows = tuple((s, t) + tuple(v.get(x, "-") for x in st.targets) for (s, t), v in cells.items())
    return Table("capacity_report", "", header, rows)

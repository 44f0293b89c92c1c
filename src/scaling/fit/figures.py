"""Publication figures (PDF + PNG) from an :class:`~scaling.fit.analysis.Analysis`.

Figures are built on :class:`matplotlib.figure.Figure` objects without pyplot, inside a
``matplotlib.rc_context``: no global backend or style state changes, so importing this in
a notebook or a headless job is the same. Colours are the Okabe-Ito palette (colour-blind
safe); reference (published) series are black with open markers; intervals are error bars.
Every score is shown in percent (axes, annotations, the heatmap's colour scale) and every
gain in points, as in the tables.

Each ``figure_*`` function returns a Figure or raises :class:`SkipFigure` with the reason
its data is absent; :func:`make_figures` writes the ones it can and reports the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from scaling.fit.analysis import Analysis, Curve
from scaling.fit.collect import OVERALL, Log, _stderr
from scaling.fit.fits import _fmt_n

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P")
REFERENCE_COLOUR = "#000000"
METRIC_LABELS = {"json_exact": "JSONExact", "field_f1": "Field F1", "field_f1_toplevel": "Field F1 (top level)",
                 "schema_compliance": "Schema compliance", "compliance_keys_types": "Compliance (keys + types)"}

STYLE = {
    "font.family": "sans-serif",
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
    "lines.linewidth": 1.2, "lines.markersize": 4.5, "errorbar.capsize": 2.5,
    "legend.frameon": False, "axes.prop_cycle": cycler(color=OKABE_ITO),
    "savefig.dpi": 200, "savefig.bbox": "tight", "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42, "ps.fonttype": 42,
}


class SkipFigure(Exception):
    """The figure's data is absent; the message says what is missing."""


@dataclass(frozen=True)
class FigureFile:
    name: str
    title: str
    paths: tuple[Path, ...]


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _percent_axis(ax, label: str) -> None:
    """The y axis of a score (held as a fraction) labelled and ticked in percent."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * 100:.0f}"))
    ax.set_ylabel(f"{label} (%)")


class _Styles:
    """A fixed colour and marker per series, the same in every figure."""

    def __init__(self, analysis: Analysis) -> None:
        self.map = {}
        k = 0
        for s in analysis.scores:
            if s.kind == "reference":
                self.map[s.label] = (REFERENCE_COLOUR, MARKERS[len(self.map) % len(MARKERS)], True)
            else:
                self.map[s.label] = (OKABE_ITO[k % len(OKABE_ITO)], MARKERS[k % len(MARKERS)], False)
                k += 1

    def __call__(self, label: str) -> tuple[str, str, bool]:
        return self.map[label]


def _yerr(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    if not (np.isfinite(lo).any() and np.isfinite(hi).any()):
        return None
    low = np.where(np.isfinite(lo), y - lo, 0.0)
    high = np.where(np.isfinite(hi), hi - y, 0.0)
    return np.vstack([np.maximum(low, 0), np.maximum(high, 0)])


def _size_axis(ax, sizes: Sequence[float]) -> None:
    """Log x axis with ticks at the measured sizes (labelled 135M, 1.2B, ...)."""
    ax.set_xscale("log")
    ticks: list[float] = []
    for n in sorted(set(float(s) for s in sizes)):
        if not ticks or n / ticks[-1] > 1.08:
            ticks.append(n)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_n(v)))
    if ticks:
        ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)


def _plot_curve(ax, c: Curve, styles: _Styles, offset: float = 1.0, fits: bool = True,
                label: str | None = None, ls: str = "-") -> None:
    colour, marker, hollow = styles(c.series)
    x = c.N * offset
    ax.errorbar(x, c.y, yerr=_yerr(c.y, c.lo, c.hi), fmt=marker, color=colour,
                mfc="none" if hollow else colour, label=label if label is not None else c.series,
                zorder=3, elinewidth=0.9)
    _plot_seeds(ax, x, c.seed_y, colour)
    _plot_rungs(ax, x, c, colour)
    if fits and c.loglinear.ok and len(c.N) >= 2:
        grid = np.geomspace(c.N[0] / 1.15, c.N[-1] * 1.15, 100)
        ax.plot(grid, np.clip(c.loglinear.predict(grid), 0, 1), ls=":" if hollow else ls, color=colour, lw=0.9,
                alpha=0.8, zorder=2)
        if c.logistic.ok:
            ax.plot(grid, c.logistic.predict(grid), ls="--", color=colour, lw=0.9, alpha=0.8, zorder=2)
    elif len(c.N) >= 2:
        ax.plot(x, c.y, ls=":", color=colour, lw=0.8, zorder=2)


#: Rungs that are not the pretrained model itself get a large hollow marker around their point.
RUNG_MARKERS = {"pruned": ("v", "pruned rung (blocks removed)"), "grown": ("^", "grown rung (blocks added)")}


def _plot_rungs(ax, x: np.ndarray, c: Curve, colour: str) -> None:
    """Label each point of a fit that mixes pruned, original and grown rungs by its kind."""
    if len({r for r in c.rungs if r is not None}) < 2:
        return
    for kind, (marker, _) in RUNG_MARKERS.items():
        idx = [i for i, r in enumerate(c.rungs) if r == kind]
        if idx:
            ax.scatter(x[idx], c.y[idx], s=60, marker=marker, facecolors="none", edgecolors=colour, linewidths=0.8,
                       zorder=4, label="_rungs")


def _rung_legend_entries(curves) -> list:
    from matplotlib.lines import Line2D

    kinds = {r for c in curves if len({k for k in c.rungs if k is not None}) > 1 for r in c.rungs}
    return [(Line2D([], [], ls="none", marker=marker, mfc="none", mec="grey", ms=7), text)
            for kind, (marker, text) in RUNG_MARKERS.items() if kind in kinds]


SEED_X = 1.04  # seed markers sit just right of their model's mean, clear of its error bar


def _plot_seeds(ax, x: np.ndarray, seed_y, colour: str) -> None:
    """Each seed's own score as a small hollow marker beside the mean (models with 2+ seeds)."""
    if seed_y is None:
        return
    xs, ys = [], []
    for xi, s in zip(x, seed_y):
        if s is not None and len(s) > 1:
            xs += [xi * SEED_X] * len(s)
            ys += [float(v) for v in s]
    if xs:
        ax.scatter(xs, ys, s=9, marker="o", facecolors="none", edgecolors=colour, linewidths=0.6, alpha=0.8,
                   zorder=2, label="_seeds")


def _seed_legend_entries(curves) -> list:
    from matplotlib.lines import Line2D

    if any(c.seed_y is not None and any(s is not None and len(s) > 1 for s in c.seed_y) for c in curves):
        return [(Line2D([], [], ls="none", marker="o", mfc="none", mec="grey", ms=3), "single seeds")]
    return []


def _ceiling_band(ax, analysis: Analysis, metric: str, tier: str) -> bool:
    """The tier's ceiling (what its prompts determine) as a grey band (95% interval) and line;
    JSONExact only. True when drawn."""
    c = analysis.ceilings.get(tier) if metric == "json_exact" else None
    if c is None:
        return False
    if c.ci:
        ax.axhspan(c.ci[0], c.ci[1], color="grey", alpha=0.15, lw=0, zorder=0)
    ax.axhline(c.expected, color="grey", ls="-.", lw=0.9, zorder=1)
    return True


def _ceiling_legend_entries(drawn: bool) -> list:
    from matplotlib.patches import Patch

    return [(Patch(facecolor="grey", alpha=0.3, edgecolor="grey", ls="-."),
             "ceiling: what the prompt determines (95% CI)")] if drawn else []


def _curves(analysis: Analysis, metric: str, tier: str) -> list[Curve]:
    return [c for c in analysis.curves if c.metric == metric and c.tier == tier]


def _offsets(curves: Sequence[Curve]) -> dict[str, float]:
    """Small multiplicative x offsets so error bars of series at the same size don't overlap."""
    labels = list(dict.fromkeys(c.series for c in curves))
    mid = (len(labels) - 1) / 2
    return {lab: 1.0 + 0.025 * (i - mid) for i, lab in enumerate(labels)}


def _legend(fig: Figure, axes, extra: Sequence = ()) -> None:
    handles, labels = [], []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
    for h, lab in extra:
        handles.append(h)
        labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(handles)))


def _fit_legend_entries(curves: Sequence[Curve]):
    from matplotlib.lines import Line2D

    out = []
    if any(c.loglinear.ok for c in curves):
        out.append((Line2D([], [], color="grey", lw=0.9), "log-linear fit"))
    if any(c.logistic.ok for c in curves):
        out.append((Line2D([], [], color="grey", lw=0.9, ls="--"), "logistic fit"))
    return out


def _tier_grid(analysis: Analysis, metric: str) -> tuple[Figure, list]:
    tiers = [t for t in analysis.settings.tiers if _curves(analysis, metric, t)]
    if not tiers:
        raise SkipFigure(f"no {metric} scores")
    return _panels(tiers)


def _panels(tiers: list[str]) -> tuple[Figure, list]:
    """One panel per tier, two columns: the figure and ``(tier, axes)`` pairs."""
    ncol = 2 if len(tiers) > 1 else 1
    nrow = math.ceil(len(tiers) / ncol)
    fig = Figure(figsize=(3.4 * ncol, 2.5 * nrow + 0.4), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax in axes.ravel()[len(tiers):]:
        ax.set_visible(False)
    return fig, list(zip(tiers, axes.ravel()))


# ----------------------------------------------------------------------------- (a)


def figure_score_vs_params(analysis: Analysis, metric: str = "json_exact") -> Figure:
    """(a) ``metric`` against parameters, one panel per tier, with fits (log x axis)."""
    styles = _Styles(analysis)
    fig, panels = _tier_grid(analysis, metric)
    all_curves = []
    band = False
    for tier, ax in panels:
        curves = _curves(analysis, metric, tier)
        all_curves += curves
        offs = _offsets(curves)
        for c in curves:
            _plot_curve(ax, c, styles, offs[c.series])
        band |= _ceiling_band(ax, analysis, metric, tier)
        _size_axis(ax, [n for c in curves for n in c.N])
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(tier)
        ax.set_xlabel(f"parameters ({analysis.settings.params.replace('_', '-')})")
        _percent_axis(ax, metric_label(metric))
    _legend(fig, [ax for _, ax in panels], _fit_legend_entries(all_curves) + _seed_legend_entries(all_curves)
            + _rung_legend_entries(all_curves) + _ceiling_legend_entries(band))
    fig.suptitle(f"{metric_label(metric)} vs parameters")
    return fig


# ----------------------------------------------------------------------------- (b)


def figure_tier_bars(analysis: Analysis, metric: str = "json_exact") -> Figure:
    """(b) per-tier grouped bars, one bar per measured model, with intervals."""
    measured = [s for s in analysis.scores if s.kind == "measured"]
    several = len(measured) > 1
    bars = []  # (label, [(tier, y, lo, hi)])
    tiers = [t for t in analysis.settings.tiers if any(s.row(metric, t) for s in measured)]
    if not tiers:
        raise SkipFigure(f"no measured {metric} scores")
    for s in measured:
        for i, m in enumerate(s.models):
            label = f"{m.key} ({s.label})" if several else m.key
            vals = []
            for t in tiers:
                r = s.row(metric, t)
                vals.append((r.point[i], r.lo[i], r.hi[i]) if r is not None else (np.nan, np.nan, np.nan))
            bars.append((label, np.array(vals)))
    fig = Figure(figsize=(max(4.0, min(7.2, 1.2 + 0.3 * len(tiers) * len(bars))), 3.0), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(bars)
    x = np.arange(len(tiers))
    for k, (label, vals) in enumerate(bars):
        pos = x - 0.4 + width * (k + 0.5)
        y = vals[:, 0]
        ax.bar(pos, np.nan_to_num(y), width * 0.92, color=OKABE_ITO[k % len(OKABE_ITO)], label=label,
               yerr=_yerr(y, vals[:, 1], vals[:, 2]), error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_xticks(x, tiers)
    ax.set_ylim(0, 1.0)
    _percent_axis(ax, metric_label(metric))
    ax.grid(axis="x", visible=False)
    # Below the axes: inside, five or more bars' labels cover the simple-tier bars.
    longest = max(len(label) for label, _ in bars)
    fig.legend(loc="outside lower center", ncol=min(len(bars), 2 if longest > 30 else 3))
    ax.set_title(f"{metric_label(metric)} per tier")
    return fig


# ----------------------------------------------------------------------------- (c)


def figure_f1_compliance(analysis: Analysis, metrics: Sequence[str] = ("field_f1", "schema_compliance"),
                         tier: str = OVERALL) -> Figure:
    """(c) Field F1 and schema compliance against parameters (one panel each)."""
    present = [m for m in metrics if _curves(analysis, m, tier)]
    if not present:
        raise SkipFigure(f"no {' / '.join(metrics)} scores on tier {tier}")
    styles = _Styles(analysis)
    fig = Figure(figsize=(3.4 * len(present), 2.9), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False).ravel()
    all_curves = []
    for m, ax in zip(present, axes):
        curves = _curves(analysis, m, tier)
        all_curves += curves
        offs = _offsets(curves)
        for c in curves:
            _plot_curve(ax, c, styles, offs[c.series])
        _size_axis(ax, [n for c in curves for n in c.N])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"parameters ({analysis.settings.params.replace('_', '-')})")
        _percent_axis(ax, metric_label(m))
        ax.set_title(f"{metric_label(m)} ({tier})")
    _legend(fig, axes, _fit_legend_entries(all_curves) + _seed_legend_entries(all_curves)
            + _rung_legend_entries(all_curves))
    return fig


# ----------------------------------------------------------------------------- (d)


def schema_matrix(analysis: Analysis, metric: str = "json_exact"):
    """``(schemas, columns, matrix)``: schemas sorted by tier then id (rows), measured models
    (columns), ``metric`` per schema (NaN where a model has no value)."""
    measured = [s for s in analysis.scores if s.kind == "measured" and s.by_schema.get(metric)]
    if not measured:
        return [], [], np.zeros((0, 0))
    several = len(measured) > 1
    tier_rank = {t: i for i, t in enumerate(analysis.settings.tiers)}
    schema_tier: dict[str, str] = {}
    for s in measured:
        schema_tier.update({sid: s.schema_tiers.get(sid, "?") for sid in s.by_schema[metric]})
    schemas = sorted(schema_tier, key=lambda sid: (tier_rank.get(schema_tier[sid], 99), schema_tier[sid], sid))
    columns, cols = [], []
    for s in measured:
        for i, m in enumerate(s.models):
            columns.append(f"{m.key}\n{s.label}" if several else m.key)
            cols.append([s.by_schema[metric].get(sid, np.full(len(s.models), np.nan))[i] for sid in schemas])
    return [(sid, schema_tier[sid]) for sid in schemas], columns, np.array(cols, dtype=float).T


def figure_schema_heatmap(analysis: Analysis, metric: str = "json_exact") -> Figure:
    """(d) per-schema heatmap (schemas x models), annotated with the value in percent."""
    schemas, columns, mat = schema_matrix(analysis, metric)
    if not schemas:
        raise SkipFigure(f"no per-schema {metric} scores")
    fig = Figure(figsize=(1.6 + 0.75 * len(columns), 0.8 + 0.22 * len(schemas)), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(mat * 100), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for r in range(mat.shape[0]):
        for c in range(mat.shape[1]):
            v = mat[r, c]
            if math.isfinite(v):
                ax.text(c, r, f"{v * 100:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 else "white")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    ax.set_yticks(range(len(schemas)), [f"{tier}: {sid}" for sid, tier in schemas])
    ax.grid(False)
    for r in range(1, len(schemas)):
        if schemas[r][1] != schemas[r - 1][1]:
            ax.axhline(r - 0.5, color="white", lw=1.5)
    ax.tick_params(length=0)
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.6, label=f"{metric_label(metric)} (%)")
    ax.set_title(f"{metric_label(metric)} per schema (%)")
    return fig


# ----------------------------------------------------------------------------- (e)


def figure_base_vs_finetuned(analysis: Analysis, metric: str = "json_exact", tier: str = OVERALL) -> Figure:
    """(e) base and fine-tuned series against parameters, with the fine-tuning gain
    annotated for models present in both (same key, or within 5% of parameters)."""
    curves = _curves(analysis, metric, tier)
    scores = {s.label: s for s in analysis.scores}
    base = [c for c in curves if scores[c.series].is_base]
    tuned = [c for c in curves if not scores[c.series].is_base]
    if not base:
        raise SkipFigure(f"no base (not fine-tuned) series with {metric} on {tier}")
    if not tuned:
        raise SkipFigure(f"no fine-tuned series with {metric} on {tier}")
    styles = _Styles(analysis)
    fig = Figure(figsize=(4.2, 3.0), layout="constrained")
    ax = fig.subplots()
    offs = _offsets(curves)
    for c in curves:
        _plot_curve(ax, c, styles, offs[c.series], fits=False)
    for b in base:
        # measured gains are labelled right of their line, reference gains left of theirs
        t = next((t for t in tuned if t.kind == b.kind), None)
        if t is None:
            continue
        side = 1 if b.kind == "measured" else -1
        for k, n, yb in zip(b.keys, b.N, b.y):
            j = next((j for j, (kk, nn) in enumerate(zip(t.keys, t.N)) if kk == k or abs(nn / n - 1) < 0.05), None)
            if j is None:
                continue
            x = n * offs[t.series]
            ax.plot([x, x], [yb, t.y[j]], color=styles(t.series)[0], lw=0.5, ls="-", alpha=0.6, zorder=1)
            ax.annotate(f"{(t.y[j] - yb) * 100:+.1f} pts", (x, (t.y[j] + yb) / 2), fontsize=6,
                        ha="left" if side > 0 else "right", xytext=(4 * side, 0), textcoords="offset points",
                        color=styles(t.series)[0])
    _size_axis(ax, [n for c in curves for n in c.N])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"parameters ({analysis.settings.params.replace('_', '-')})")
    _percent_axis(ax, f"{metric_label(metric)}, {tier}")
    ax.legend(loc="upper left")
    ax.set_title("base vs fine-tuned")
    return fig


# ----------------------------------------------------------------------------- (f)


def figure_gain_per_100m(analysis: Analysis, metric: str | None = None) -> Figure:
    """(f) marginal gain per 100M parameters between adjacent rungs (points per 100M), one
    panel per tier: a marker at the geometric midpoint of each step, a horizontal bar over
    the step, the paired-bootstrap interval as a vertical bar, the threshold dashed."""
    metric = metric or analysis.settings.headline_metric
    if not any(c.gains for c in analysis.curves if c.metric == metric):
        raise SkipFigure(f"no gain between rungs for {metric} (needs at least 2 sizes in a series)")
    styles = _Styles(analysis)
    fig, panels = _tier_grid(analysis, metric)
    thr = analysis.settings.threshold_per_100m * 100
    for tier, ax in panels:
        curves = [c for c in _curves(analysis, metric, tier) if c.gains]
        offs = _offsets(curves)
        sizes = []
        for c in curves:
            colour, marker, hollow = styles(c.series)
            gs = [g for g in c.gains if g.gain is not None]
            if not gs:
                continue
            mid = np.array([math.sqrt(g.n_from * g.n_to) for g in gs]) * offs[c.series]
            y = np.array([g.gain * 100 for g in gs])
            lo = np.array([g.ci[0] * 100 if g.ci else np.nan for g in gs])
            hi = np.array([g.ci[1] * 100 if g.ci else np.nan for g in gs])
            # the step itself as a thin line; the interval as the error bar
            ax.hlines(y, [g.n_from for g in gs], [g.n_to for g in gs], color=colour, lw=0.7, alpha=0.5)
            ax.errorbar(mid, y, yerr=_yerr(y, lo, hi), fmt=marker, color=colour,
                        mfc="none" if hollow else colour, label=c.series, elinewidth=0.9)
            sizes += [g.n_from for g in gs] + [g.n_to for g in gs]
        ax.axhline(thr, color="grey", ls="--", lw=0.8, label=f"threshold ({thr:g} pts / 100M)")
        ax.axhline(0, color="black", lw=0.5)
        if sizes:
            _size_axis(ax, sizes)
        ax.set_title(tier)
        ax.set_xlabel("parameters (step between rungs)")
        ax.set_ylabel(f"{metric_label(metric)} gain (points / 100M)")
    _legend(fig, [ax for _, ax in panels])
    fig.suptitle(f"marginal gain per 100M parameters ({metric_label(metric)})")
    return fig


# ----------------------------------------------------------------------------- (g)


def figure_data_axis(analysis: Analysis, metric: str | None = None) -> Figure:
    """(g) the data axis: ``metric`` per tier against the number of training records, one
    line per model fine-tuned at several ``data.train_fraction`` values, with paired
    intervals and each seed's score."""
    metric = metric or analysis.settings.headline_metric
    curves = [d for d in analysis.data if any(k[0] == metric for k in d.point)]
    if not curves:
        raise SkipFigure("no model fine-tuned at two or more data.train_fraction values")
    tiers = [t for t in analysis.settings.tiers if any((metric, t) in d.point for d in curves)]
    fig, panels = _panels(tiers)
    # x: training records when every job recorded them (data.n_train), else the fraction
    by_count = all(n is not None and n > 0 for d in curves for n in d.n_train)
    band = False
    for tier, ax in panels:
        band |= _ceiling_band(ax, analysis, metric, tier)
        xs_all = []
        for k, d in enumerate(curves):
            if (metric, tier) not in d.point:
                continue
            colour = OKABE_ITO[k % len(OKABE_ITO)]
            x = np.array(d.n_train if by_count else d.fractions, dtype=float)
            y = d.point[(metric, tier)]
            ax.errorbar(x, y, yerr=_yerr(y, d.lo[(metric, tier)], d.hi[(metric, tier)]), fmt=MARKERS[k % len(MARKERS)],
                        ls="-", color=colour, label=d.label, elinewidth=0.9, lw=0.9)
            _plot_seeds(ax, x, d.seed_scores.get((metric, tier)), colour)
            xs_all += list(x)
        ax.set_xscale("log")
        ticks = sorted(set(xs_all))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if by_count else f"{v * 100:.4g}%"))
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(tier)
        ax.set_xlabel("training records" if by_count else "share of the training records")
        _percent_axis(ax, metric_label(metric))
    _legend(fig, [ax for _, ax in panels], _seed_legend_entries_data(curves) + _ceiling_legend_entries(band))
    fig.suptitle(f"{metric_label(metric)} vs training records (the data axis)")
    return fig


def _seed_legend_entries_data(curves) -> list:
    from matplotlib.lines import Line2D

    if any(len(s) > 1 for d in curves for s in d.seeds):
        return [(Line2D([], [], ls="none", marker="o", mfc="none", mec="grey", ms=3), "single seeds")]
    return []


# ----------------------------------------------------------------------------- driver

FIGURES: tuple[tuple[str, str, Callable[[Analysis], Figure]], ...] = (
    ("json_exact_vs_params", "(a) JSONExact vs parameters per tier, with fits", figure_score_vs_params),
    ("tier_bars", "(b) per-tier JSONExact per model", figure_tier_bars),
    ("f1_compliance_vs_params", "(c) Field F1 and schema compliance vs parameters", figure_f1_compliance),
    ("schema_heatmap", "(d) JSONExact per schema and model", figure_schema_heatmap),
    ("base_vs_finetuned", "(e) base vs fine-tuned", figure_base_vs_finetuned),
    ("gain_per_100m", "(f) marginal gain per 100M parameters between rungs", figure_gain_per_100m),
    ("data_axis", "(g) the headline metric per tier vs training records (data.train_fraction)", figure_data_axis),
)
FORMATS = ("pdf", "png")


def make_figures(analysis: Analysis, out_dir: str | Path, log: Log = _stderr
                 ) -> tuple[tuple[FigureFile, ...], tuple[tuple[str, str], ...]]:
    """Write every figure of :data:`FIGURES` to ``out_dir`` as PDF and PNG. Returns the
    written figures and ``(name, reason)`` for each skipped one; a stale file of a skipped
    figure from an earlier run is removed so the folder matches the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for name, title, fn in FIGURES:
        for ext in FORMATS:
            (out_dir / f"{name}.{ext}").unlink(missing_ok=True)
        with matplotlib.rc_context(STYLE):
            try:
                fig = fn(analysis)
            except SkipFigure as e:
                skipped.append((name, str(e)))
                log(f"figures: skip {name}: {e}")
                continue
            paths = []
            for ext in FORMATS:
                p = out_dir / f"{name}.{ext}"
                fig.savefig(p, format=ext, metadata=figure_metadata(ext))
                paths.append(p)
        written.append(FigureFile(name, title, tuple(paths)))
    return tuple(written), tuple(skipped)


def figure_metadata(ext: str) -> dict:
    # no creation dates: the same analysis gives byte-identical PDFs
    return {"CreationDate": None} if ext == "pdf" else {}


__all__ = ["FIGURES", "FigureFile", "SkipFigure", "make_figures", "figure_score_vs_params", "figure_tier_bars",
           "figure_f1_compliance", "figure_schema_heatmap", "figure_base_vs_finetuned", "figure_gain_per_100m",
           "figure_data_axis",
           "schema_matrix", "OKABE_ITO", "STYLE"]

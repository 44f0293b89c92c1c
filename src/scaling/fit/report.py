"""Run the whole analysis from a config and write its outputs.

``outputs/fit/<name>/`` receives::

    fit.json            every number (top-level "gain_per_100m" is the headline)
    report.md           verdicts, ladder, gains, thresholds, fits, figure list
    figures/<fig>.pdf   and .png: see scaling.fit.figures.FIGURES
    tables/<table>.md   and .tex: see scaling.fit.tables.all_tables
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from scaling.configs import to_plain
from scaling.fit.analysis import Analysis, analyse, fit_summary
from scaling.fit.collect import Collection, Log, collect, load_reference, newest_sweep
from scaling.fit.config import Settings, conf_dir
from scaling.fit.errors import FitError
from scaling.fit.figures import FigureFile, make_figures
from scaling.fit.fits import _fmt_n
from scaling.fit.tables import (Table, all_tables, describe_diminishing, ladder_table, pct, recommendation_table,
                                write_tables)
from scaling.results import atomic_write_json, atomic_write_text

FIT_VERSION = 1


def _stdout(msg: str) -> None:
    print(msg, flush=True)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True, eq=False)
class FitRun:
    """What :func:`run_fit` produced."""

    name: str
    out_dir: Path
    analysis: Analysis
    figures: tuple[FigureFile, ...]
    figures_skipped: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...]
    files: tuple[Path, ...]

    @property
    def fit_json(self) -> Path:
        return self.out_dir / "fit.json"

    @property
    def report(self) -> Path:
        return self.out_dir / "report.md"

    def png(self, name: str) -> Path | None:
        for f in self.figures:
            if f.name == name:
                return next((p for p in f.paths if p.suffix == ".png"), None)
        return None


# ----------------------------------------------------------------------------- config helpers


def load_config(overrides: Sequence[str] = ()) -> dict:
    """Compose ``conf/fit.yaml`` with Hydra-style ``overrides`` (e.g. ``["sweep_dir=..."]``)
    and return it as a plain dict (for notebooks and scripts; the CLI uses ``@hydra.main``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="fit", overrides=list(overrides))
    return to_plain(cfg)


def sweep_dirs_from(cfg: Mapping[str, Any]) -> list[Path]:
    """``sweep_dir`` (one path) plus ``sweep_dirs`` (a list); the newest sweep under
    ``multirun_root`` when both are empty."""
    dirs: list[Path] = []
    one = cfg.get("sweep_dir")
    if one:
        dirs.append(Path(str(one)))
    many = cfg.get("sweep_dirs") or []
    if isinstance(many, (str, Path)):
        many = [many]
    dirs += [Path(str(d)) for d in many]
    if not dirs:
        dirs = [newest_sweep(cfg.get("multirun_root") or "outputs/multirun")]
    return list(dict.fromkeys(dirs))


def default_name(sweep_dirs: Sequence[Path]) -> str:
    """The sweep folder's name (names joined by ``+`` for several), safe as a folder name."""
    name = "+".join(p.resolve().name for p in sweep_dirs)
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", name) or "fit"


def reference_files(cfg: Mapping[str, Any]) -> list[Path]:
    """``reference`` (a path, or a list of paths) plus the published study's CSV when
    ``include_published`` is true (``published`` is relative to the conf folder)."""
    out: list[Path] = []
    ref = cfg.get("reference")
    if ref:
        out += [Path(str(r)) for r in (ref if isinstance(ref, (list, tuple)) else [ref])]
    if cfg.get("include_published"):
        pub = Path(str(cfg.get("published") or "reference/published_study.csv"))
        out.append(pub if pub.is_absolute() else conf_dir() / pub)
    return out


# ----------------------------------------------------------------------------- run


def run_fit(cfg: Mapping[str, Any] | Any, log: Log = _stdout, warn: Log = _stderr) -> FitRun:
    """Collect, analyse and write everything for the config ``cfg`` (keys of conf/fit.yaml).

    Progress goes through ``log`` (one line per stage), skipped jobs and notes through
    ``warn``. Raises :class:`FitError` for bad input (no sweep, no completed job, bad config).
    """
    cfg = to_plain(cfg)
    settings = Settings.from_config(cfg)
    dirs = sweep_dirs_from(cfg)
    refs = []
    for path in reference_files(cfg):
        refs += load_reference(path, metrics=settings.metrics,
                               tiers=[t for t in settings.tiers if t != "overall"])
    collection = collect(dirs, metrics=settings.metrics, references=refs, log=warn)
    log(collection.summary())
    analysis = analyse(collection, settings, log=warn)
    log(fit_summary(analysis))
    name = str(cfg.get("name") or default_name(collection.sweep_dirs))
    out_dir = Path(str(cfg.get("out_root") or "outputs/fit")) / name
    figures, skipped = make_figures(analysis, out_dir / "figures", log=warn)
    log(f"figures: {len(figures)} written" + (f", {len(skipped)} skipped (" + "; ".join(
        f"{n}: {r}" for n, r in skipped) + ")" if skipped else ""))
    table_files = write_tables(analysis, out_dir / "tables")
    tables = all_tables(analysis)
    doc = fit_document(analysis, name=name, config=cfg, figures=figures, figures_skipped=skipped,
                       tables=tables, out_dir=out_dir)
    atomic_write_json(out_dir / "fit.json", doc)
    atomic_write_text(out_dir / "report.md", render_report(analysis, name, figures, skipped, out_dir))
    files = tuple(p for f in figures for p in f.paths) + table_files + (out_dir / "fit.json", out_dir / "report.md")
    run = FitRun(name, out_dir, analysis, figures, skipped, tables, files)
    wb = cfg.get("wandb") or {}
    if wb.get("enabled"):
        log_to_wandb(run, project=wb.get("project"), entity=wb.get("entity"), log=log)
    log(f"wrote {out_dir}/")
    return run


# ----------------------------------------------------------------------------- fit.json


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> null, numpy -> Python, tuples -> lists, Paths -> str."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _series_doc(s) -> dict:
    scores: dict[str, dict[str, list]] = {}
    for (metric, tier), r in s.rows.items():
        scores.setdefault(metric, {})[tier] = [
            {"model": m.key, "score": r.point[i],
             "ci": [r.lo[i], r.hi[i]] if math.isfinite(r.lo[i]) and math.isfinite(r.hi[i]) else None}
            for i, m in enumerate(s.models)]
    return {
        "label": s.label, "kind": s.kind, "method": s.method, "decode_mode": s.decode_mode, "paired": s.paired,
        "models": [{"key": m.key, "params_total": m.params_total, "params_non_embedding": m.params_non_embedding,
                    "category": m.category, "family": m.family, "seeds": list(m.seeds), "n_examples": m.n_examples,
                    "sources": list(m.jobs)} for m in s.models],
        "scores": scores,
        "by_schema": {metric: {sid: {"tier": s.schema_tiers.get(sid),
                                     **{m.key: v[i] for i, m in enumerate(s.models)}}
                               for sid, v in per.items()} for metric, per in s.by_schema.items()},
        "notes": list(s.notes),
    }


def settings_dict(st: Settings) -> dict:
    return {"params": st.params, "metrics": list(st.metrics), "tiers": list(st.tiers),
            "threshold_per_100m": st.threshold_per_100m, "targets": list(st.targets),
            "target_metric": st.target_metric, "recommend_target": st.recommend_target,
            "n_boot": st.n_boot, "n_boot_fit": st.n_boot_fit, "ci": st.level, "seed": st.seed,
            "min_sizes_curve": st.min_sizes_curve, "rung_tolerance": st.rung_tolerance,
            "tracks": [{"name": t.name, "title": t.title, "params": t.params, "model": t.model,
                        "thresholds": {c.name: c.threshold for c in t.checks},
                        "pass": t.pass_verdict, "fail": t.fail_verdict} for t in st.tracks]}


def fit_document(analysis: Analysis, *, name: str, config: Mapping[str, Any], figures: Sequence[FigureFile] = (),
                 figures_skipped: Sequence[tuple[str, str]] = (), tables: Sequence[Table] = (),
                 out_dir: Path | None = None) -> dict:
    """Everything as one JSON-safe dict (the content of ``fit.json``)."""
    col: Collection = analysis.collection
    st = analysis.settings

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(out_dir)) if out_dir is not None else str(p)
        except ValueError:
            return str(p)

    doc = {
        "fit_version": FIT_VERSION,
        "name": name,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sweep_dirs": [str(d) for d in col.sweep_dirs],
        "group": col.group,
        "units": {"scores": "fraction in [0, 1]", "gain_per_100m": "score fraction per 1e8 parameters "
                  "(0.05 = 5 points per 100M)", "loglinear.b": "score per decade of parameters",
                  "params": st.params},
        "gain_per_100m": analysis.gain_per_100m(),
        "settings": settings_dict(st),
        "verdicts": [v.to_dict() for v in analysis.verdicts],
        "diminishing_returns": {c.series: {} for c in analysis.curves},
        "capacity_thresholds": [{"series": c.series, "metric": c.metric, "tier": c.tier, **c.result.to_dict()}
                                for c in analysis.capacity],
        "ladder": [r.to_dict() for r in analysis.ladder],
        "recommendations": [r.to_dict() for r in analysis.recommendations],
        "series": [_series_doc(s) for s in analysis.scores],
        "curves": [c.to_dict() for c in analysis.curves],
        "collection": {
            "jobs": [{"path": str(j.path), "run_name": j.run_name, "model": j.model_key, "method": j.method,
                      "decode_mode": j.decode_mode, "seed": j.seed, "params_total": j.params_total,
                      "params_non_embedding": j.params_non_embedding, "predictions": j.predictions is not None}
                     for j in col.jobs],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in col.skipped],
            "notes": list(col.notes),
        },
        "figures": [{"name": f.name, "title": f.title, "files": [rel(p) for p in f.paths]} for f in figures],
        "figures_skipped": [{"name": n, "reason": r} for n, r in figures_skipped],
        "tables": [t.name for t in tables],
        "config": config,
    }
    for c in analysis.curves:
        doc["diminishing_returns"][c.series].setdefault(c.metric, {})[c.tier] = c.diminishing.to_dict()
    return _clean(doc)


# ----------------------------------------------------------------------------- report.md


def render_report(analysis: Analysis, name: str, figures: Sequence[FigureFile] = (),
                  figures_skipped: Sequence[tuple[str, str]] = (), out_dir: Path | None = None) -> str:
    """``report.md``: verdicts, headline gains, diminishing returns, capacity, ladder, figures."""
    st = analysis.settings
    col = analysis.collection
    L = [f"# Scaling fit: {name}", ""]
    L.append(f"Sweeps: {', '.join(f'`{d}`' for d in col.sweep_dirs)}. {len(col.jobs)} jobs used, "
             f"{len(col.skipped)} skipped. Parameters: {st.params.replace('_', '-')}. Intervals: "
             f"{st.level * 100:g}% paired bootstrap over test examples (and seeds), {st.n_boot} replicates.")
    L.append("")
    if col.skipped:
        L.append("Skipped jobs:")
        L += [f"- `{s.path}`: {s.reason}" for s in col.skipped]
        L.append("")
    L += ["## Verdicts", ""]
    if not analysis.verdicts:
        L += ["No measured fine-tuned series: nothing to judge.", ""]
    for v in analysis.verdicts:
        L.append(f"### {v.title} — {v.series}")
        L.append("")
        if v.status != "evaluated":
            L.append(f"**{v.status}**")
        else:
            L.append(f"Rung: `{v.model}` ({_fmt_n(v.params)}). **Verdict: {v.verdict}.**")
        L.append("")
        if v.checks:
            L.append("| metric | measured (%) | threshold (%) | result | interval clear of threshold |")
            L.append("|---|---|---|---|---|")
            for c in v.checks:
                name_ = c.metric if c.tier == "overall" else f"{c.metric} ({c.tier})"
                res = "-" if c.passed is None else ("pass" if c.passed else "fail")
                clear = "-" if c.ci_above is None else ("yes" if c.ci_above else "no")
                L.append(f"| {name_} | {pct(c.value, c.ci)} | > {c.threshold * 100:g} | {res} | {clear} |")
            L.append("")
    L += ["## Gain per 100M parameters (headline)", ""]
    m = st.target_metric
    for s in analysis.scores:
        lines = []
        for t in st.tiers:
            c = analysis.curve(s.label, m, t)
            if c is None or not c.gains:
                continue
            parts = []
            for g in c.gains:
                if g.gain is None:
                    parts.append(f"{g.from_key} → {g.to_key}: n/a ({g.status})")
                    continue
                ci = f" [{g.ci[0] * 100:+.1f}, {g.ci[1] * 100:+.1f}]" if g.ci else ""
                parts.append(f"{g.from_key} → {g.to_key}: {g.gain * 100:+.1f}{ci}")
            lines.append(f"- {t}: " + "; ".join(parts))
        if lines:
            L.append(f"**{s.label}** ({m}, points per 100M):")
            L += lines
            L.append("")
    L += ["## Where returns diminish", "",
          f"Threshold: {st.threshold_per_100m * 100:g} points per 100M parameters ({m}).", ""]
    for c in analysis.curves:
        if c.metric == m:
            L.append(f"- {c.series}, {c.tier}: {describe_diminishing(c.diminishing)}")
    L += ["", "## Capacity thresholds", ""]
    for cap in analysis.capacity:
        r = cap.result
        where = f"`{r.key}` ({_fmt_n(r.n)}, {pct(r.score)}%)" if r.status == "reached" else "not reached"
        L.append(f"- {cap.series}, {cap.tier}, {m} ≥ {r.target * 100:g}%: {where}")
    L += ["", "## Model ladder", "", ladder_table(analysis).to_markdown(), recommendation_table(analysis).to_markdown()]
    L += ["## Fits", ""]
    for c in analysis.curves:
        if c.metric != m:
            continue
        ll, lg = c.loglinear, c.logistic
        if ll.ok:
            ci = (f" [{ll.ci_gain_per_doubling[0] * 100:+.1f}, {ll.ci_gain_per_doubling[1] * 100:+.1f}]"
                  if ll.ci_gain_per_doubling else "")
            loo = f", leave-one-size-out RMSE {ll.loo_rmse * 100:.1f} pts" if ll.loo_rmse is not None else ""
            txt = f"log-linear {ll.b * 100:+.1f} pts/decade, {ll.gain_per_doubling * 100:+.1f}{ci} pts/doubling{loo}"
        else:
            txt = f"log-linear {ll.status}"
        txt += f"; logistic {'ok (N50 ' + _fmt_n(lg.n50) + ')' if lg.ok else lg.status}"
        L.append(f"- {c.series}, {c.tier}: {txt}")
    L += ["", "## Figures", ""]
    for f in figures:
        files = ", ".join(f"`{p.relative_to(out_dir) if out_dir else p}`" for p in f.paths)
        L.append(f"- {f.title}: {files}")
    for n, r in figures_skipped:
        L.append(f"- {n}: skipped ({r})")
    L += ["", "Tables (Markdown and LaTeX) are in `tables/`; every number is in `fit.json`.", ""]
    notes = list(col.notes) + [n for s in analysis.scores for n in s.notes]
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(L)


# ----------------------------------------------------------------------------- W&B


def wandb_project(run: FitRun, project: str | None) -> str:
    """``project`` when given, else the project the sweep's jobs logged to
    (``config.logger.wandb.project``), else ``$WANDB_PROJECT`` or ``scaling-edgejson``."""
    if project:
        return project
    for j in run.analysis.collection.jobs:
        p = ((j.config.get("logger") or {}).get("wandb") or {}).get("project") if isinstance(j.config, dict) else None
        if isinstance(p, str) and p:
            return p
    return os.environ.get("WANDB_PROJECT", "scaling-edgejson")


def log_to_wandb(run: FitRun, project: str | None = None, entity: str | None = None, log: Log = _stdout) -> None:
    """Log figures, tables and headline numbers to the sweep's W&B group as a ``fit`` job
    (offline when no API key is configured)."""
    import wandb

    group = run.analysis.collection.group or run.name
    mode = None if os.environ.get("WANDB_API_KEY") else "offline"
    wrun = wandb.init(project=wandb_project(run, project), entity=entity or None, group=group, job_type="fit",
                      name=f"fit-{run.name}", dir=str(run.out_dir), mode=mode,
                      config={"fit": settings_dict(run.analysis.settings)})
    try:
        for f in run.figures:
            png = run.png(f.name)
            if png is not None:
                wrun.log({f"figures/{f.name}": wandb.Image(str(png), caption=f.title)})
        for t in run.tables:
            wrun.log({f"tables/{t.name}": wandb.Table(columns=list(t.header), data=[list(r) for r in t.rows])})
        for c in run.analysis.curves:
            for g in c.gains:
                if g.gain is not None:
                    wrun.summary[f"gain_per_100m/{c.series}/{c.metric}/{c.tier}/{g.from_key}->{g.to_key}"] = g.gain
        for v in run.analysis.verdicts:
            wrun.summary[f"verdict/{v.track}/{v.series}"] = v.verdict or v.status
        log(f"wandb: logged to group {group!r}")
    finally:
        wandb.finish()


__all__ = ["FitRun", "run_fit", "load_config", "fit_document", "render_report", "log_to_wandb",
           "sweep_dirs_from", "default_name", "reference_files", "FitError"]

"""Run the whole analysis from a config and write its outputs (``python -m scaling.fit``).

``outputs/fit/<name>/`` receives::

    fit.json            every number (top-level "gain_per_100m" is the headline): scaling.fit.document
    report.md           verdicts, ladder, gains, thresholds, fits, figure list: scaling.fit.report
    figures/<fig>.pdf   and .png: see scaling.fit.figures.FIGURES
    tables/<table>.md   and .tex: see scaling.fit.tables.all_tables

and, with ``wandb.enabled``, the figures, tables and headline numbers go to the sweep's W&B group.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


from scaling.typed_config import to_plain
from scaling.fit.analysis import Analysis, analyse, fit_summary
from scaling.fit.trend import trend_checks
from scaling.fit.collect import Log, collect, load_reference, newest_sweep
from scaling.fit.config import Settings, anchor_paths, conf_dir
from scaling.fit.errors import FitError
from scaling.fit.figures import FigureFile, make_figures
from scaling.fit.tables import Table, all_tables, write_tables
from scaling.results import atomic_write_json, atomic_write_text
from scaling.fit.document import fit_document, settings_dict
from scaling.fit.report import render_report



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


def load_config(overrides: Sequence[str] = (), root: Path | None = None, fallback_sweep: Path | None = None) -> dict:
    """Compose ``conf/fit.yaml`` with Hydra-style ``overrides`` (e.g. ``["sweep_dir=..."]``)
    and return it as a plain dict (for notebooks and scripts; the CLI uses ``@hydra.main``).

    ``root``: relative paths are taken relative to it, not the working directory;
    ``fallback_sweep``: the sweep to fit when none is given and none exists (see
    :func:`scaling.fit.config.anchor_paths`; the notebook passes the project root and the
    committed reference ladder)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(config_name="fit", overrides=list(overrides))
    plain = to_plain(cfg)
    return anchor_paths(plain, root, fallback_sweep) if root is not None else plain


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
    for check in trend_checks(analysis):
        (log if check.holds else warn)(check.line())
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


__all__ = ["FitRun", "run_fit", "load_config", "log_to_wandb", "sweep_dirs_from", "default_name", "reference_files",
           "FitError"]

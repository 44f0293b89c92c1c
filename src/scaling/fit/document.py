"""``fit.json``: every number of an analysis as one JSON-safe document."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from scaling.fit.analysis import Analysis, headline_series
from scaling.fit.trend import trend_checks
from scaling.fit.collect import Collection
from scaling.fit.config import Settings
from scaling.fit.figures import FigureFile
from scaling.fit.tables import Table
from scaling.fit.report import answer


FIT_VERSION = 1


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
                    "rung": m.rung, "sources": list(m.jobs)} for m in s.models],
        "scores": scores,
        "by_schema": {metric: {sid: {"tier": s.schema_tiers.get(sid),
                                     **{m.key: v[i] for i, m in enumerate(s.models)}}
                               for sid, v in per.items()} for metric, per in s.by_schema.items()},
        "notes": list(s.notes),
        "thin": list(s.thin),
    }


def _headline_doc(analysis: Analysis) -> dict:
    head = headline_series(analysis)
    return {"series": head.label if head is not None else None, "metric": analysis.settings.headline_metric,
            "answer": [x for x in answer(analysis, head) if x]}


def settings_dict(st: Settings) -> dict:
    return {"params": st.params, "metrics": list(st.metrics), "tiers": list(st.tiers),
            "threshold_per_100m": st.threshold_per_100m, "targets": list(st.targets),
            "target_metric": st.target_metric, "headline_metric": st.headline_metric,
            "headline_series": st.headline_series, "recommend_target": st.recommend_target,
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
        "headline": _headline_doc(analysis),
        "settings": settings_dict(st),
        "verdicts": [v.to_dict() for v in analysis.verdicts],
        "trend_checks": [c.to_dict() for c in trend_checks(analysis)],
        "diminishing_returns": {c.series: {} for c in analysis.curves},
        "capacity_thresholds": [{"series": c.series, "metric": c.metric, "tier": c.tier, **c.result.to_dict()}
                                for c in analysis.capacity],
        "ladder": [r.to_dict() for r in analysis.ladder],
        "recommendations": [r.to_dict() for r in analysis.recommendations],
        "series": [_series_doc(s) for s in analysis.scores],
        "curves": [c.to_dict() for c in analysis.curves],
        "data_axis": [d.to_dict() for d in analysis.data],
        "ceiling": {t: c.to_dict() for t, c in analysis.ceilings.items()},
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

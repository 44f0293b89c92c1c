"""Analysis settings: validated from ``conf/fit.yaml`` (or any mapping with its keys)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling.data.io import TIERS
from scaling.fit.collect import METRICS, OVERALL, _metric_column
from scaling.fit.errors import FitError
from scaling.metrics import HEADLINE_METRICS
from scaling import paths
from scaling.paths import CONF_ENV


def conf_dir() -> Path:
    """The repository's ``conf/`` folder (:func:`scaling.paths.conf_dir`: ``$SCALING_CONF_DIR``
    when set, else the ``conf`` folder beside ``src/``), checked to hold ``fit.yaml``."""
    path = paths.conf_dir()
    if not (path / "fit.yaml").is_file():
        raise FitError(f"no fit.yaml in the config folder; set {CONF_ENV} to the repository's conf/ folder",
                       file=path)
    return path


REFERENCE_LADDER = Path("outputs") / "reference" / "edgejson_v3_depth"
"""The committed depth ladder (relative to the project root): a fresh clone's one sweep."""

PATH_SETTINGS = ("sweep_dir", "sweep_dirs", "multirun_root", "out_root", "reference")
"""The settings of ``fit.yaml`` that are paths (relative ones: to the working directory)."""


def project_root() -> Path:
    """The folder holding ``conf/`` (the repository root), where ``outputs/`` lies."""
    return conf_dir().parent


def anchor_paths(cfg: dict, root: Path, fallback_sweep: Path | None = None) -> dict:
    """``cfg`` with its relative paths (:data:`PATH_SETTINGS`) taken relative to ``root``
    instead of the working directory (a notebook's kernel starts in ``notebooks/``), and, when
    it names no sweep and ``multirun_root`` holds none, ``fallback_sweep`` (relative to ``root``)."""
    root = Path(root)

    def at_root(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [at_root(v) for v in value]
        if value in (None, "") or Path(str(value)).is_absolute():
            return value
        return str(root / str(value))

    out = {**cfg, **{key: at_root(cfg.get(key)) for key in PATH_SETTINGS if key in cfg}}
    if fallback_sweep is not None and not out.get("sweep_dir") and not out.get("sweep_dirs"):
        from scaling.fit.collect import newest_sweep  # here: only this path needs it

        try:
            newest_sweep(out.get("multirun_root") or root / "outputs" / "multirun")
        except FitError:
            out["sweep_dir"] = at_root(str(fallback_sweep))
    return out


@dataclass(frozen=True)
class Check:
    metric: str
    tier: str
    threshold: float

    @property
    def name(self) -> str:
        return self.metric if self.tier == OVERALL else f"{self.metric}_{self.tier}"


@dataclass(frozen=True)
class Track:
    """A success criterion evaluated on one rung (the model nearest ``params``, or ``model``).

    Every check passes when the measured value is strictly above its threshold."""

    name: str
    title: str
    params: float
    model: str | None
    checks: tuple[Check, ...]
    pass_verdict: str
    fail_verdict: str


@dataclass(frozen=True)
class Settings:
    params: str = "total"
    metrics: tuple[str, ...] = HEADLINE_METRICS
    tiers: tuple[str, ...] = (OVERALL,) + TIERS
    threshold_per_100m: float = 0.05
    targets: tuple[float, ...] = (0.2, 0.5)
    target_metric: str = "json_exact"
    headline_metric: str = "json_exact"
    """The metric of the report's headline: gains per 100M, diminishing returns, the answer."""
    headline_series: str | None = None
    """The series of the headline table (a label); None: the measured fine-tuned series with
    the most sizes (then the most jobs)."""
    recommend_target: float = 0.5
    n_boot: int = 2000
    n_boot_fit: int = 200
    level: float = 0.95
    seed: int = 0
    min_sizes_curve: int = 4
    rung_tolerance: float = 0.25
    tracks: tuple[Track, ...] = ()
    rising: tuple[tuple[str, str], ...] = ()
    """Scores expected to rise with every step up the ladder, as ``(metric, tier)``: each is
    checked on every measured series (:mod:`scaling.fit.trend`) and the verdict printed and
    reported. From ``rising: [field_f1, field_f1_simple]``."""

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Settings":
        """Validate the analysis keys of a fit config; raises :class:`FitError` naming the key."""
        d = cls()
        params = cfg.get("params", d.params)
        if params not in ("total", "non_embedding"):
            raise FitError(f"expected 'total' or 'non_embedding', got {params!r}", field="params")
        metrics = tuple(cfg.get("metrics", d.metrics))
        for m in metrics:
            if m not in METRICS:
                raise FitError(f"unknown metric {m!r} (known: {', '.join(METRICS)})", field="metrics")
        if not metrics:
            raise FitError("at least one metric is needed", field="metrics")
        tiers = tuple(cfg.get("tiers", d.tiers))
        if not tiers:
            raise FitError("at least one tier is needed", field="tiers")
        target_metric = cfg.get("target_metric", d.target_metric)
        if target_metric not in metrics:
            raise FitError(f"{target_metric!r} is not among metrics {list(metrics)}", field="target_metric")
        headline_metric = cfg.get("headline_metric", d.headline_metric)
        if headline_metric not in metrics:
            raise FitError(f"{headline_metric!r} is not among metrics {list(metrics)}", field="headline_metric")
        headline_series = cfg.get("headline_series", d.headline_series)
        if headline_series is not None and not isinstance(headline_series, str):
            raise FitError(f"expected a series label or null, got {headline_series!r}", field="headline_series")
        verdicts = cfg.get("verdicts") or {}
        tracks = []
        for name in sorted(k for k in verdicts if k.startswith("track")):
            tracks.append(_track(name, verdicts[name], metrics, tiers))
        return cls(
            params=params, metrics=metrics, tiers=tiers,
            threshold_per_100m=_num(cfg, "threshold_per_100m", d.threshold_per_100m, 0.0, None),
            targets=tuple(_unit(v, "targets") for v in cfg.get("targets", d.targets)),
            target_metric=target_metric, headline_metric=headline_metric, headline_series=headline_series,
            recommend_target=_unit(cfg.get("recommend_target", d.recommend_target), "recommend_target"),
            n_boot=int(_num(cfg, "n_boot", d.n_boot, 1, None)),
            n_boot_fit=int(_num(cfg, "n_boot_fit", d.n_boot_fit, 0, None)),
            level=_num(cfg, "ci", d.level, 0.5, 0.999),
            seed=int(_num(cfg, "seed", d.seed, 0, None)),
            min_sizes_curve=int(_num(cfg, "min_sizes_curve", d.min_sizes_curve, 4, None)),
            rung_tolerance=_num(verdicts, "rung_tolerance", d.rung_tolerance, 0.0, None),
            tracks=tuple(tracks),
            rising=_rising(cfg.get("rising") or (), metrics, tiers),
        )


def _num(cfg: Mapping[str, Any], key: str, default: float, lo: float | None, hi: float | None) -> float:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FitError(f"expected a number, got {v!r}", field=key)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FitError(f"{v} is outside [{lo}, {hi if hi is not None else 'inf'}]", field=key)
    return float(v)


def _unit(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
        raise FitError(f"expected a fraction in [0, 1], got {v!r}", field=key)
    return float(v)


def _rising(columns: Any, metrics: Sequence[str], tiers: Sequence[str]) -> tuple[tuple[str, str], ...]:
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise FitError(f"expected a list such as [field_f1, field_f1_simple], got {columns!r}", field="rising")
    out = []
    for col in columns:
        mt = _metric_column(str(col), metrics, [x for x in tiers if x != OVERALL])
        if mt is None:
            raise FitError(f"unknown metric/tier {col!r} (metric must be one of {list(metrics)}, tier one of "
                           f"{[x for x in tiers if x != OVERALL]})", field="rising")
        out.append(mt)
    return tuple(out)


def _track(name: str, t: Mapping[str, Any], metrics: Sequence[str], tiers: Sequence[str]) -> Track:
    key = f"verdicts.{name}"
    if not isinstance(t, Mapping):
        raise FitError("expected a mapping", field=key)
    checks = []
    for col, thr in (t.get("thresholds") or {}).items():
        mt = _metric_column(col, metrics, [x for x in tiers if x != OVERALL])
        if mt is None:
            raise FitError(f"unknown metric/tier {col!r} (metric must be one of {list(metrics)})",
                           field=f"{key}.thresholds")
        checks.append(Check(mt[0], mt[1], _unit(thr, f"{key}.thresholds.{col}")))
    if not checks:
        raise FitError("no thresholds", field=f"{key}.thresholds")
    params = t.get("params")
    if isinstance(params, bool) or not isinstance(params, (int, float)) or params <= 0:
        raise FitError(f"expected a positive parameter count, got {params!r}", field=f"{key}.params")
    model = t.get("model")
    return Track(name=name, title=str(t.get("title") or name), params=float(params),
                 model=str(model) if model else None, checks=tuple(checks),
                 pass_verdict=str(t.get("pass", "passed")), fail_verdict=str(t.get("fail", "failed")))

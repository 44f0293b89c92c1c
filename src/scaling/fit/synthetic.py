"""Synthetic sweeps with known truth, for tests, the notebook and demos.

Each model has a known probability of an exact answer per tier. Outcomes of one example
are correlated across models and seeds through a Gaussian copula: example i has a shared
difficulty ``z_i ~ N(0, 1)``; model m, seed s sees
``u = Phi(sqrt(rho) z_i + sqrt(1 - rho) e_msi)`` (uniform on [0, 1]) and is exact when
``u < p_m[tier]``. So each model's expected score is exactly ``p_m[tier]`` while harder
examples are missed by every model, as in real evaluations — which is what the paired
bootstrap is for. Other metrics are monotone functions of the same ``u``:
``schema_compliance = u < min(1, p + 0.3)``, ``compliance_keys_types = u < min(1, p + 0.4)``,
``field_f1 = 1`` when exact else ``0.9 (1 - u)``, ``field_f1_toplevel = min(1, field_f1 + 0.05)``.

The folders follow :mod:`scaling.results` exactly (``results.json`` + ``predictions.jsonl``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtr

from scaling.data.io import TIERS
from scaling.fit.collect import METRICS, OVERALL
from scaling.fit.scores import category_of
from scaling.results import PREDICTIONS_FILE, RESULTS_FILE, RESULTS_VERSION, atomic_write_json, write_jsonl
#: Test-set shape of EdgeJSON v3 (by schema folder).
EDGEJSON_TEST = {"simple": 76, "medium": 57, "complex": 25}


@dataclass(frozen=True)
class SyntheticModel:
    key: str
    params_total: int
    p: Mapping[str, float]                    # tier -> P(json_exact)
    params_non_embedding: int | None = None   # default: 80% of total
    family: str = "synthetic"

    @property
    def non_embedding(self) -> int:
        return self.params_non_embedding or int(round(self.params_total * 0.8))


def loglinear_model(key: str, params_total: int, a: Mapping[str, float], b: Mapping[str, float]) -> SyntheticModel:
    """A model whose per-tier probability follows ``a[t] + b[t] * log10(N)`` (clipped to [0, 1])."""
    lg = math.log10(params_total)
    return SyntheticModel(key, params_total, {t: min(1.0, max(0.0, a[t] + b[t] * lg)) for t in a})


@dataclass(frozen=True)
class Examples:
    ids: tuple[str, ...]
    tiers: tuple[str, ...]
    schema_ids: tuple[str, ...]
    z: np.ndarray = field(repr=False)         # shared difficulty per example


def make_examples(n_per_tier: Mapping[str, int] = EDGEJSON_TEST, schemas_per_tier: int = 3,
                  rng: np.random.Generator | int = 0) -> Examples:
    """Examples ``<tier>-<k>`` spread round-robin over ``schemas_per_tier`` schemas per tier."""
    rng = np.random.default_rng(rng)
    ids, tiers, schemas = [], [], []
    for t, n in n_per_tier.items():
        for k in range(n):
            ids.append(f"{t}-{k:04d}")
            tiers.append(t)
            schemas.append(f"{t}_schema_{k % schemas_per_tier}")
    return Examples(tuple(ids), tuple(tiers), tuple(schemas), rng.standard_normal(len(ids)))


def simulate(model: SyntheticModel, examples: Examples, seed: int, rng: np.random.Generator,
             correlation: float = 0.5) -> dict[str, np.ndarray]:
    """Per-example metric values of one model/seed (see the module docstring)."""
    e = rng.standard_normal(len(examples.ids))
    u = ndtr(math.sqrt(correlation) * examples.z + math.sqrt(1.0 - correlation) * e)
    p = np.array([model.p[t] for t in examples.tiers])
    exact = u < p
    f1 = np.where(exact, 1.0, 0.9 * (1.0 - u))
    return {
        "json_exact": exact.astype(float),
        "field_f1": f1,
        "field_f1_toplevel": np.minimum(1.0, f1 + 0.05),
        "schema_compliance": (u < np.minimum(1.0, p + 0.3)).astype(float),
        "compliance_keys_types": (u < np.minimum(1.0, p + 0.4)).astype(float),
    }


def _aggregate(values: Mapping[str, np.ndarray], mask: np.ndarray) -> dict:
    n = int(mask.sum())
    out: dict = {"n": n}
    ci = {}
    for m in METRICS:
        v = values[m][mask]
        mean = float(v.mean())
        half = 1.96 * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        out[m] = mean
        ci[m] = [max(0.0, mean - half), min(1.0, mean + half)]
    out["ci"] = ci
    return out


def write_job(job_dir: str | Path, model: SyntheticModel, examples: Examples, values: Mapping[str, np.ndarray],
              *, seed: int, method: str = "full", decode_mode: str = "greedy", group: str = "synthetic",
              with_predictions: bool = True, train_fraction: float = 1.0, n_train: int | None = None,
              depth: Mapping | None = None, grow: Mapping | None = None) -> Path:
    """Write ``results.json`` (+ ``predictions.jsonl``) of one completed job; returns the results path.
    ``train_fraction``/``n_train`` go where a real job records them (``config.data`` and
    ``data``); ``depth`` is a ``model.depth`` record (see :mod:`scaling.models.depth`), ``grow`` a
    ``model.grow`` record (:mod:`scaling.models.grow`), its ``train`` also in ``config.model.grow``."""
    job_dir = Path(job_dir)
    tiers = np.asarray(examples.tiers)
    schemas = np.asarray(examples.schema_ids)
    by_tier = {t: _aggregate(values, tiers == t) for t in TIERS if (tiers == t).any()}
    by_schema = {}
    for sid in sorted(set(examples.schema_ids)):
        agg = _aggregate(values, schemas == sid)
        agg["tier"] = examples.tiers[examples.schema_ids.index(sid)]
        by_schema[sid] = agg
    results = {
        "results_version": RESULTS_VERSION, "status": "completed", "error": None,
        "run_name": f"{model.key}-{method}-s{seed}", "group": group, "job_dir": str(job_dir),
        "model": {"key": model.key, "source": "local", "hub_id": None, "revision": None, "family": model.family,
                  "depth": dict(depth) if depth is not None else None,
                  "grow": dict(grow) if grow is not None else None},
        "params": {"total": model.params_total, "non_embedding": model.non_embedding,
                   "trainable": model.params_total if method != "none" else 0},
        "category": category_of(model.params_total),
        "finetune": {"method": method},
        "decode": {"mode": decode_mode, "max_new_tokens": 512},
        "data": {"name": "synthetic", "version": "v0", "n_train": n_train, "train_fraction": train_fraction,
                 "n_test": len(examples.ids), "files": {}},
        "train": None,
        "eval": {"wall_s": 1.0, "generated_tokens": 0, "tokens_per_s": 0.0, "latency_s_per_example": 0.0,
                 "n": len(examples.ids)},
        "metrics": {"overall": _aggregate(values, np.ones(len(tiers), bool)), "by_tier": by_tier,
                    "by_schema": by_schema},
        "config": {"synthetic": True, "p": dict(model.p), "finetune": {"method": method},
                   "data": {"train_fraction": train_fraction},
                   **({"model": {"grow": {"train": grow.get("train", "all")}}} if grow is not None else {})},
        "config_hash": f"synthetic-{model.key}-{method}-{decode_mode}-{seed}-{train_fraction}"
                       + (f"-{grow.get('train', 'all')}" if grow is not None else ""),
        "seed": seed, "versions": {}, "created_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-01T00:00:01+00:00",
    }
    atomic_write_json(job_dir / RESULTS_FILE, results)
    if with_predictions:
        rows = []
        for i, ex in enumerate(examples.ids):
            row = {"id": ex, "schema_id": examples.schema_ids[i], "tier": examples.tiers[i], "output": "",
                   "status": "ok", "parsed": None}
            for m in METRICS:
                v = float(values[m][i])
                row[m] = bool(v) if m in ("json_exact", "schema_compliance", "compliance_keys_types") else v
            rows.append(row)
        write_jsonl(job_dir / PREDICTIONS_FILE, rows)
    return job_dir / RESULTS_FILE


def write_failed_job(job_dir: str | Path, model_key: str = "broken", group: str = "synthetic") -> Path:
    """A job that crashed: ``status: failed`` with its error."""
    path = Path(job_dir) / RESULTS_FILE
    atomic_write_json(path, {
        "results_version": RESULTS_VERSION, "status": "failed",
        "error": {"type": "RuntimeError", "message": "CUDA out of memory", "traceback": "..."},
        "run_name": f"{model_key}-s0", "group": group, "job_dir": str(job_dir),
        "model": {"key": model_key, "source": "hub", "hub_id": None, "revision": None, "family": "x"},
        "seed": 0,
    })
    return path


def write_corrupt_job(job_dir: str | Path) -> Path:
    """A ``results.json`` cut off mid-write (what a non-atomic writer leaves behind)."""
    path = Path(job_dir) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"results_version": 1, "status": "compl', encoding="utf-8")
    return path


#: Three rungs shaped like the study (135M / 200M / 360M), fine-tuned.
DEFAULT_LADDER = (
    SyntheticModel("smol-135m", 134_515_008, {"simple": 0.40, "medium": 0.20, "complex": 0.02}, 106_203_456),
    SyntheticModel("mini-200m", 200_000_000, {"simple": 0.55, "medium": 0.35, "complex": 0.06}, 160_000_000),
    SyntheticModel("smol-360m", 361_821_120, {"simple": 0.75, "medium": 0.55, "complex": 0.12}, 314_635_200),
)
#: The same models without fine-tuning.
DEFAULT_BASE = (
    SyntheticModel("smol-135m", 134_515_008, {"simple": 0.04, "medium": 0.01, "complex": 0.0}, 106_203_456),
    SyntheticModel("smol-360m", 361_821_120, {"simple": 0.10, "medium": 0.03, "complex": 0.0}, 314_635_200),
)


def make_sweep(root: str | Path, models: Sequence[SyntheticModel] = DEFAULT_LADDER, *, seeds: Sequence[int] = (0,),
               base: Sequence[SyntheticModel] = (), n_per_tier: Mapping[str, int] = EDGEJSON_TEST,
               method: str = "full", decode_mode: str = "greedy", correlation: float = 0.5,
               n_failed: int = 0, n_corrupt: int = 0, with_predictions: bool = True, seed: int = 0,
               seeds_for: Mapping[str, Sequence[int]] | None = None,
               fractions: Sequence[tuple[SyntheticModel, float, int]] = ()) -> Path:
    """Write a sweep folder ``root`` with one job folder per (model, seed) of ``models``
    (fine-tuned with ``method``; ``seeds_for[key]`` replaces ``seeds`` for one model) and
    of ``base`` (``method: none``, seed 0), one job per ``(model, train_fraction, n_train)``
    of ``fractions`` (the data axis, seed 0), plus ``n_failed`` failed and ``n_corrupt``
    corrupt jobs. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    examples = make_examples(n_per_tier, rng=rng)
    k = 0
    for model in models:
        for s in (seeds_for or {}).get(model.key, seeds):
            write_job(root / f"{k:02d}_{model.key}_{method}_s{s}", model, examples,
                      simulate(model, examples, s, rng, correlation), seed=s, method=method,
                      decode_mode=decode_mode, group=root.name, with_predictions=with_predictions)
            k += 1
    for model, fraction, n_train in fractions:
        write_job(root / f"{k:02d}_{model.key}_{method}_f{fraction:g}", model, examples,
                  simulate(model, examples, 0, rng, correlation), seed=0, method=method, decode_mode=decode_mode,
                  group=root.name, with_predictions=with_predictions, train_fraction=fraction, n_train=n_train)
        k += 1
    for model in base:
        write_job(root / f"{k:02d}_{model.key}_none_s0", model, examples, simulate(model, examples, 0, rng, correlation),
                  seed=0, method="none", decode_mode=decode_mode, group=root.name, with_predictions=with_predictions)
        k += 1
    for i in range(n_failed):
        write_failed_job(root / f"{k:02d}_failed_{i}", group=root.name)
        k += 1
    for i in range(n_corrupt):
        write_corrupt_job(root / f"{k:02d}_corrupt_{i}")
        k += 1
    return root


def true_scores(model: SyntheticModel, tiers: Sequence[str] = (OVERALL,) + TIERS,
                n_per_tier: Mapping[str, int] = EDGEJSON_TEST) -> dict[str, float]:
    """Expected ``json_exact`` per tier; ``overall`` weights tiers by their example counts."""
    total = sum(n_per_tier.values())
    out = {}
    for t in tiers:
        out[t] = (sum(model.p[x] * n for x, n in n_per_tier.items()) / total) if t == OVERALL else model.p[t]
    return out


__all__ = ["SyntheticModel", "Examples", "loglinear_model", "make_examples", "simulate", "write_job",
           "write_failed_job", "write_corrupt_job", "make_sweep", "true_scores", "DEFAULT_LADDER",
           "DEFAULT_BASE", "EDGEJSON_TEST"]

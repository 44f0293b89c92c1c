"""Versions and the ladder: ``outputs/models/LADDER.md`` and ``ladder.json``, regenerated from
every version folder's ``export.json`` (never edited by hand, never appended to)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from scaling.complex_plus import COMPLEX_PLUS
from scaling.data.io import TIERS
from scaling.metrics import metric_interval
from scaling.results import atomic_write_json, atomic_write_text, read_json

MANIFEST = "export.json"
LADDER_MD = "LADDER.md"
LADDER_JSON = "ladder.json"

_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,95}$")


def parse_version(text: str) -> str:
    """``1.0.0`` / ``v1.0.0`` / ``1.1.0-rc.1`` -> the version without ``v``; anything else raises."""
    m = _SEMVER.match(str(text).strip())
    if not m:
        raise ValueError(f"--version {text!r}: expected a semantic version MAJOR.MINOR.PATCH (e.g. 1.0.0, 1.1.0-rc.1)")
    return str(text).strip().lstrip("v")


def version_key(version: str) -> tuple:
    """Semantic-version order: numbers numerically; a pre-release sorts before its release."""
    m = _SEMVER.match(version)
    if not m:
        return (float("inf"),)
    major, minor, patch, pre = m.groups()
    pre_key: tuple = (1,) if pre is None else (0, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")])
    return (int(major), int(minor), int(patch), pre_key)


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(f"--name {name!r}: lower-case letters, digits, '.', '_' and '-' only (e.g. mlm-135m-edgejson)")
    return name


def default_name(category: str, total_params: int, data_name: str) -> str:
    """``mlm-135m-edgejson``: category, measured size and data, as the study names its rungs."""
    size = f"{total_params / 1e6:.0f}m" if total_params >= 1e6 else f"{total_params / 1e3:.0f}k"
    return f"{category.lower()}-{size}-{data_name.lower()}"


def entries(models_root: str | Path) -> list[dict]:
    """One entry per exported version, smallest rung first, versions in order."""
    out = []
    for path in sorted(Path(models_root).glob(f"*/v*/{MANIFEST}")):
        m = read_json(path)
        overall = m["metrics"]["overall"]
        measured = {}
        for qtype, run in (m.get("measured") or {}).items():
            s = run["stats"]
            ident = s.get("identical_to_reference") or {}
            measured[qtype] = {"n": s["n"], "json_exact": run["metrics"]["overall"]["json_exact"],
                               "identical_share": ident.get("share"), "tokens_per_s": s["tokens_per_s"],
                               "ttft_s_median": s["ttft_s"]["median"], "peak_rss_mb": s["peak_rss_mb"]}
            if run.get(COMPLEX_PLUS):
                measured[qtype]["complex_plus_json_exact"] = run[COMPLEX_PLUS]["metrics"]["json_exact"]
        plus = m["metrics"].get(COMPLEX_PLUS)
        out.append({
            "name": m["name"],
            "version": m["version"],
            "path": str(path.parent.relative_to(Path(models_root))),
            "created_at": m["created_at"],
            "params_total": m["params"]["total"],
            "params_non_embedding": m["params"]["non_embedding"],
            "category": m["params"]["category"],
            "base_model": m["model"].get("base_model"),
            "data": f"{m['data']['name']} {m['data']['version']}",
            "n_eval": overall["n"],
            "json_exact": overall["json_exact"],
            "json_exact_ci": list(metric_interval(overall, "json_exact") or overall["ci"]["json_exact"]),
            "field_f1": overall["field_f1"],
            "schema_compliance": overall["schema_compliance"],
            "by_tier_json_exact": {t: v["json_exact"] for t, v in m["metrics"]["by_tier"].items()},
            # complex+ (scaling.complex_plus): n and JSONExact with its interval, None where not scored
            "complex_plus": None if not plus else {
                "n": plus["n"], "json_exact": plus["json_exact"],
                "json_exact_ci": list(metric_interval(plus, "json_exact") or plus["ci"]["json_exact"])},
            "fails_on_tiers": [e["name"] for e in m["limits"]["by_tier"]["fails"]],
            "gguf": {q: {"file": g["file"], "bytes": g["bytes"]} for q, g in (m.get("gguf") or {}).items()},
            "measured": measured,
            "config_hash": m["source"]["config_hash"],
        })
    out.sort(key=lambda e: (e["params_total"], e["name"], version_key(e["version"])))
    return out


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def render_ladder(items: list[dict]) -> str:
    lines = ["# The model ladder", "",
             "Every exported rung and version (`python -m scaling.export`), smallest first. Generated from "
             "each version's `export.json`; do not edit. Weights are not in git: each version's "
             "`SHA256SUMS` identifies them.", "",
             "| model | version | parameters | category | JSONExact % [95% CI] | " + " | ".join(TIERS) + " | complex+ "
             "% [95% CI] | Field F1 | compliance % | fails on | GGUF | llama.cpp (JSONExact %, identical, tokens/s, peak "
             "RSS; complex+ JSONExact %) | source config |",
             "|---|---|---:|---|---|" + "---:|" * len(TIERS) + "---|---:|---:|---|---|---|---|"]
    for e in items:
        lo, hi = e["json_exact_ci"]
        tiers = [_pct(e["by_tier_json_exact"].get(t)) for t in TIERS]
        plus = e.get("complex_plus")
        plus_cell = "–" if not plus else (f"{_pct(plus['json_exact'])} [{_pct(plus['json_exact_ci'][0])}, "
                                          f"{_pct(plus['json_exact_ci'][1])}] (n={plus['n']})")
        gguf = ", ".join(f"{q.upper()} {g['bytes'] / 2**20:.0f} MiB" for q, g in e["gguf"].items()) or "–"
        measured = "; ".join(
            f"{q.upper()}: {_pct(v['json_exact'])}, {'–' if v['identical_share'] is None else _pct(v['identical_share']) + '%'}"
            f", {v['tokens_per_s']}, {v['peak_rss_mb']:.0f} MB" + (f" (n={v['n']})" if v["n"] != e["n_eval"] else "")
            + (f", complex+ {_pct(v['complex_plus_json_exact'])}" if v.get("complex_plus_json_exact") is not None else "")
            for q, v in e["measured"].items()) or "–"
        lines.append(
            f"| [{e['name']}]({e['path']}/README.md) | {e['version']} | {e['params_total'] / 1e6:.1f}M | {e['category']} "
            f"| {_pct(e['json_exact'])} [{_pct(lo)}, {_pct(hi)}] | {' | '.join(tiers)} | {plus_cell} | {e['field_f1']:.3f} "
            f"| {_pct(e['schema_compliance'])} | {', '.join(e['fails_on_tiers']) or '–'} | {gguf} | {measured} "
            f"| `{e['config_hash']}` |")
    if not items:
        lines.append("| (no exported version yet) |" + " |" * (11 + len(TIERS)))
    return "\n".join(lines) + "\n"


def write_ladder(models_root: str | Path) -> tuple[Path, Path]:
    """Regenerate ``LADDER.md`` and ``ladder.json`` under ``models_root``."""
    root = Path(models_root)
    items = entries(root)
    atomic_write_json(root / LADDER_JSON, {"ladder_version": 1, "models": items})
    atomic_write_text(root / LADDER_MD, render_ladder(items))
    return root / LADDER_MD, root / LADDER_JSON


__all__ = ["parse_version", "version_key", "check_name", "default_name", "entries", "render_ladder", "write_ladder"]

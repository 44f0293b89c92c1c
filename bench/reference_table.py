"""Markdown tables of a sweep's runs beside the published study's numbers.

    python bench/reference_table.py outputs/reference/edgejson_v3

Reads each ``<dir>/*/results.json`` (and its ``predictions.jsonl`` for failure statuses) and
prints, per run: overall and per-tier JSONExact / Field F1 / Schema Compliance with 95%
intervals (Wilson for the proportions, the recorded bootstrap for F1:
:func:`scaling.metrics.metric_interval`), the published study's metric definitions (``field_f1_toplevel``,
``compliance_keys_types``), status counts, and measured training/evaluation throughput.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaling.metrics import metric_interval
from scaling.results import decode_label, recipe, recipe_label, varying_recipe

PUBLISHED = {
    "fine-tuned 135M": {"json_exact": 0.247, "field_f1": 0.520, "complex": 0.0},
    "fine-tuned 360M": {"json_exact": 0.551, "field_f1": 0.780, "complex": 0.04},
    "base 135M": {"json_exact": 0.019},
}
TIERS = ("simple", "medium", "complex")


def pct(m: dict, key: str) -> str:
    lo, hi = metric_interval(m, key)  # Wilson for a proportion, whatever the run recorded
    return f"{100 * m[key]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"


def f1(m: dict, key: str) -> str:
    lo, hi = metric_interval(m, key)
    return f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def label(r: dict, varying: frozenset[str] = frozenset()) -> str:
    """Model, method, decoder, and the recipe parts (prompt, ...) that differ between the runs."""
    method = r["finetune"]["method"]
    mode = decode_label(r["decode"]["mode"], r["config"])
    extra = recipe_label(recipe(r["config"]), varying)
    return (f"{r['model']['key']} {'base' if method == 'none' else 'fine-tuned (' + method + ')'}, {mode}"
            + (f", {extra}" if extra else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    args = ap.parse_args(argv)
    runs = []
    for path in sorted(args.root.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r.get("status") == "completed":
            runs.append(r)
        else:
            print(f"skip {path}: status {r.get('status')}", file=sys.stderr)
    if not runs:
        print(f"error: no completed results.json under {args.root}", file=sys.stderr)
        return 2
    varying = varying_recipe(recipe(r["config"]) for r in runs)
    print("| run | n | JSONExact % | Field F1 | Schema compliance % | F1 top-level (published def.) | keys+types % (published def.) |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        m = r["metrics"]["overall"]
        print(f"| {label(r, varying)} | {m['n']} | {pct(m, 'json_exact')} | {f1(m, 'field_f1')} | {pct(m, 'schema_compliance')} "
              f"| {f1(m, 'field_f1_toplevel')} | {pct(m, 'compliance_keys_types')} |")
    print()
    print("Per tier (JSONExact % / Field F1 / Schema compliance %, 95% intervals):")
    print()
    print("| run | " + " | ".join(f"{t} (n)" for t in TIERS) + " |")
    print("|---|" + "---|" * len(TIERS))
    for r in runs:
        cells = []
        for t in TIERS:
            m = r["metrics"]["by_tier"].get(t)
            cells.append("—" if m is None else
                         f"{pct(m, 'json_exact')} / {f1(m, 'field_f1')} / {pct(m, 'schema_compliance')} ({m['n']})")
        print(f"| {label(r, varying)} | " + " | ".join(cells) + " |")
    print()
    print("Status counts and throughput (measured):")
    print()
    print("| run | statuses | train tokens | train wall s | train tokens/s | eval wall s | generated tokens | eval tokens/s | s/example |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        st = r["metrics"]["overall"].get("status_counts", {})
        tr = r.get("train") or {}
        ev = r.get("eval") or {}
        print(f"| {label(r, varying)} | {', '.join(f'{k} {v}' for k, v in st.items() if v)} | {tr.get('tokens', '—')} "
              f"| {tr.get('wall_s', '—')} | {tr.get('tokens_per_s', '—')} | {ev.get('wall_s')} | {ev.get('generated_tokens')} "
              f"| {ev.get('tokens_per_s')} | {ev.get('latency_s_per_example')} |")
    print()
    print("Published (EdgeJSON v3 test, 158 examples; tier tables left out the 20 medium records without `complexity`):")
    print()
    for name, vals in PUBLISHED.items():
        parts = [f"JSONExact {100 * vals['json_exact']:.1f}%"]
        if "field_f1" in vals:
            parts.append(f"Field F1 {vals['field_f1']:.3f}")
        if "complex" in vals:
            parts.append(f"complex {100 * vals['complex']:.0f}%")
        print(f"- {name}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

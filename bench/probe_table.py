"""Markdown table of a settings probe: validation loss (and validation scores) per job.

    python bench/probe_table.py outputs/multirun/edgejson_v3_smol135_lr_probe [more sweep dirs]

A probe is a sweep with ``finetune.val_fraction > 0`` and ``eval.split=none`` (loss only) or
``eval.split=val`` (generation on the held-out records too); see README, "Choosing settings
without the test set". Rows are sorted by validation loss, lowest first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def row(r: dict) -> dict:
    cfg, train = r["config"], r.get("train") or {}
    metrics = (r.get("metrics") or {}).get("overall") or {}
    return {
        "job": Path(r["job_dir"]).name.split("_", 1)[-1],
        "method": cfg["finetune"]["method"] + (f" r={cfg['finetune']['lora']['r']}" if cfg["finetune"].get("lora") else ""),
        "lr": cfg["finetune"]["optim"]["lr"],
        "prompt": f"{cfg['data']['prompt']['template']}/{cfg['data']['prompt']['schema']}",
        "steps": train.get("steps"),
        "tokens": train.get("tokens"),
        "tokens_per_s": train.get("tokens_per_s"),
        "train_loss": train.get("final_train_loss"),
        "val_loss": train.get("final_val_loss"),
        "n_val": train.get("n_val"),
        "val_exact": metrics.get("json_exact") if r["data"].get("eval_split") == "val" else None,
        "val_f1": metrics.get("field_f1") if r["data"].get("eval_split") == "val" else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweeps", nargs="+", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for sweep in args.sweeps:
        for path in sorted(sweep.glob("*/results.json")):
            r = json.loads(path.read_text())
            if r.get("status") != "completed":
                print(f"skip {path}: status {r.get('status')}", file=sys.stderr)
                continue
            rows.append(row(r))
    if not rows:
        print("no completed jobs", file=sys.stderr)
        return 1
    rows.sort(key=lambda x: (x["val_loss"] is None, x["val_loss"] or 0.0))
    cols = ["method", "lr", "prompt", "steps", "tokens", "tokens_per_s", "train_loss", "val_loss", "n_val",
            "val_exact", "val_f1"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for x in rows:
        print("| " + " | ".join("—" if x[c] is None else str(x[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

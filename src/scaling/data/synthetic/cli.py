"""Command line: ``python -m scaling.data synth ...`` (or ``python -m scaling.data.synthetic ...``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .schemas import SCHEMAS
from .writer import DEFAULT_N_TEST, DEFAULT_N_TRAIN, generate

__all__ = ["add_synth_subparser", "main", "run_synth"]


def add_synth_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to an ``argparse`` subparsers object; returns it."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic EdgeJSON-format dataset for tiny models",
        description="Write <out>/<version>/{train,test}.jsonl and <out>/schemas/<tier>/*.json: "
                    f"{len(SCHEMAS)} synthetic schemas, split evenly, deterministic by seed.",
    )
    _add_synth_arguments(parser)
    parser.set_defaults(func=run_synth)
    return parser


def _add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN,
                        help=f"training records (default {DEFAULT_N_TRAIN})")
    parser.add_argument("--n-test", type=int, default=DEFAULT_N_TEST,
                        help=f"test records (default {DEFAULT_N_TEST})")
    parser.add_argument("--version", default="v1", help="version folder name (default v1)")
    parser.add_argument("--force", action="store_true",
                        help="write into --out even when it is not empty (files of the same names are replaced)")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments. Prints a summary, then one JSON line
    ``{"root", "version", "train", "test", "schemas"}``; returns the exit status
    (0, or 2 after printing ``error: ...`` to stderr). A non-empty ``--out`` is refused
    without ``--force``: a dataset other runs were trained and scored on is never replaced
    by accident."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and not getattr(args, "force", False):
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            print(f"error: --out {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            print(f"error: --out {out} is not empty ({shown}): choose another folder, or pass --force to "
                  "write the dataset into it", file=sys.stderr)
            return 2
    try:
        root = generate(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                        version=args.version)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n_train} train + {args.n_test} test records over {len(SCHEMAS)} "
          f"schemas to {root}")
    print(json.dumps({"root": str(root), "version": args.version, "train": args.n_train,
                      "test": args.n_test, "schemas": len(SCHEMAS)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scaling.data.synthetic --out DIR [--seed N] [--n-train N] [--n-test N]``."""
    parser = argparse.ArgumentParser(prog="python -m scaling.data.synthetic",
                                     description="Write a synthetic EdgeJSON-format dataset.")
    _add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))

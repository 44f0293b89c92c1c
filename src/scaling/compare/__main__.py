"""``python -m scaling.compare BASELINE_RUN RUN [RUN ...] [options]``: see :mod:`scaling.compare`.

Writes ``report.md``, ``tables.tex``, ``deltas.pdf|png`` and ``compare.json`` to
``<out>`` (default ``$SCALING_OUTPUT_ROOT/compare/<name>``, ``outputs/compare/<name>``) and
prints the overall deltas. Bad input prints ``error: ...`` and exits 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from scaling.data.io import DataError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scaling.compare",
        description="Compare runs scored on the same test examples: the first run is the baseline.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (results.json + predictions.jsonl)")
    p.add_argument("--labels", metavar="A,B,...", help="names of the runs in the report (default: folder names)")
    p.add_argument("--name", help="output folder name under <out root>/compare (default: the labels joined by _vs_)")
    p.add_argument("--out", type=Path, help="output folder (default: $SCALING_OUTPUT_ROOT or outputs, /compare/<name>)")
    p.add_argument("--group", action="append", default=[], metavar="NAME=SCHEMA,...",
                   help="a named group of schemas reported on its own (repeatable); the rest form 'others'")
    p.add_argument("--intersect", action="store_true",
                   help="compare runs scored on different test files, or missing examples, on the ids they share")
    p.add_argument("--all-pairs", action="store_true",
                   help="also compare every later run with every earlier one, not only with the baseline")
    p.add_argument("--data-check", action="append", default=[], metavar="LABEL=PATH",
                   help="validate a data version (a folder with train.jsonl/test.jsonl, or a file) and report how "
                        "it differs from the first one given (repeatable)")
    p.add_argument("--schemas", type=Path, help="schemas folder for --data-check (default: <PATH>/../schemas)")
    p.add_argument("--n-boot", type=int, default=10000, help="bootstrap replicates (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # Imported after the arguments: --help and a usage error answer before numpy and the analysis load.
    from scaling.compare.datacheck import parse_data_check
    from scaling.compare.report import build, delta_cell, parse_group, write
    from scaling.stats import OVERALL
    from scaling.complex_plus import COMPLEX_PLUS_TIER

    try:
        labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
        if labels is not None and not all(labels):
            raise DataError(f"--labels {args.labels!r}: an empty name")
        groups: dict[str, list[str]] = {}
        for text in args.group:
            name, members = parse_group(text)
            if name in groups:
                raise DataError(f"--group {name}: given twice")
            groups[name] = members
        cmp = build(args.runs, labels, name=args.name, groups=groups, intersect=args.intersect,
                    all_pairs=args.all_pairs, data_checks=[parse_data_check(t) for t in args.data_check],
                    schemas_dir=args.schemas, n_boot=args.n_boot, seed=args.seed, level=args.ci,
                    command=shlex.join(["python", "-m", "scaling.compare", *argv]))
        out = args.out or Path(os.environ.get("SCALING_OUTPUT_ROOT", "outputs")) / "compare" / cmp.name
        paths = write(cmp, out)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    for pair in cmp.pairs:
        for row in pair.rows:
            if row.group not in (OVERALL, COMPLEX_PLUS_TIER) or row.kind not in ("overall", "tier"):
                continue
            where = f"{row.n} examples" if row.group == OVERALL else f"{row.group}, {row.n} examples"
            print(f"{pair.b} - {pair.a} ({where}): "
                  + ", ".join(f"{m} {delta_cell(d)}" for m, d in row.metrics.items())
                  + f"; right only in {pair.b} {row.mcnemar.gained}, only in {pair.a} {row.mcnemar.lost}, "
                    f"McNemar p={row.mcnemar.p:.3g}")
    print(f"report: {paths['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

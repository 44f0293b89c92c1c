"""``python -m scaling.export``: a finished job -> a versioned model folder (see the package doc).

    python -m scaling.export JOB_DIR --version 1.0.0 [--name mlm-135m-edgejson] [--gguf f16,q8_0,q4_k_m]
                             [--measure [--measure-limit N] [--measure-gguf q8_0] [--measure-complex-plus q8_0]]
                             [--weights PATH] [--data-root DIR] [--out DIR]
    python -m scaling.export --ladder [--out DIR]      # regenerate LADDER.md / ladder.json only

Errors print ``error: ...`` to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from scaling.deploy.tools import DeployToolError
from scaling.export.core import DEFAULT_GGUF, export_job
from scaling.export.ladder import write_ladder
from scaling.export.source import ExportError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m scaling.export", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job_dir", nargs="?", type=Path, help="a completed job folder (results.json, predictions.jsonl)")
    ap.add_argument("--version", help="semantic version of this export, e.g. 1.0.0 (immutable once written)")
    ap.add_argument("--name", help="model name (default: <category>-<size>-<data>, e.g. mlm-135m-edgejson)")
    ap.add_argument("--out", type=Path, default=Path("outputs/models"), help="models root (default outputs/models)")
    ap.add_argument("--gguf", default=",".join(DEFAULT_GGUF),
                    help="GGUF files to write: comma-separated of f32,f16,q8_0,q4_k_m, or 'none' (default: f16,q8_0,q4_k_m)")
    ap.add_argument("--measure", action="store_true",
                    help="evaluate every GGUF through llama.cpp on the job's test examples and put the table on the card")
    ap.add_argument("--measure-limit", type=int, default=None, help="measure on the first N examples only")
    ap.add_argument("--measure-gguf", default=None,
                    help="which written GGUF files --measure scores (comma-separated; default: all of them)")
    ap.add_argument("--measure-complex-plus", default=None,
                    help="which measured files are also scored on the job's complex+ extra examples, when the job "
                         "carries complex+ (comma-separated or 'none'; default: q8_0 if measured, else the first)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for quantisation and llama.cpp")
    ap.add_argument("--weights", help="the fine-tuned model.safetensors (default: found from results.json)")
    ap.add_argument("--data-root", help="the dataset root, if not where the job read it")
    ap.add_argument("--license", help="license of the weights (default: the base model's)")
    ap.add_argument("--check-examples", type=int, default=2,
                    help="re-answer this many test examples with the exported folder and compare with the job's")
    ap.add_argument("--limit-threshold", type=float, default=0.5,
                    help="JSONExact below which a tier or schema is listed as a limit (default 0.5)")
    ap.add_argument("--ladder", action="store_true", help="only regenerate LADDER.md and ladder.json under --out")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    return ap


def _types(text: str) -> list[str]:
    """``f16,q8_0`` -> ``["f16", "q8_0"]``; ``none`` or empty -> ``[]``."""
    return [] if text.strip().lower() in ("", "none") else [q.strip() for q in text.split(",") if q.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(name)s: %(message)s")
    try:
        if args.ladder:
            md, js = write_ladder(args.out)
            print(f"wrote {md} and {js}")
            return 0
        if args.job_dir is None or not args.version:
            ap.error("a job folder and --version are required (or --ladder)")
        gguf = _types(args.gguf)
        measure_gguf = None if args.measure_gguf is None else _types(args.measure_gguf)
        complex_plus_gguf = None if args.measure_complex_plus is None else _types(args.measure_complex_plus)
        folder = export_job(args.job_dir, args.version, name=args.name, out_root=args.out, gguf=gguf,
                            weights=args.weights, data_root=args.data_root, license=args.license,
                            measure=args.measure, measure_limit=args.measure_limit, measure_gguf=measure_gguf,
                            complex_plus_gguf=complex_plus_gguf, threads=args.threads,
                            check_examples=args.check_examples, limit_threshold=args.limit_threshold,
                            progress=not args.quiet)
    except (ExportError, DeployToolError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {folder}")
    print(f"ladder: {args.out / 'LADDER.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m scaling.data``: data-layer commands.

``layout SRC OUT [--link]``
    Lay out EdgeJSON from an SLMBench checkout as ``data.root`` expects (:mod:`scaling.data.layout`).

``validate PATH [PATH ...] --schemas DIR [--json] [--check-formats]``
    Validate every record (see :mod:`scaling.data.validate`); print a per-schema,
    per-check table, a summary and the first failures. Exit 0 when every record
    passes, 1 when any fails, 2 when an input cannot be read at all. With ``--json``
    the last line of stdout is the report as one JSON object.

Each command is one ``add_<name>_parser(subparsers)`` function in
:data:`SUBCOMMANDS` that sets ``func`` (``args -> exit code``) as its default.
Errors are printed as ``error: ...`` on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .io import MAX_LINE_BYTES, DataError
from .layout import add_layout_subparser
from .synthetic import add_synth_subparser
from .validate import format_report, validate_files

EXIT_OK, EXIT_INVALID, EXIT_ERROR = 0, 1, 2


def _run_validate(args: argparse.Namespace) -> int:
    roles = {p: "train" for p in args.train} | {p: "test" for p in args.test}
    paths = list(dict.fromkeys([*args.paths, *args.train, *args.test]))
    if not paths:
        raise DataError("no input files: give PATH arguments or --train/--test")
    report = validate_files(
        paths, args.schemas, check_formats=args.check_formats, roles=roles, max_line_bytes=args.max_line_bytes,
    )
    print(format_report(report, max_failures=args.max_failures))
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    return EXIT_OK if report.ok else EXIT_INVALID


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def add_validate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="validate JSONL records against their schemas and derived-field arithmetic",
        description="Validate every record of the given JSONL files. Exit 0: all pass; "
                    "1: some fail; 2: an input cannot be read.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="JSONL files; train*.jsonl / test*.jsonl names give the file a role for the overlap check")
    p.add_argument("--schemas", required=True, metavar="DIR", help="schemas directory (<tier>/<schema_id>.json)")
    p.add_argument("--train", action="append", default=[], metavar="PATH",
                   help="a JSONL file to treat as training data, whatever its name (repeatable)")
    p.add_argument("--test", action="append", default=[], metavar="PATH",
                   help="a JSONL file to treat as test data, whatever its name (repeatable)")
    p.add_argument("--check-formats", action="store_true",
                   help="also check JSON Schema 'format' keywords (date-time, email, ...); off by default")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on the last line")
    p.add_argument("--max-failures", type=_positive_int, default=20, metavar="N",
                   help="failure messages to print (default 20)")
    p.add_argument("--max-line-bytes", type=_positive_int, default=MAX_LINE_BYTES, metavar="N",
                   help=f"longest accepted line in bytes (default {MAX_LINE_BYTES})")
    p.set_defaults(func=_run_validate)


#: One function per subcommand; adding a command is adding its function here. ``synth``: the
#: synthetic dataset generator; ``layout``: a downloaded EdgeJSON release (SLMBench checkout) in
#: the folders data.root expects.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_validate_parser, add_synth_subparser, add_layout_subparser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scaling.data", description="EdgeJSON data tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, but the contract is one error line, not a traceback
        print(f"error: internal error ({type(e).__name__}: {e}); please report it with the command line",
              file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

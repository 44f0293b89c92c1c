"""Score a file of raw model outputs against an EdgeJSON-layout test split.

Usage::

    python -m scaling.score PREDICTIONS.jsonl --data TEST.jsonl [--schemas DIR]
                            [--json] [--out FILE] [--check-formats]
                            [--n-boot N] [--seed S] [--max-line-bytes N]

``PREDICTIONS.jsonl`` holds one JSON object per line with ``id`` (a record id of
``TEST.jsonl``) and ``output`` (the model's raw text, a string); other fields are
ignored, so a run's own ``predictions.jsonl`` can be re-scored. Every test record
needs exactly one prediction: missing, extra or duplicate ids are an error.

Prints a table of every metric (:mod:`scaling.metrics`) overall, by tier and by
schema, with 95% intervals (Wilson for the 0/1 metrics, bootstrap over examples for the F1
means: :func:`scaling.metrics.aggregate`). ``--json`` adds, as the last line of stdout,
the aggregate as one JSON object ``{"overall", "by_tier", "by_schema"}`` (the same
object :func:`scaling.metrics.aggregate` returns and ``results.json`` stores under
``metrics``). ``--out FILE`` writes that aggregate plus ``"examples"``, the
per-example rows, as one JSON file. Errors print ``error: ...`` to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from .ceiling import add_summaries, read_test, score_rows
from .data import MAX_LINE_BYTES, DataError, Record, SchemaInfo, load_schemas, read_records
from .data.io import json_type_name
from .metrics import (
    JSON_NOT_FOUND,
    METRIC_KEYS,
    OK,
    SCHEMA_ERROR,
    SYNTAX_ERROR,
    aggregate,
    score_output,
)
from .results import check_id
from .results import read_predictions as read_prediction_rows

__all__ = ["read_predictions", "score_predictions", "format_table", "main"]

#: How many offending ids an error message lists before "and N more".
_SHOW = 5

#: A prediction's stop flags (as a run records them) that say why an answer did not parse.
_STOP_FLAGS = ("looped", "capped", "hit_eos")


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(x) for x in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _check_prediction(obj: Any, file: str | None, line: int | None, index: int | None = None) -> Any:
    """The checks every prediction passes: an object with a non-empty string ``id``
    and a string ``output``. Errors name ``file:line``, or, for a prediction that
    did not come from a file line, its list position as ``predictions[index]``."""
    where = f"predictions[{index}]" if line is None and index is not None else None

    def fail(message: str, name: str | None = None) -> DataError:
        field = ".".join(p for p in (where, name) if p) or None
        return DataError(message, file, line, field=field)

    if not isinstance(obj, Mapping):
        raise fail(f"expected a JSON object, got {json_type_name(obj)}")
    check_id(obj, file, line, DataError, field=".".join(p for p in (where, "id") if p))
    if "output" not in obj:
        raise fail("missing required field", "output")
    if not isinstance(obj["output"], str):
        raise fail(f"expected string, got {json_type_name(obj['output'])}", "output")
    return obj


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Read a predictions JSONL file strictly (:func:`scaling.results.read_predictions`, with
    blank lines refused: a hand-made file is checked line by line).

    Each line must be a JSON object (no duplicate keys, no NaN/Infinity) with a
    non-empty string ``id`` and a string ``output``; blank lines are errors. Each
    returned dict gains ``"line"`` (1-based) for later messages. Raises
    :class:`~scaling.data.DataError` naming the file, line and field of the first
    problem, and for a missing, unreadable or empty file.
    """
    out = read_prediction_rows(path, DataError, missing="predictions file not found", blank_lines="error",
                               empty="empty file: no predictions")
    for row in out:
        _check_prediction(row, str(path), row["line"])
    return out


def _match_ids(
    predictions: Sequence[Mapping[str, Any]], records: Sequence[Record], source: str | None
) -> dict[str, Mapping[str, Any]]:
    """Predictions keyed by id; DataError on duplicate, missing or extra ids."""
    by_id: dict[str, Mapping[str, Any]] = {}
    duplicates: list[str] = []
    for i, pred in enumerate(predictions):
        line = pred.get("line") if isinstance(pred, Mapping) else None
        line = line if isinstance(line, int) and not isinstance(line, bool) else None
        _check_prediction(pred, source, line, index=i)
        pid = pred["id"]
        if pid in by_id:
            first = by_id[pid].get("line")
            where = f" (lines {first} and {line})" if first is not None and line is not None else ""
            duplicates.append(f"{pid}{where}")
        else:
            by_id[pid] = pred
    if duplicates:
        raise DataError(f"{len(duplicates)} duplicate prediction id(s): {_listing(duplicates)}", source)
    record_ids = [r.id for r in records]
    wanted = set(record_ids)
    missing = [rid for rid in record_ids if rid not in by_id]
    extra = [pid for pid in by_id if pid not in wanted]
    problems = []
    if missing:
        problems.append(f"{len(missing)} data id(s) have no prediction: {_listing(missing)}")
    if extra:
        problems.append(f"{len(extra)} predicted id(s) are not in the data: {_listing(extra)}")
    if problems:
        raise DataError("; ".join(problems), source)
    return by_id


def score_predictions(
    predictions: Sequence[Mapping[str, Any]],
    records: Sequence[Record],
    schemas: Mapping[str, SchemaInfo],
    *,
    check_formats: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    source: str | os.PathLike | None = None,
) -> tuple[list[dict], dict]:
    """Score predictions against records; returns ``(rows, aggregate)``.

    ``predictions`` are mappings with ``id`` and ``output`` (raw model text); there
    must be exactly one per record, matched by id (a :class:`~scaling.data.DataError`
    lists a few duplicate, missing or extra ids otherwise; ``source`` names the
    predictions in that message). ``schemas`` maps schema_id to
    :class:`~scaling.data.SchemaInfo`.

    ``rows`` follow the order of ``records``, one dict per example: ``id``,
    ``schema_id``, ``tier``, ``output``, ``status``, ``error``, ``parsed`` and every
    field of :class:`scaling.metrics.ExampleScore` (``json_exact``, ``field_f1``,
    ``precision``, ``recall``, ``field_f1_toplevel``, ``schema_compliance``,
    ``compliance_keys_types``), and what the prompt allows (:func:`scaling.ceiling.score_rows`:
    ``prompt_check``, ``readings``, ``ceiling``, ``reader_exact``, ``answer_kind``,
    ``answer_detail``; a prediction's ``looped`` / ``capped`` / ``hit_eos`` name an unparsed
    answer's cause). ``aggregate`` is :func:`scaling.metrics.aggregate` of the rows with
    ``n_boot`` and ``seed``, each group with its ``ceiling`` and ``answers`` blocks
    (:func:`scaling.ceiling.summarise`).
    """
    src = None if source is None else str(source)
    if not records:
        raise DataError("no records to score")
    by_id = _match_ids(predictions, records, src)
    rows: list[dict] = []
    for rec in records:
        info = schemas.get(rec.schema_id)
        if info is None:
            raise DataError(f"unknown schema_id '{rec.schema_id}'", rec.file, rec.line, field="schema_id")
        output = by_id[rec.id]["output"]
        score = score_output(output, rec.expected_output, info.schema, check_formats=check_formats)
        row = {"id": rec.id, "schema_id": rec.schema_id, "tier": rec.tier, "output": output}
        row.update(score.to_dict())
        rows.append(row)
    flags = {rid: {k: p[k] for k in _STOP_FLAGS if k in p} for rid, p in by_id.items()}
    score_rows(rows, read_test(records, schemas), flags)
    return rows, add_summaries(aggregate(rows, n_boot=n_boot, seed=seed), rows, n_boot=n_boot, seed=seed)


# ---------------------------------------------------------------------------- report

_LABELS = {"field_f1_toplevel": "f1_toplevel", "schema_compliance": "schema_ok", "compliance_keys_types": "keys_types"}
_COLUMNS = tuple((key, _LABELS.get(key, key)) for key in METRIC_KEYS)
_STATUS_COLUMNS = (OK, SCHEMA_ERROR, SYNTAX_ERROR, JSON_NOT_FOUND)


def _cell(m: Mapping[str, Any], key: str) -> str:
    lo, hi = m["ci"][key]
    return f"{100 * m[key]:5.1f} ({100 * lo:5.1f}-{100 * hi:5.1f})"


def _ceiling_cells(m: Mapping[str, Any]) -> str:
    """``ceiling (lo-hi)  exact/ceiling (lo-hi)`` of a group, ``-`` where it is unknown."""
    c = m.get("ceiling") or {}
    if c.get("expected") is None:
        return f"{'-':<17}  {'-':<17}"
    cell = f"{100 * c['expected']:5.1f} ({100 * c['ci'][0]:5.1f}-{100 * c['ci'][1]:5.1f})"
    share = c.get("json_exact_of_ceiling")
    ci = c.get("share_ci")
    of = "-" if share is None else f"{100 * share:5.1f}" + (f" ({100 * ci[0]:5.1f}-{100 * ci[1]:5.1f})" if ci else "")
    return f"{cell:<17}  {of:<17}"


def format_table(agg: Mapping[str, Any]) -> str:
    """A plain-text table of an :func:`~scaling.metrics.aggregate` result: one line
    per group (overall, each tier, each schema) with n, every metric as a percentage
    with its 95% interval, the status counts ok/schema_error/syntax_error/
    json_not_found, and, where the aggregate has them (:func:`scaling.ceiling.summarise`), the
    ceiling and JSONExact as a share of it; then the answers by kind per tier."""
    name_w = max(len("overall"), *(len(k) + 2 for k in agg["by_tier"]), *(len(k) + 2 for k in agg["by_schema"]))
    cell_w = len(_cell({"x": 1.0, "ci": {"x": [1.0, 1.0]}}, "x"))
    ceiling = "ceiling" in agg["overall"]
    header = f"{'group':<{name_w}} {'n':>4}  " + "  ".join(f"{label:<{cell_w}}" for _, label in _COLUMNS)
    header += "  ok/schema/syntax/none"
    if ceiling:
        header += f"  {'ceiling':<17}  {'exact/ceiling':<17}"
    lines = [
        "metrics in % with 95% intervals (Wilson for proportions, bootstrap for F1); status: "
        "ok/schema_error/syntax_error/json_not_found"
        + ("; ceiling: the best JSONExact a reader of the prompts can expect" if ceiling else ""),
        header,
        "-" * len(header),
    ]

    def line(name: str, m: Mapping[str, Any]) -> str:
        counts = "/".join(str(m["status_counts"].get(s, 0)) for s in _STATUS_COLUMNS)
        cells = "  ".join(_cell(m, k) for k, _ in _COLUMNS)
        out = f"{name:<{name_w}} {m['n']:>4}  {cells}  {counts:<22}"
        return out + ("  " + _ceiling_cells(m) if ceiling else "")

    lines.append(line("overall", agg["overall"]))
    lines.append("by tier")
    lines.extend(line(f"  {t}", m) for t, m in agg["by_tier"].items())
    lines.append("by schema")
    lines.extend(line(f"  {s}", m) for s, m in agg["by_schema"].items())
    if "answers" in agg["overall"]:
        kinds = list(agg["overall"]["answers"]["kinds"])
        lines += ["", "answers by kind: " + ", ".join(kinds) + "; lists: the gold's lists in inconsistent answers "
                  "with the wrong length / compared"]
        for name, m in [("overall", agg["overall"]), *agg["by_tier"].items()]:
            a = m["answers"]
            causes = ", ".join(f"{c} {k}" for c, k in a["unparsed"].items())
            lines.append(f"  {name:<{name_w}} " + "  ".join(f"{k} {a['kinds'][k]}" for k in kinds)
                         + (f" (unparsed: {causes})" if causes else "")
                         + f"; lists {a['lists']['wrong_length']}/{a['lists']['compared']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- CLI


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scaling.score",
        description="Score raw model outputs (JSONL with id, output) against an EdgeJSON test split.",
    )
    parser.add_argument("predictions", help="JSONL file: one object per line with 'id' and 'output'")
    parser.add_argument("--data", required=True, help="test JSONL file (EdgeJSON record format)")
    parser.add_argument(
        "--schemas",
        help="schemas directory (<tier>/<schema_id>.json); default: ../schemas next to the data file's folder",
    )
    parser.add_argument("--json", action="store_true", help="print the aggregate as one JSON object on the last line")
    parser.add_argument("--out", help="write the aggregate and the per-example rows to this JSON file")
    parser.add_argument(
        "--check-formats", action="store_true",
        help="check JSON Schema 'format' (date, date-time, email) in schema compliance",
    )
    parser.add_argument("--n-boot", type=_positive_int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--max-line-bytes", type=_positive_int, default=MAX_LINE_BYTES, metavar="N",
                        help=f"longest accepted line of the data file in bytes (default {MAX_LINE_BYTES})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    schemas_dir = args.schemas or str(Path(args.data).resolve().parent.parent / "schemas")
    if args.schemas is None and not Path(schemas_dir).is_dir():
        print(f"error: no --schemas given, and the default {schemas_dir} (schemas/ beside the data file's folder) "
              "is not a folder: pass --schemas DIR", file=sys.stderr)
        return 2
    try:
        schemas = load_schemas(schemas_dir)
        records = read_records(args.data, schemas, max_line_bytes=args.max_line_bytes)
        predictions = read_predictions(args.predictions)
        rows, agg = score_predictions(
            predictions, records, schemas,
            check_formats=args.check_formats, n_boot=args.n_boot, seed=args.seed, source=args.predictions,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        from .results import atomic_write_json

        document = {
            "predictions": str(args.predictions),
            "data": str(args.data),
            "schemas": schemas_dir,
            "check_formats": args.check_formats,
            "n_boot": args.n_boot,
            "seed": args.seed,
            **agg,
            "examples": rows,
        }
        try:
            atomic_write_json(args.out, document)
        except OSError as exc:
            print(f"error: {args.out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return 2
    formats = "checked" if args.check_formats else "not checked"
    print(f"{len(rows)} predictions from {args.predictions} scored against {args.data} (formats {formats})")
    print(format_table(agg))
    if args.out:
        print(f"wrote {args.out}")
    if args.json:
        print(json.dumps(agg))
    return 0


if __name__ == "__main__":
    sys.exit(main())

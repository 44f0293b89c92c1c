"""Rescore finished runs from their saved answers under today's scorer: one scoring rule for
every committed number.

    python -m scaling.rescore outputs/reference            # rewrite what differs
    python -m scaling.rescore outputs/reference --check    # only say what differs; exit 1 if any

A run is a folder holding ``results.json`` and ``predictions.jsonl`` (the raw answer of every
example). The scorer changes (a rule made stricter, a metric added); the answers do not. For
each run this reads the records it was scored on (the data files ``results.json`` recorded,
found here under ``$EDGEJSON_DIR`` or ``--data`` and checked by sha256; for the deployed-file
runs, the export's recorded data), scores the answers with
:func:`scaling.score.score_predictions` exactly as the job did (same bootstrap seed), and
rewrites ``results.json``'s ``metrics``, ``metrics.json`` where present and each prediction's
scores, keeping everything else of the row (tokens, flags, timings). A run carrying complex+
(:mod:`scaling.complex_plus`) has ``complex_plus.jsonl`` and ``metrics.complex_plus`` rescored the
same way, from the files its ``parts`` recorded. A run whose scores are already today's is left
byte for byte as it is.

Errors (a missing or altered data file, an answer for an unknown id) name the file and field
and exit 2; runs before the failing one are kept as rewritten.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling import complex_plus
from scaling.data.io import DataError, Record, SchemaInfo, load_schemas, read_records
from scaling.data.locate import find_recorded_file
from scaling.metrics import METRIC_KEYS
from scaling.results import (COMPLEX_PLUS_FILE, METRICS_FILE, PREDICTIONS_FILE, RESULTS_FILE, atomic_write_json,
                             RunFolder, read_json, without_line, write_jsonl)
from scaling.score import score_predictions

ROW_SCORE_KEYS = ("status", "error", *METRIC_KEYS, "precision", "recall")
"""The fields of a saved prediction row that scoring writes (the rest are the decoder's)."""


class RescoreError(DataError):
    """A run that cannot be rescored; the message names the file and field."""


@dataclass
class Rescored:
    """One run rescored: what changed (``"overall.field_f1 0.823 -> 0.809"``), the new record."""

    run: Path
    changes: list[str] = field(default_factory=list)
    results: dict | None = None
    rows: list[dict] | None = None
    metrics_json: bool = False
    complex_plus_rows: list[dict] | None = None
    """The rescored rows of ``complex_plus.jsonl`` (None: the run has no complex+)."""


def find_runs(roots: Sequence[str | Path]) -> list[Path]:
    """Every folder under ``roots`` (or a root itself) with both a results and a predictions file."""
    runs: set[Path] = set()
    for root in map(Path, roots):
        if not root.exists():
            raise RescoreError(f"{root}: no such folder")
        for results in ([root / RESULTS_FILE] if (root / RESULTS_FILE).is_file() else []) + sorted(
                root.rglob(RESULTS_FILE)):
            if (results.parent / PREDICTIONS_FILE).is_file():
                runs.add(results.parent)
    return sorted(runs)


def _data_section(results: Mapping[str, Any], run: Path) -> tuple[dict, str]:
    """The run's ``data`` section and where it was read. A deployed-file run (scaling.deploy)
    has none of its own: its ``source`` export's ``export.json`` holds it."""
    if isinstance(results.get("data"), dict) and results["data"].get("files"):
        return results["data"], f"{run / RESULTS_FILE}: field data.files"
    source = results.get("source")
    if isinstance(source, str) and (Path(source) / "export.json").is_file():
        manifest = read_json(Path(source) / "export.json")
        if isinstance(manifest.get("data"), dict) and manifest["data"].get("files"):
            return manifest["data"], f"{Path(source) / 'export.json'}: field data.files"
    raise RescoreError(f"{run / RESULTS_FILE}: field data.files: the run names no data files (nor an export that does)")


def run_records(run: Path, results: Mapping[str, Any], data_dir: str | Path | None = None
                ) -> tuple[dict[str, Record], dict[str, SchemaInfo]]:
    """Every record of the run's recorded JSONL files by id, and its schemas."""
    data, where = _data_section(results, run)
    root = data.get("root")
    files = {str(k): v for k, v in data["files"].items()}
    found = {name: find_recorded_file(name, root, sha, where, data_dir, error=RescoreError)
             for name, sha in files.items()}
    schema_files = [p for name, p in found.items() if name.endswith(".json")]
    if not schema_files:
        raise RescoreError(f"{where}: names no schema files")
    # The schemas folder is <root>/schemas/<tier>/<id>.json: two levels above any schema file.
    schemas = load_schemas(schema_files[0].parent.parent)
    records: dict[str, Record] = {}
    for name, path in found.items():
        if not name.endswith(".jsonl"):
            continue
        for rec in read_records(path, schemas):
            other = records.get(rec.id)
            if other is not None and other.expected_output != rec.expected_output:
                raise RescoreError(f"{path}:{rec.line}: field id: {rec.id!r} is also in {other.file} with "
                                   "another answer")
            records.setdefault(rec.id, rec)
    return records, schemas


def _read_rows(folder: RunFolder) -> list[dict]:
    """The run's predictions (the one reader), each with a string ``output`` to score."""
    rows = folder.predictions(RescoreError)
    for row in rows:
        if not isinstance(row.get("output"), str):
            raise RescoreError("expected an object with string fields id and output", str(folder.predictions_path),
                               row["line"])
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON numbers compare after a round trip (floats to 12 significant digits)."""
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _diff(old: Any, new: Any, path: str, out: list[str], limit: int = 12) -> None:
    """Lines ``path old -> new`` where two metric trees differ (at most ``limit``)."""
    if len(out) >= limit:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            _diff(old.get(k), new.get(k), f"{path}.{k}" if path else str(k), out, limit)
    elif not _same(old, new):
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else json.dumps(v)[:60]  # noqa: E731
        out.append(f"{path} {fmt(old)} -> {fmt(new)}")


def rescore_run(run: str | Path, data_dir: str | Path | None = None) -> Rescored:
    """Score ``run``'s saved answers again; ``changes`` is empty when nothing differs."""
    run = Path(run)
    folder = RunFolder(run)
    results = folder.results_json(RescoreError)
    if not isinstance(results.get("metrics"), dict):
        raise RescoreError(f"{run / RESULTS_FILE}: field metrics: missing (the run has no scores to rescore)")
    rows = _read_rows(folder)
    saved = [without_line(r) for r in rows]  # as the file holds them (rows keep their lines for messages)
    records, schemas = run_records(run, results, data_dir)
    unknown = [r["id"] for r in rows if r["id"] not in records]
    if unknown:
        raise RescoreError(f"{run / PREDICTIONS_FILE}: field id: {unknown[0]!r} (and {len(unknown) - 1} more) "
                           "is in none of the data files the run recorded")
    chosen = [records[r["id"]] for r in rows]
    fresh_rows, metrics = score_predictions(rows, chosen, schemas, source=run / PREDICTIONS_FILE)
    new_rows = []
    for old, new in zip(saved, fresh_rows):
        row = dict(old)
        for key in ROW_SCORE_KEYS:
            if key in old or (key in new and key in ("status", *METRIC_KEYS)):
                row[key] = new.get(key)
        new_rows.append(row)
    # Compare as saved: a JSON round trip turns tuples into lists.
    metrics = json.loads(json.dumps(metrics))
    pooled_rows = None
    if complex_plus.COMPLEX_PLUS in results["metrics"]:
        # The 158's answers and complex+'s share the scorer: rescore both, or neither is today's.
        saved_pooled, pooled = complex_plus.rescore(run, results, {r["id"]: r["output"] for r in rows}, data_dir)
        metrics[complex_plus.COMPLEX_PLUS] = pooled.block
        pooled_rows = pooled.rows
    changes: list[str] = []
    _diff(results["metrics"], metrics, "", changes)
    row_changes = sum(1 for a, b in zip(saved, new_rows) if not _same(a, b))
    if row_changes:
        changes.append(f"{row_changes} of {len(rows)} prediction rows rescored")
    if pooled_rows is not None:
        pooled_changes = sum(1 for a, b in zip(saved_pooled, pooled_rows) if not _same(a, b))
        if pooled_changes:
            changes.append(f"{pooled_changes} of {len(pooled_rows)} {COMPLEX_PLUS_FILE} rows rescored")
    out = Rescored(run=run, changes=changes, metrics_json=(run / METRICS_FILE).is_file())
    if changes:
        out.results = {**results, "metrics": metrics}
        out.rows = new_rows
        out.complex_plus_rows = pooled_rows
    return out


def write_rescored(r: Rescored) -> None:
    """Rewrite the run's files with the new scores (atomically, one file at a time)."""
    if not r.changes:
        return
    write_jsonl(r.run / PREDICTIONS_FILE, r.rows)
    if r.complex_plus_rows is not None:
        write_jsonl(r.run / COMPLEX_PLUS_FILE, r.complex_plus_rows)
    if r.metrics_json:
        atomic_write_json(r.run / METRICS_FILE, r.results["metrics"])
    atomic_write_json(r.run / RESULTS_FILE, r.results)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m scaling.rescore", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run folders, or folders to search for runs")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when any run's scores differ")
    ap.add_argument("--data", type=Path, default=None,
                    help="the dataset root the runs' files are under (default: $EDGEJSON_DIR, then as recorded)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    differ = 0
    try:
        runs = find_runs(args.folders)
        if not runs:
            print(f"error: no run (results.json beside predictions.jsonl) under {', '.join(map(str, args.folders))}",
                  file=sys.stderr)
            return 2
        for run in runs:
            r = rescore_run(run, args.data)
            if r.changes:
                differ += 1
                print(f"{run}: " + ("differs" if args.check else "rescored") + "\n    " + "\n    ".join(r.changes))
                if not args.check:
                    write_rescored(r)
            else:
                print(f"{run}: unchanged")
    except (DataError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(runs)} runs, {differ} {'differ' if args.check else 'rescored'}")
    return 1 if (args.check and differ) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Reading a run folder: the one reader of ``results.json``, ``predictions.jsonl`` and
``complex_plus.jsonl``.

A run folder is what a job writes (:mod:`scaling.jobs.run`, :mod:`scaling.pipeline`), what
:func:`scaling.results.export_reference` commits under ``outputs/reference/`` (predictions
without prompts), or what ``scaling.deploy`` writes per GGUF file. Every part of the package
that reads one (fit, compare, failures, complex+, rescore, export, deploy, score, jobs) reads it
here, so a file means the same thing to all of them:

- ``results.json``: UTF-8, one JSON object (:func:`read_results_json`; typed as
  :class:`scaling.results.record.Results` by :meth:`RunFolder.results`).
- ``predictions.jsonl`` and ``complex_plus.jsonl``: one JSON object per line, strict JSON (no
  duplicate key, no NaN/Infinity), each with a non-empty string ``id``. Ids are kept as the
  strings they are: an integer id is an error, never converted. Blank lines are skipped (a
  checker of a hand-made file may refuse them: ``blank_lines="error"``). Each row comes back as
  its object with ``"line"`` (1-based) added, for later messages.

Every problem raises a :class:`~scaling.errors.LocatedError` (by default
:class:`~scaling.data.io.DataError`; a caller passes its own subclass as ``error``) naming the
file, the line and the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from scaling.data.io import DataError, DuplicateKey, json_type_name, no_duplicate_keys, reject_constant
from scaling.errors import LocatedError
from scaling.results.files import COMPLEX_PLUS_FILE, PREDICTIONS_FILE, RESULTS_FILE
from scaling.results.record import Results

ErrorType = type[LocatedError]

#: The key a prediction row read here carries its line number under.
LINE = "line"


def read_text(path: str | os.PathLike, error: ErrorType = DataError, *, missing: str = "not found") -> str:
    """The file as UTF-8 text. ``error`` names the file (and, for a byte that is not UTF-8,
    its line) when it is missing (``missing`` says why it was wanted), a folder, unreadable or
    not UTF-8."""
    p = Path(path)
    if not p.exists():
        raise error(missing, file=p)
    if p.is_dir():
        raise error("is a directory, expected a file", file=p)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=p) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise error(f"not valid UTF-8 (byte 0x{raw[e.start]:02x})", file=p, line=line) from None


def _loads(text: str, path: Path, line: int | None, error: ErrorType) -> Any:
    """Strict JSON (no duplicate key, no NaN/Infinity); ``error`` names the file and line."""
    try:
        return json.loads(text, parse_constant=reject_constant, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as e:
        raise error("duplicate key in a JSON object", file=path, line=line, field=str(e)) from None
    except json.JSONDecodeError as e:
        message = f"invalid JSON: {e.msg} (column {e.colno})"
        if line is None and (e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")):
            message += ": corrupt JSON, the file ends mid-value (cut off while it was written?)"
        raise error(message, file=path, line=e.lineno if line is None else line) from None
    except (ValueError, RecursionError) as e:
        raise error(f"invalid JSON: {e}", file=path, line=line) from None


def read_results_json(path: str | os.PathLike, error: ErrorType = DataError, *, missing: str = "not found"
                      ) -> dict:
    """A ``results.json`` as the JSON object it holds (nothing checked inside it: a caller
    checks what it needs, or types it with :meth:`Results.from_json`)."""
    path = Path(path)
    obj = _loads(read_text(path, error, missing=missing), path, None, error)
    if not isinstance(obj, dict):
        raise error(f"expected a JSON object, got {json_type_name(obj)}", file=path)
    return obj


def read_jsonl(path: str | os.PathLike, error: ErrorType = DataError, *, missing: str = "not found",
               blank_lines: Literal["skip", "error"] = "skip") -> list[dict]:
    """Every line of a JSONL file as a JSON object with ``"line"`` added (blank lines skipped,
    or refused with ``blank_lines="error"``)."""
    path = Path(path)
    rows = []
    lines = read_text(path, error, missing=missing).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # what follows the last newline: no line
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            if blank_lines == "error":
                raise error("blank line: every line must hold one JSON object", file=path, line=n)
            continue
        obj = _loads(text, path, n, error)
        if not isinstance(obj, dict):
            raise error(f"expected a JSON object, got {json_type_name(obj)}", file=path, line=n)
        rows.append({**obj, LINE: n})
    return rows


def check_id(row: Mapping[str, Any], path: str | os.PathLike | None, line: int | None, error: ErrorType = DataError,
             field: str = "id") -> str:
    """A prediction's ``id``: a non-empty string (an integer id is refused, never converted).
    ``field`` names it in the message (``"predictions[3].id"`` for a row not read from a file)."""
    if "id" not in row:
        raise error("missing required field", file=path, line=line, field=field)
    value = row["id"]
    if not isinstance(value, str):
        raise error(f"expected string, got {json_type_name(value)}", file=path, line=line, field=field)
    if not value.strip():
        raise error("must be a non-empty string", file=path, line=line, field=field)
    return value


def read_predictions(path: str | os.PathLike, error: ErrorType = DataError, *, missing: str = "not found",
                     blank_lines: Literal["skip", "error"] = "skip", unique_ids: bool = False,
                     empty: str | None = None) -> list[dict]:
    """A ``predictions.jsonl`` (or ``complex_plus.jsonl``): its rows in file order, each an
    object with a non-empty string ``id`` and ``"line"`` added. With ``unique_ids`` an id
    seen on an earlier line is an error (naming both lines). A file without a row gives ``[]``,
    or, with ``empty``, raises ``error(empty)`` naming the file."""
    rows = read_jsonl(path, error, missing=missing, blank_lines=blank_lines)
    if not rows and empty is not None:
        raise error(empty, file=Path(path))
    first: dict[str, int] = {}
    for row in rows:
        pid = check_id(row, path, row[LINE], error)
        if unique_ids:
            if pid in first:
                raise error(f"id {pid!r} already on line {first[pid]}", file=path, line=row[LINE], field="id")
            first[pid] = row[LINE]
    return rows


def read_outputs(path: str | os.PathLike, error: ErrorType = DataError) -> dict[str, str]:
    """``{id: output}`` of a predictions file (a run's own answers, to compare another
    evaluation of the same model with); every row's ``output`` a string."""
    out = {}
    for row in read_predictions(path, error):
        if not isinstance(row.get("output"), str):
            raise error(f"expected string, got {json_type_name(row.get('output'))}" if "output" in row
                        else "missing required field", file=Path(path), line=row[LINE], field="output")
        out[row["id"]] = row["output"]
    return out


def without_line(row: Mapping[str, Any]) -> dict:
    """A row read here as it stands in its file (the ``"line"`` this module added taken off)."""
    return {k: v for k, v in row.items() if k != LINE}


@dataclass(frozen=True)
class RunFolder:
    """A run's folder: ``results.json``, ``predictions.jsonl`` and, when it carries complex+,
    ``complex_plus.jsonl``. Nothing is read until asked for, and nothing is cached: each
    method reads its file again. ``error`` on each method is the :class:`LocatedError`
    subclass its problems raise (the caller's own, so its CLI prints them as its errors)."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def complex_plus_path(self) -> Path:
        return self.path / COMPLEX_PLUS_FILE

    def check_dir(self, error: ErrorType = DataError, *, what: str = "not a run folder") -> "RunFolder":
        """The folder itself, or ``error`` naming it: ``"<what> (no such directory)"``."""
        if not self.path.is_dir():
            raise error(f"{what} (no such directory)" if not self.path.exists() else f"{what} (not a directory)",
                        file=self.path)
        return self

    def results_json(self, error: ErrorType = DataError, *, missing: str = "not found") -> dict:
        """``results.json`` as the JSON object it holds (:func:`read_results_json`)."""
        return read_results_json(self.results_path, error, missing=missing)

    def results(self, error: ErrorType = DataError, *, missing: str = "not found") -> Results:
        """``results.json`` typed (:class:`~scaling.results.record.Results`)."""
        return Results.from_json(self.results_json(error, missing=missing), file=self.results_path, error=error)

    def predictions(self, error: ErrorType = DataError, *, missing: str = "not found",
                    blank_lines: Literal["skip", "error"] = "skip", unique_ids: bool = False,
                    empty: str | None = None) -> list[dict]:
        """``predictions.jsonl``'s rows (:func:`read_predictions`)."""
        return read_predictions(self.predictions_path, error, missing=missing, blank_lines=blank_lines,
                                unique_ids=unique_ids, empty=empty)

    def has_complex_plus(self, results: Mapping[str, Any] | Results) -> bool:
        """Whether the run carries complex+: a ``metrics.complex_plus`` block in its results
        and ``complex_plus.jsonl`` beside them."""
        metrics = results.get("metrics") if isinstance(results, Mapping) else results.metrics
        block = metrics.get("complex_plus") if isinstance(metrics, Mapping) else None
        return isinstance(block, Mapping) and self.complex_plus_path.is_file()

    def complex_plus(self, error: ErrorType = DataError, *, missing: str = "not found",
                     unique_ids: bool = False, empty: str | None = None) -> list[dict]:
        """``complex_plus.jsonl``'s rows (:func:`read_predictions`)."""
        return read_predictions(self.complex_plus_path, error, missing=missing, unique_ids=unique_ids, empty=empty)

"""Validate every record of one or more JSONL files and report what fails.

Checks, in the order they run on a line (a line failing ``parse``, ``fields`` or
``schema_known`` gets no later per-record check):

``parse``
    the line is readable: valid UTF-8, within the size limit, not blank, valid JSON
    (no NaN/Infinity, no duplicate key), a JSON object.
``fields``
    ``id``, ``schema_id``, ``prompt`` are non-empty strings; ``expected_output`` is an
    object.
``schema_known``
    ``schema_id`` names a schema in the schemas directory.
``schema_valid``
    ``expected_output`` is valid against its schema (JSON Schema draft-07). Checking
    ``format`` keywords (``date-time``, ``email``...) is a switch, off by default:
    271 train / 70 test EdgeJSON v3 date-times have no timezone and fail strict
    RFC 3339.
``derived``
    derived-field arithmetic (:mod:`scaling.data.derived`).
``prompt``
    the gold contradicts its prompt: the prompt is the EdgeJSON template's rendering of
    another answer (a value altered, a line added or missing), so no reader of the prompt can
    give the gold (:mod:`scaling.data.readings`); the message names the first differing line.
    A gold that differs from its prompt only in key order or number format is no
    contradiction: it is counted apart (``ValidationReport.prompts``) and listed in
    ``ValidationReport.notes``. A prompt whose first or last line is not the template's
    (another dataset, synthetic data) is not read, and counted as ``not_template``.
``duplicate_id``
    an ``id`` already used by an earlier record, in the same file or another one.
``train_test_overlap``
    a test record whose prompt, or whose expected_output, is identical to a train
    record's. Runs only when there is at least one train and one test file: roles
    are given explicitly, or inferred from file names (``train*.jsonl``,
    ``test*.jsonl``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema

from .derived import check_derived
from .io import MAX_LINE_BYTES, TIERS, DataError, Record, SchemaInfo, _json_path, load_schemas, scan_records
from .readings import PROMPT_KINDS, read_record

CHECKS = ("parse", "fields", "schema_known", "schema_valid", "derived", "prompt", "duplicate_id",
          "train_test_overlap")

#: Schema key used in per-schema counts for lines whose schema_id could not be read.
UNPARSED = "(unparsed)"

ROLES = ("train", "test")

# A schema error's message repeats the offending value; a whole nested object there
# would drown the report.
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class Failure:
    """One failed check on one line. ``id`` / ``schema_id`` are None when unreadable."""

    file: str
    line: int
    id: str | None
    schema_id: str | None
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.id or '-'}: {self.check}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "id": self.id, "schema_id": self.schema_id,
                "check": self.check, "message": self.message}


@dataclass
class ValidationReport:
    """The outcome of validating some files.

    ``records``: lines read (each line is one record, or a failed attempt at one).
    ``invalid``: lines failing at least one check. ``failures``: every failure, in
    file then line order (one line may fail several checks, one check several
    times). ``by_check``: for each check in :data:`CHECKS`, the number of lines
    failing it. ``by_schema``: for each schema_id (and :data:`UNPARSED`), its
    ``tier`` (None when unknown), ``records``, ``invalid``, and the number of its
    lines failing each check. ``check_formats``: whether ``format`` keywords were
    checked; ``formats`` lists the formats the installed jsonschema can check when
    they were. ``overlap_checked``: whether train/test overlap was checked
    (``roles`` shows each file's role, None when it has none). ``prompts``: records per
    :data:`~scaling.data.readings.PROMPT_KINDS` (how each gold stands to its prompt; a
    ``contradicts`` record fails the ``prompt`` check); ``notes``: the ``order_or_format``
    records, which pass (their gold differs from the prompt only in key order or number format).
    """

    files: list[str]
    schemas_dir: str | None
    check_formats: bool
    formats: list[str]
    roles: dict[str, str | None]
    overlap_checked: bool
    records: int = 0
    invalid: int = 0
    failures: list[Failure] = field(default_factory=list)
    by_check: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CHECKS})
    by_schema: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=lambda: {k: 0 for k in PROMPT_KINDS})
    notes: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every record passed every check."""
        return self.invalid == 0

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "invalid": self.invalid,
            "by_check": dict(self.by_check),
            "by_schema": {k: dict(v) for k, v in self.by_schema.items()},
            "check_formats": self.check_formats,
            "formats": list(self.formats),
            "overlap_checked": self.overlap_checked,
            "files": list(self.files),
            "roles": dict(self.roles),
            "schemas_dir": self.schemas_dir,
            "failures": [f.to_dict() for f in self.failures],
            "prompts": dict(self.prompts),
            "notes": [f.to_dict() for f in self.notes],
        }


def infer_role(path: str | os.PathLike) -> str | None:
    """``"train"`` for ``train*.jsonl``, ``"test"`` for ``test*.jsonl``, else None."""
    name = Path(path).name.lower()
    if not name.endswith(".jsonl"):
        return None
    for role in ROLES:
        if name.startswith(role):
            return role
    return None


def _message_path(error: jsonschema.ValidationError) -> str:
    return _json_path(error.absolute_path) or "(root)"


def _path_key(error: jsonschema.ValidationError) -> list[tuple[int, Any]]:
    # Indices sort numerically (line_items[2] before line_items[10]), keys by name.
    return [(0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path]


def _validator(info: SchemaInfo, check_formats: bool) -> jsonschema.Draft7Validator:
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER if check_formats else None
    return jsonschema.Draft7Validator(info.schema, format_checker=checker)


def schema_problems(validator: jsonschema.Draft7Validator, obj: Any) -> list[str]:
    """Messages ``"<path>: <jsonschema message>"`` for every error, sorted by path."""
    errors = sorted(validator.iter_errors(obj), key=lambda e: (_path_key(e), e.message))
    out = []
    for e in errors:
        msg = f"{_message_path(e)}: {e.message}"
        out.append(msg if len(msg) <= _MAX_MESSAGE else msg[: _MAX_MESSAGE - 3] + "...")
    return out


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class _Collector:
    """Accumulates failures and keeps per-line bookkeeping for the report."""

    def __init__(self, report: ValidationReport, schemas: Mapping[str, SchemaInfo]):
        self.report = report
        self.schemas = schemas
        # (file, line) -> set of failed checks; schema key per line for counting.
        self.failed: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.schema_of: dict[tuple[str, int], str] = {}

    def line(self, file: str, line: int, schema_id: str | None) -> None:
        self.schema_of[(file, line)] = schema_id or UNPARSED

    def add(self, file: str, line: int, id: str | None, schema_id: str | None, check: str, message: str) -> None:
        self.report.failures.append(Failure(file, line, id, schema_id, check, message))
        self.failed[(file, line)].add(check)

    def finish(self) -> None:
        r = self.report
        r.records = len(self.schema_of)
        r.invalid = len(self.failed)
        order = {f: i for i, f in enumerate(r.files)}
        r.failures.sort(key=lambda f: (order.get(f.file, len(order)), f.line, CHECKS.index(f.check)))
        rows: dict[str, dict[str, Any]] = {}
        for key, sid in self.schema_of.items():
            row = rows.get(sid)
            if row is None:
                info = self.schemas.get(sid)
                row = rows[sid] = {"tier": info.tier if info else None, "records": 0, "invalid": 0,
                                   **{c: 0 for c in CHECKS}}
            row["records"] += 1
            checks = self.failed.get(key)
            if checks:
                row["invalid"] += 1
                for c in checks:
                    row[c] += 1
                    r.by_check[c] += 1
        tier_rank = {t: i for i, t in enumerate(TIERS)}
        r.by_schema = dict(sorted(rows.items(), key=lambda kv: (tier_rank.get(kv[1]["tier"], 99), kv[0])))


def validate_files(
    paths: Iterable[str | os.PathLike],
    schemas: str | os.PathLike | Mapping[str, SchemaInfo],
    *,
    check_formats: bool = False,
    roles: Mapping[str | os.PathLike, str] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> ValidationReport:
    """Validate every line of every file in ``paths`` (see the module doc for the checks).

    ``schemas`` is a schemas directory or an already loaded ``load_schemas`` result.
    ``roles`` maps a path to ``"train"`` or ``"test"``; paths it does not name get
    their role from their file name (:func:`infer_role`). Raises :class:`DataError`
    when an input cannot be read at all (missing or empty file, bad schemas
    directory or schema file); problems inside files are failures in the report.
    """
    paths = list(dict.fromkeys(str(p) for p in paths))  # a file given twice is read once
    if not paths:
        raise DataError("no input files given")
    schemas_dir = None
    if not isinstance(schemas, Mapping):
        schemas_dir = str(schemas)
        schemas = load_schemas(schemas)
    explicit = {str(k): v for k, v in (roles or {}).items()}
    for p, role in explicit.items():
        if role not in ROLES:
            raise DataError(f"unknown role {role!r}: expected 'train' or 'test'", p)
    file_roles = {p: explicit.get(p, infer_role(p)) for p in paths}
    overlap = "train" in file_roles.values() and "test" in file_roles.values()

    formats = sorted(jsonschema.Draft7Validator.FORMAT_CHECKER.checkers) if check_formats else []
    report = ValidationReport(
        files=paths, schemas_dir=schemas_dir, check_formats=check_formats, formats=formats,
        roles=file_roles, overlap_checked=overlap,
    )
    col = _Collector(report, schemas)
    validators: dict[str, jsonschema.Draft7Validator] = {}

    # Scan all files first so a missing file fails before any work (exit 2, not 1).
    scans = [scan_records(p, schemas, max_line_bytes=max_line_bytes) for p in paths]
    records_by_role: dict[str, list[Record]] = {"train": [], "test": []}
    first_seen: dict[str, Record] = {}
    for p, scan in zip(paths, scans):
        for err in scan.errors:
            obj = scan.raw.get(err.line, {})
            rid = obj.get("id") if isinstance(obj.get("id"), str) else None
            sid = obj.get("schema_id") if isinstance(obj.get("schema_id"), str) else None
            col.line(p, err.line, sid)
            col.add(p, err.line, rid, sid, err.check or "parse", err.detail)
        for rec in scan.records:
            col.line(p, rec.line, rec.schema_id)
            v = validators.get(rec.schema_id)
            if v is None:
                v = validators[rec.schema_id] = _validator(schemas[rec.schema_id], check_formats)
            for msg in schema_problems(v, rec.expected_output):
                col.add(p, rec.line, rec.id, rec.schema_id, "schema_valid", msg)
            for msg in check_derived(rec.schema_id, rec.expected_output):
                col.add(p, rec.line, rec.id, rec.schema_id, "derived", msg)
            check = read_record(rec, schemas[rec.schema_id].schema).check
            report.prompts[check.kind] += 1
            if check.kind == "contradicts":
                col.add(p, rec.line, rec.id, rec.schema_id, "prompt", f"the gold contradicts its prompt: {check.message}")
            elif check.kind == "order_or_format":
                report.notes.append(Failure(p, rec.line, rec.id, rec.schema_id, "prompt", check.message))
            prev = first_seen.get(rec.id)
            if prev is None:
                first_seen[rec.id] = rec
            else:
                col.add(p, rec.line, rec.id, rec.schema_id, "duplicate_id",
                        f"id '{rec.id}' already used at {prev.file}:{prev.line}")
            role = file_roles[p]
            if role is not None:
                records_by_role[role].append(rec)

    if overlap:
        train_prompts: dict[str, Record] = {}
        train_outputs: dict[str, Record] = {}
        for rec in records_by_role["train"]:
            train_prompts.setdefault(rec.prompt, rec)
            train_outputs.setdefault(_canonical(rec.expected_output), rec)
        for rec in records_by_role["test"]:
            hit = train_prompts.get(rec.prompt)
            if hit is not None:
                col.add(rec.file, rec.line, rec.id, rec.schema_id, "train_test_overlap",
                        f"prompt identical to train record '{hit.id}' ({hit.file}:{hit.line})")
            hit = train_outputs.get(_canonical(rec.expected_output))
            if hit is not None:
                col.add(rec.file, rec.line, rec.id, rec.schema_id, "train_test_overlap",
                        f"expected_output identical to train record '{hit.id}' ({hit.file}:{hit.line})")
    col.finish()
    return report


def format_report(report: ValidationReport, max_failures: int = 20) -> str:
    """A per-schema x per-check table of failing records, a summary, and the first
    ``max_failures`` failures as ``file:line: id: check: message``.
    """
    abbrev = {"parse": "parse", "fields": "fields", "schema_known": "known", "schema_valid": "schema",
              "derived": "derived", "prompt": "prompt", "duplicate_id": "dup_id", "train_test_overlap": "overlap"}
    name_w = max([len("schema")] + [len(s) for s in report.by_schema])
    head = f"{'schema':<{name_w}}  {'tier':<7}  {'records':>7}  {'invalid':>7}  " + "  ".join(
        f"{abbrev[c]:>7}" for c in CHECKS)
    lines = [head, "-" * len(head)]
    for sid, row in report.by_schema.items():
        lines.append(f"{sid:<{name_w}}  {row['tier'] or '-':<7}  {row['records']:>7}  {row['invalid']:>7}  "
                     + "  ".join(f"{row[c]:>7}" for c in CHECKS))
    lines.append("-" * len(head))
    lines.append(f"{'total':<{name_w}}  {'':<7}  {report.records:>7}  {report.invalid:>7}  "
                 + "  ".join(f"{report.by_check[c]:>7}" for c in CHECKS))
    lines.append("")
    lines.append(f"records: {report.records}   invalid: {report.invalid}   failures: {len(report.failures)}")
    pk = report.prompts
    lines.append(f"gold vs prompt: {pk['renders']} render as their prompt, {pk['order_or_format']} differ only in key "
                 f"order or number format (no contradiction), {pk['contradicts']} contradict their prompt (check "
                 f"'prompt'), {pk['not_template']} prompts are not the EdgeJSON template (not read)")
    if report.check_formats:
        lines.append(f"format checks: on ({', '.join(report.formats)})")
    else:
        lines.append("format checks: off (--check-formats turns them on)")
    if report.overlap_checked:
        by_role = {r: [f for f, role in report.roles.items() if role == r] for r in ROLES}
        lines.append(f"train/test overlap: checked (train: {', '.join(by_role['train'])}; "
                     f"test: {', '.join(by_role['test'])})")
    else:
        lines.append("train/test overlap: not checked (needs a train*.jsonl and a test*.jsonl file)")
    if report.failures:
        shown = report.failures[:max_failures]
        lines.append("")
        lines.append(f"first {len(shown)} of {len(report.failures)} failures:")
        lines.extend(str(f) for f in shown)
    if report.notes:
        shown = report.notes[:max_failures]
        lines.append("")
        lines.append(f"no contradiction, {len(shown)} of {len(report.notes)}:")
        lines.extend(str(f) for f in shown)
    return "\n".join(lines)

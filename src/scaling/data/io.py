"""Reading EdgeJSON-layout datasets: schemas, JSONL records, whole datasets.

Layout::

    <root>/schemas/<tier>/<schema_id>.json    one JSON Schema (draft-07) per file
    <root>/<version>/train.jsonl              one record per line
    <root>/<version>/test.jsonl

A record is a JSON object with at least ``id`` (str), ``schema_id`` (str),
``prompt`` (str) and ``expected_output`` (object); other fields (``complexity``,
``teacher``, ``source``, ``schema_name``...) are allowed and ignored. A record's tier
is the name of the folder that holds its schema, never the record's own
``complexity`` field (which 92 EdgeJSON v3 records lack).

The reader is strict: :func:`read_records` raises :class:`DataError` naming the
file, line and field of the first problem. :func:`scan_records` is the same reader
in collecting mode, used by :mod:`scaling.data.validate` so that one bad line does
not hide the others.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema

from scaling.errors import LocatedError

TIERS = ("simple", "medium", "complex")

#: Longest accepted line, in bytes, without its newline (1 MiB). EdgeJSON's longest
#: line is about 11 KB; anything near this limit is a broken file, not a record.
MAX_LINE_BYTES = 1 << 20

# Reads of an over-long line's remainder, which is skipped without being kept.
_SKIP_CHUNK = 1 << 16

REQUIRED_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("id", str, "string"),
    ("schema_id", str, "string"),
    ("prompt", str, "string"),
    ("expected_output", dict, "object"),
)


class DataError(LocatedError):
    """A problem with input data, located as precisely as known.

    ``str(err)`` is ``"file:line: field 'f': message"``; the parts that are not known
    (``None``) are left out (:class:`scaling.errors.LocatedError`). ``check`` names the
    validation check the problem belongs to (``"parse"``, ``"fields"``, ``"schema_known"``)
    for record-level problems, and is ``None`` for file-level ones (missing file, bad schema,
    empty file).
    """

    def __init__(
        self,
        message: str,
        file: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
        *,
        check: str | None = None,
    ) -> None:
        self.check = check
        super().__init__(message, file, line, field)

    def __reduce__(self):  # keep pickling (multiprocessing, datasets) working
        return (_rebuild_data_error, (self.message, self.file, self.line, self.field, self.check))


def _rebuild_data_error(message, file, line, field, check):
    return DataError(message, file, line, field, check=check)


@dataclass(frozen=True)
class SchemaInfo:
    """One JSON Schema file: ``schema_id`` is the file stem, ``tier`` its folder name."""

    schema_id: str
    tier: str
    schema: dict
    path: Path


@dataclass(frozen=True)
class Record:
    """One example. ``line`` is 1-based; ``file`` is the path as given to the reader."""

    id: str
    schema_id: str
    tier: str
    prompt: str
    expected_output: Any
    file: str
    line: int


@dataclass(frozen=True)
class Dataset:
    """A train/test pair with its schemas.

    ``files`` maps every file read (the two JSONL files, then each schema file) to the
    SHA-256 of its bytes, for provenance in ``results.json``.
    """

    name: str
    version: str
    root: Path | None
    schemas: dict[str, SchemaInfo]
    train: list[Record]
    test: list[Record]
    files: dict[str, str]
    extra_train: list[Record] = field(default_factory=list)
    """Records of ``data.extra_train_file`` (the data axis past the train split), kept apart so
    that validation is drawn from ``train`` alone; their file follows the schemas in ``files``."""

    def split(self, name: str) -> list[Record]:
        """The records of split ``"train"`` or ``"test"``."""
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ValueError(f"unknown split {name!r}: expected 'train' or 'test'")


# --------------------------------------------------------------------------- schemas


def _read_json_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x})", path, line) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path, e.lineno) from None


def _json_path(parts) -> str:
    """``['line_items', 2, 'total']`` -> ``line_items[2].total``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


def load_schema(path: str | os.PathLike, tier: str) -> SchemaInfo:
    """Read and check one schema file (must be a valid draft-07 JSON Schema object)."""
    path = Path(path)
    schema = _read_json_file(path)
    if not isinstance(schema, dict):
        raise DataError(f"a schema must be a JSON object, got {json_type_name(schema)}", path)
    try:
        jsonschema.Draft7Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = _json_path(e.absolute_path) or None
        raise DataError(f"not a valid JSON Schema (draft-07): {_short(e.message)}", path, field=where) from None
    return SchemaInfo(schema_id=path.stem, tier=tier, schema=schema, path=path)


def load_schemas(schemas_dir: str | os.PathLike) -> dict[str, SchemaInfo]:
    """All schemas under ``schemas_dir/<tier>/<schema_id>.json``, keyed by schema_id.

    The folders directly under ``schemas_dir`` must be tier names (:data:`TIERS`); a
    JSON file directly under ``schemas_dir``, another folder, a schema_id found in two
    tiers, or no schema at all is a :class:`DataError`. Files not ending in ``.json``
    and hidden entries are ignored. The result is ordered by tier, then schema_id.
    """
    root = Path(schemas_dir)
    if not root.exists():
        raise DataError("schemas directory not found", root)
    if not root.is_dir():
        raise DataError("schemas path is not a directory", root)
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise DataError(f"cannot list schemas directory: {e.strerror or e}", root) from None
    for p in entries:
        if p.is_dir() and p.name not in TIERS:
            raise DataError(
                f"unexpected folder '{p.name}' in schemas directory: tier folders are {', '.join(TIERS)}", root
            )
        if p.is_file() and p.suffix == ".json":
            raise DataError(
                f"schema file outside a tier folder: put it in one of {', '.join(TIERS)}/", p
            )
    schemas: dict[str, SchemaInfo] = {}
    for tier in TIERS:
        folder = root / tier
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("."):
                continue
            info = load_schema(path, tier)
            if info.schema_id in schemas:
                other = schemas[info.schema_id].path
                raise DataError(f"schema_id '{info.schema_id}' is also defined in {other}", path)
            schemas[info.schema_id] = info
    if not schemas:
        raise DataError(f"no schemas found: expected <tier>/<schema_id>.json with tier in {', '.join(TIERS)}", root)
    return schemas


# --------------------------------------------------------------------------- records


@dataclass
class FileScan:
    """What :func:`scan_records` read from one file.

    ``lines`` counts every line read (blank or not); ``records`` holds the lines that
    parsed into a :class:`Record`; ``errors`` the others, in line order, each with its
    ``check``. ``sha256`` is the hash of all bytes read (the whole file when the scan
    was not stopped early). ``raw`` maps a line number to the parsed JSON object for
    lines that parsed as an object but failed the field or schema_id checks, so a
    validator can still report their id.
    """

    path: str
    lines: int = 0
    records: list[Record] = field(default_factory=list)
    errors: list[DataError] = field(default_factory=list)
    raw: dict[int, dict] = field(default_factory=dict)
    sha256: str = ""


def json_type_name(v: Any) -> str:
    """The JSON name of a Python value's type (for error messages)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity, which are not JSON; other readers choke on them.
    raise ValueError(f"non-standard JSON constant {name}")


class DuplicateKey(ValueError):
    """A JSON object with the same key twice (json.loads would keep the last silently)."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


def _iter_lines(fh, path: str, max_line_bytes: int, hasher) -> Iterator[tuple[int, bytes | DataError]]:
    """Yield ``(line_number, bytes_without_newline)`` or a ``DataError`` for a too-long line.

    Reads at most ``max_line_bytes + 1`` bytes per line, so a huge line costs bounded
    memory: its remainder is read in small chunks and dropped.
    """
    n = 0
    while True:
        chunk = fh.readline(max_line_bytes + 1)
        if not chunk:
            return
        n += 1
        hasher.update(chunk)
        body = chunk[:-1] if chunk.endswith(b"\n") else chunk
        if len(body) > max_line_bytes:
            size = len(chunk)
            while not chunk.endswith(b"\n"):
                chunk = fh.readline(_SKIP_CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                size += len(chunk)
            yield n, DataError(
                f"line longer than the limit of {max_line_bytes} bytes (at least {size} bytes; "
                "--max-line-bytes raises the limit)",
                path, n, check="parse",
            )
            continue
        yield n, body


def parse_json_line(body: bytes, path: str | os.PathLike, n: int, error: type[DataError] = DataError,
                    blank: str = "every line must hold one JSON object", check: str | None = None) -> Any:
    """Line ``n`` of a JSONL file as strict JSON: UTF-8, not blank, no duplicate key, no
    NaN/Infinity. Anything else raises ``error`` (a :class:`DataError`) naming the file, line
    and, for a duplicate key, the key; ``blank`` says what a blank line should have held."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"not valid UTF-8 (byte 0x{body[e.start]:02x} at byte offset {e.start} of the line)",
                    path, n, check=check) from None
    if not text.strip():
        raise error(f"blank line: {blank}", path, n, check=check)
    try:
        return json.loads(text, parse_constant=reject_constant, object_pairs_hook=no_duplicate_keys)
    except DuplicateKey as e:
        raise error("duplicate key in a JSON object", path, n, field=str(e), check=check) from None
    except json.JSONDecodeError as e:
        raise error(f"invalid JSON: {e.msg} (column {e.colno})", path, n, check=check) from None
    except (ValueError, RecursionError) as e:
        raise error(f"invalid JSON: {e}", path, n, check=check) from None


def _parse_line(body: bytes, path: str, n: int, schemas: Mapping[str, SchemaInfo]) -> Record | tuple[DataError, dict | None]:
    """One line to a Record, or ``(error, parsed object or None)``."""
    try:
        obj = parse_json_line(body, path, n, check="parse")
    except DataError as e:
        return e, None
    if not isinstance(obj, dict):
        return DataError(f"expected a JSON object, got {json_type_name(obj)}", path, n, check="parse"), None
    for name, typ, typ_name in REQUIRED_FIELDS:
        if name not in obj:
            return DataError("missing required field", path, n, field=name, check="fields"), obj
        v = obj[name]
        if not isinstance(v, typ):
            return DataError(f"expected {typ_name}, got {json_type_name(v)}", path, n, field=name, check="fields"), obj
        if typ is str and not v.strip():
            return DataError("must be a non-empty string", path, n, field=name, check="fields"), obj
    info = schemas.get(obj["schema_id"])
    if info is None:
        known = sorted(schemas)
        listed = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        return DataError(
            f"unknown schema_id '{_short(obj['schema_id'], 60)}' (known: {listed})",
            path, n, field="schema_id", check="schema_known",
        ), obj
    return Record(
        id=obj["id"], schema_id=obj["schema_id"], tier=info.tier, prompt=obj["prompt"],
        expected_output=obj["expected_output"], file=path, line=n,
    )


def _open_jsonl(path: str):
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path)
    if p.is_dir():
        raise DataError("is a directory, expected a JSONL file", path)
    try:
        return open(p, "rb")
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror or e}", path) from None


def scan_records(
    path: str | os.PathLike,
    schemas: Mapping[str, SchemaInfo],
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    stop_at_first: bool = False,
) -> FileScan:
    """Read a JSONL file line by line, collecting records and line-level errors.

    File-level problems (missing, unreadable, a directory, no line at all) raise
    :class:`DataError`. Line-level problems (invalid UTF-8, a line over
    ``max_line_bytes``, a blank line, invalid JSON, not an object, a missing or
    mistyped required field, an unknown schema_id) are collected in
    ``FileScan.errors``; with ``stop_at_first`` the scan ends at the first one.
    """
    spath = str(path)
    hasher = hashlib.sha256()
    scan = FileScan(path=spath)
    fh = _open_jsonl(spath)
    with fh:
        try:
            for n, body in _iter_lines(fh, spath, max_line_bytes, hasher):
                scan.lines = n
                if isinstance(body, DataError):
                    scan.errors.append(body)
                else:
                    out = _parse_line(body, spath, n, schemas)
                    if isinstance(out, Record):
                        scan.records.append(out)
                        continue
                    err, obj = out
                    scan.errors.append(err)
                    if obj is not None:
                        scan.raw[n] = obj
                if stop_at_first:
                    break
        except OSError as e:
            raise DataError(f"read error: {e.strerror or e}", spath, scan.lines + 1) from None
    if scan.lines == 0:
        raise DataError("empty file: no records", spath)
    scan.sha256 = hasher.hexdigest()
    return scan


def read_records(
    path: str | os.PathLike,
    schemas: Mapping[str, SchemaInfo],
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> list[Record]:
    """All records of a JSONL file; raises :class:`DataError` on the first bad line.

    Each record's ``tier`` is its schema's folder. See :func:`scan_records` for what
    counts as bad.
    """
    scan = scan_records(path, schemas, max_line_bytes=max_line_bytes, stop_at_first=True)
    if scan.errors:
        raise scan.errors[0]
    return scan.records


def sha256_file(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_dataset(
    root: str | os.PathLike | None,
    version: str = "v3",
    train_file: str | os.PathLike | None = None,
    test_file: str | os.PathLike | None = None,
    schemas_dir: str | os.PathLike | None = None,
    name: str = "edgejson",
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Dataset:
    """Load a train/test pair strictly (first bad line raises :class:`DataError`).

    Defaults follow the EdgeJSON layout: ``<root>/<version>/train.jsonl``,
    ``<root>/<version>/test.jsonl`` and ``<root>/schemas``. ``train_file``,
    ``test_file`` and ``schemas_dir`` override each part; with all three given,
    ``root`` may be ``None``.
    """
    root_path = None if root is None else Path(root)
    if root_path is not None and not root_path.is_dir():
        raise DataError("dataset root not found (or not a directory)", root_path)

    def part(explicit, *rel: str, what: str) -> Path:
        if explicit is not None:
            return Path(explicit)
        if root_path is None:
            raise DataError(f"no dataset root given, so {what} must be given explicitly")
        return root_path.joinpath(*rel)

    schemas_path = part(schemas_dir, "schemas", what="schemas_dir")
    train_path = part(train_file, version, "train.jsonl", what="train_file")
    test_path = part(test_file, version, "test.jsonl", what="test_file")

    schemas = load_schemas(schemas_path)
    files: dict[str, str] = {}
    splits = {}
    for split, path in (("train", train_path), ("test", test_path)):
        scan = scan_records(path, schemas, max_line_bytes=max_line_bytes, stop_at_first=True)
        if scan.errors:
            raise scan.errors[0]
        splits[split] = scan.records
        files[str(path)] = scan.sha256
    for info in schemas.values():
        files[str(info.path)] = sha256_file(info.path)
    return Dataset(
        name=name, version=version, root=root_path, schemas=schemas,
        train=splits["train"], test=splits["test"], files=files,
    )


def to_hf_dataset(records: list[Record]):
    """A :class:`datasets.Dataset` with columns ``id``, ``schema_id``, ``tier``,
    ``prompt`` and ``expected_output`` (the object as a JSON string, key order kept,
    non-ASCII kept as is) — one row per record, in order.
    """
    import datasets  # heavy import, only paid by callers that want it

    return datasets.Dataset.from_dict(
        {
            "id": [r.id for r in records],
            "schema_id": [r.schema_id for r in records],
            "tier": [r.tier for r in records],
            "prompt": [r.prompt for r in records],
            "expected_output": [json.dumps(r.expected_output, ensure_ascii=False) for r in records],
        },
        features=datasets.Features({k: datasets.Value("string") for k in
                                    ("id", "schema_id", "tier", "prompt", "expected_output")}),
    )

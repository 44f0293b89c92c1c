"""Test records are never trained on: the check a job's data passes before anything is trained.

A job is refused (:class:`~scaling.data.io.DataError` naming the training file, the line of the
first offending record and the setting that chose the file) when its training file

- is a test file: the one the job is scored on, or any ``test*.jsonl`` in a folder of the dataset
  root (``v3/test.jsonl``, ``v2/test.jsonl``, ``v3_extra/test_complex.jsonl``), which are kept for
  testing whatever this job scores on; or
- holds a record whose id or prompt is also in one of those test files.

EdgeJSON's own files pass: no training file shares an id or a prompt with any test file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from scaling.data.io import DataError, Dataset, Record, parse_json_line

#: The files of a dataset root's folders that hold test records (``<root>/<folder>/<name>``).
TEST_FILE_GLOB = "*/test*.jsonl"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def _keys(path: Path) -> list[tuple[str, str, int]]:
    """``(id, prompt, line)`` of every record of a test file the job does not score on; only those
    two fields are read (the job never loads that file)."""
    out = []
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            body = raw.rstrip(b"\r\n")
            if not body.strip():
                continue
            row = parse_json_line(body, path, n)
            if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("prompt"), str):
                out.append((row["id"], row["prompt"], n))
    return out


def held_out_files(dataset: Dataset) -> list[tuple[Path, list[tuple[str, str, int]]]]:
    """The test files a job's training must stay clear of, with ``(id, prompt, line)`` of their
    records: the one it scores on first, then the dataset root's ``test*.jsonl`` files."""
    scored = Path(dataset.test[0].file) if dataset.test else None
    out = [(scored, [(r.id, r.prompt, r.line) for r in dataset.test])] if scored is not None else []
    if dataset.root is not None and dataset.root.is_dir():
        for path in sorted(dataset.root.glob(TEST_FILE_GLOB)):
            if path.is_file() and not any(_same_file(path, seen) for seen, _ in out):
                out.append((path, _keys(path)))
    return out


def check_held_out(dataset: Dataset, setting: str, records: Sequence[Record] | None = None) -> None:
    """Refuse a dataset whose training records are, or share an id or a prompt with, test records.

    ``setting`` names the config key that chose the training file (``data.train_file``,
    ``data.train_version``, or ``data.version`` for the layout's ``<root>/<version>/train.jsonl``);
    ``records`` are the training records to check (default ``dataset.train``; the records of
    ``data.extra_train_file`` are checked the same way)."""
    train = dataset.train if records is None else records
    if not train:
        return
    train_file = Path(train[0].file)
    for k, (path, keys) in enumerate(held_out_files(dataset)):
        if _same_file(train_file, path):
            what = "the file this job is scored on" if k == 0 else "a test file"
            raise DataError(f"is {what} ({len(keys)} test records): a job never trains on test records; train on a "
                            "train file (<root>/<version>/train.jsonl)", train_file, field=setting)
        clash = _first_clash(train, keys)
        if clash is not None:
            record, what, line, n = clash
            more = f" ({n - 1} more training records share an id or a prompt with it)" if n > 1 else ""
            raise DataError(f"record {record.id!r} has the {what} of {path}:{line}{more}: a job never trains on "
                            "records it may be tested on; leave them out of the training file", train_file,
                            record.line, field=setting)


def _first_clash(train: Sequence[Record], keys: Iterable[tuple[str, str, int]]) -> tuple[Record, str, int, int] | None:
    """The first training record that shares an id or a prompt with ``keys`` (what it shares, the
    test file's line) and how many training records do."""
    by_id: dict[str, int] = {}
    by_prompt: dict[str, int] = {}
    for rid, prompt, line in keys:
        by_id.setdefault(rid, line)
        by_prompt.setdefault(prompt, line)
    first, count = None, 0
    for record in train:
        what = "id" if record.id in by_id else "prompt" if record.prompt in by_prompt else None
        if what is None:
            continue
        count += 1
        if first is None:
            first = (record, what, by_id[record.id] if what == "id" else by_prompt[record.prompt])
    return None if first is None else (*first, count)

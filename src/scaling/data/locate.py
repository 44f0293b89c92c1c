"""Find a data file a finished run recorded, on this machine.

A run's ``results.json`` names its data files as the job saw them (``data.files``: path ->
sha256), absolute (``/work/shared/edgejson/v3/test.jsonl``) or relative to the checkout it ran
in (``../shared/edgejson/v3/test.jsonl``), and the dataset root (``data.root``). Elsewhere the
same file is found under ``$EDGEJSON_DIR`` (or a ``data_dir`` given) at the same place below
the root, and accepted only if its sha256 is the one recorded.
"""

from __future__ import annotations

import os
from pathlib import Path

from scaling.data.io import DataError, sha256_file


def recorded_file_candidates(name: str, root: str | None, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the recorded file ``name`` may be now, in order: at its place below ``root`` under
    ``data_dir`` when one is given (it overrides), as named (relative to the current folder),
    then at its place under ``$EDGEJSON_DIR``."""
    path = Path(name)
    as_named = path if path.is_absolute() else Path.cwd() / path

    def under(base) -> list[Path]:
        if not base or not root:
            return []
        rel = os.path.relpath(os.path.normpath(name), os.path.normpath(str(root)))
        return [] if rel.startswith("..") else [Path(base).expanduser() / rel]

    if data_dir is not None:
        return under(data_dir) + [as_named]
    return [as_named] + under(os.environ.get("EDGEJSON_DIR"))


def find_recorded_file(name: str, root: str | None, sha256: str | None, where: str,
                       data_dir: str | os.PathLike | None = None, error: type[Exception] = DataError,
                       what: str = "data file", how: str = "the run used another file") -> Path:
    """The file a run recorded as ``name``, found (:func:`recorded_file_candidates`) and
    checked against the recorded ``sha256``; ``error`` naming ``where`` (the results file and
    field) when it is missing or another file (``what`` names the file's role, ``how`` says
    what a mismatch means)."""
    candidates = recorded_file_candidates(name, root, data_dir)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        hint = "" if (data_dir or os.environ.get("EDGEJSON_DIR")) else " or set EDGEJSON_DIR"
        raise error(f"{where}: the {what} {name} is not at " + " nor ".join(str(c) for c in candidates)
                    + f"; pass --data DIR{hint}")
    if isinstance(sha256, str) and len(sha256) == 64:
        actual = sha256_file(path)
        if actual != sha256:
            raise error(f"{path}: sha256 {actual[:12]} is not the {sha256[:12]} {where} recorded for {name}: {how}")
    return path

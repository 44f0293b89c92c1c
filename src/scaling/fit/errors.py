"""The one error type of :mod:`scaling.fit`."""

from __future__ import annotations

from pathlib import Path


class FitError(Exception):
    """Bad input to the analysis: a missing sweep, no usable job, a malformed reference file.

    ``str()`` is ``"file:line: field 'f': message"`` with the parts that are known, so a CLI
    can print it as ``error: ...`` without a traceback.
    """

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}{what}{self.message}"

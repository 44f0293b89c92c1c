"""The one base of the errors that say where a problem is: a file, a line, a field.

Every error of the package that names a file, a line or a field derives from
:class:`LocatedError` (:class:`scaling.data.DataError` and the errors built on it, FitError,
FailuresError, the export, source-job, checkpoint, config and MiniModel errors), so
``str(err)`` is formatted in one place and a CLI can print any of them as ``error: ...``
without a traceback. Errors about state rather than input (a held job lock, a missing tool, a
model that cannot be built) are not located and keep their own bases.
"""

from __future__ import annotations

import os


class LocatedError(Exception):
    """A problem located as precisely as known.

    ``str(err)`` is ``"file:line: field 'f': message"``; the parts that are not known
    (``None``, or an empty file name) are left out: ``"line 3: message"`` without a file, the
    bare message without any part. An error raised with a message that already names its
    place (``"<path>: no such file"``) and no parts prints that message unchanged.
    """

    def __init__(self, message: str, file: str | os.PathLike | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.line = line
        self.field = field
        super().__init__(str(self))

    @property
    def where(self) -> str:
        """``file:line``, ``file``, ``line N`` or ``""``: the place without the field."""
        where = self.file or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        return where

    @property
    def detail(self) -> str:
        """The message with its field, without the file and line."""
        return f"field '{self.field}': {self.message}" if self.field else self.message

    def __str__(self) -> str:
        where = self.where
        return f"{where}: {self.detail}" if where else self.detail

    def __reduce__(self):  # pickling (multiprocessing) rebuilds the same class with the same parts
        return (type(self), (self.message, self.file, self.line, self.field))

"""The one error type of :mod:`scaling.fit`."""

from __future__ import annotations

from scaling.errors import LocatedError


class FitError(LocatedError):
    """Bad input to the analysis: a missing sweep, no usable job, a malformed reference file.

    ``str()`` is ``"file:line: field 'f': message"`` with the parts that are known
    (:class:`scaling.errors.LocatedError`), so a CLI can print it as ``error: ...`` without a
    traceback.
    """

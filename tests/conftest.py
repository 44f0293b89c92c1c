"""Shared pytest fixtures.

Real data is read in place from ``../shared/edgejson`` (beside the repository) or from
``$EDGEJSON_DIR``; it is never copied into the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def edgejson_dir() -> Path:
    """The EdgeJSON root (``schemas/`` and ``v3/``); skips the test when it is missing."""
    path = Path(os.environ.get("EDGEJSON_DIR") or REPO_ROOT.parent / "shared" / "edgejson").expanduser()
    if not (path / "schemas").is_dir():
        pytest.skip(f"EdgeJSON data not found at {path} (set EDGEJSON_DIR)")
    return path

"""Where the project's config tree lives: the one locator every command uses.

The Hydra configs are the top-level ``conf/`` of the repository (the package is installed
editable from it). ``SCALING_CONF_DIR`` points elsewhere, e.g. a copy on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

CONF_ENV = "SCALING_CONF_DIR"
"""The environment variable that moves the config tree."""

REPO_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """The config folder, read now: ``$SCALING_CONF_DIR`` when set, else ``conf/`` beside ``src/``."""
    return Path(os.environ.get(CONF_ENV) or REPO_ROOT / "conf").resolve()


CONF_DIR = conf_dir()
"""The config folder as the process started (Hydra's ``config_path`` is fixed at import)."""

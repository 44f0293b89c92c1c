"""Where the project's config tree lives.

The Hydra configs are the top-level ``conf/`` of the repository (the package is installed
editable from it). ``SCALING_CONF_DIR`` points elsewhere, e.g. a copy on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(os.environ.get("SCALING_CONF_DIR", REPO_ROOT / "conf")).resolve()

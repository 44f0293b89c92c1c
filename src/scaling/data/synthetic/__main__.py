"""``python -m scaling.data.synthetic --out DIR [--seed N] [--n-train N] [--n-test N]``."""

import sys

from .cli import main

sys.exit(main())

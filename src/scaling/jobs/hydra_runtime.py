"""Where Hydra says a job runs: its output folder, its number in a sweep, whether it is one.

Its own module, below both :mod:`scaling.jobs.sweep` (the task function) and
:mod:`scaling.jobs.run` (the job), which each need it.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def hydra_job_dir() -> Path:
    """The running job's output folder (``hydra.runtime.output_dir``)."""
    return Path(HydraConfig.get().runtime.output_dir)


def is_multirun() -> bool:
    """Whether this job is one of a ``-m`` sweep (False outside Hydra)."""
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def job_num() -> int:
    """The job's number in its sweep."""
    return int(HydraConfig.get().job.num)

"""``python -m scaling.train``: one job = data -> model -> fine-tune -> evaluate -> results.json.

The flow of a job, on one screen, is :func:`scaling.pipeline.train_and_evaluate`: read it first.

    python -m scaling.train -m model=smol135,minimodel200,smol360      # the ladder
    python -m scaling.train -m model=tiny_s,tiny_m seed=0,1,2           # seeds
    python -m scaling.train -m finetune=none,full decode=greedy,constrained

This module is a thin Hydra entry over :mod:`scaling.jobs`, where a job's life around those
steps is (:mod:`scaling.jobs.run`): the lock, skip and resume, the hashes, the train cache,
W&B and the results record. A failing job never stops the sweep; the sweep's exit status
is 1 when any job failed (see :mod:`scaling.jobs.sweep`).
"""

from __future__ import annotations

from scaling.jobs.identity import config_hash, train_hash  # noqa: F401 - public names of the job's hashes
from scaling.jobs.sweep import hydra_entry


def main() -> None:
    hydra_entry("train")


if __name__ == "__main__":
    main()

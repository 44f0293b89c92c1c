"""Run against run: paired deltas, McNemar tests and the examples that flip.

    python -m scaling.compare BASELINE_RUN RUN [RUN ...] [--labels a,b,c]
        [--group NAME=schema,schema ...] [--intersect] [--all-pairs]
        [--data-check LABEL=DIR ...] [--schemas DIR] [--name NAME] [--out DIR]

Reads each run folder's ``results.json`` and ``predictions.jsonl`` (:mod:`.runs`), pairs the
examples by id, and compares the first run (the baseline) with each other one
(:mod:`.deltas`, with the tests of :mod:`scaling.stats`): deltas of JSONExact, Field F1 and schema compliance overall, per tier, per
schema and per named group of schemas, with paired-bootstrap intervals, an exact McNemar test
on JSONExact, and the ids each run alone answers exactly. ``--data-check`` adds what the
validator and the data say about the training sets (:mod:`.datacheck`). The report
(:mod:`.report`) lands in ``outputs/compare/<name>/``.
"""

from scaling.compare.datacheck import VersionCheck, VersionDiff, check_version, diff_versions
from scaling.compare.report import Comparison, build, markdown, write
from scaling.compare.runs import Alignment, CompareError, Run, align, load_run, read_predictions
from scaling.stats import McNemar, mcnemar_exact
from scaling.compare.deltas import PairComparison, compare_runs

__all__ = [
    "Alignment", "CompareError", "Comparison", "McNemar", "PairComparison", "Run", "VersionCheck", "VersionDiff",
    "align", "build", "check_version", "compare_runs", "diff_versions", "load_run", "markdown", "mcnemar_exact",
    "read_predictions", "write",
]

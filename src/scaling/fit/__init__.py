"""``scaling.fit``: results.json -> scaling fits, intervals, verdicts, ladder, figures, tables.

Reads only what training jobs write (``results.json`` and ``predictions.jsonl``, see
:mod:`scaling.results`); never imports training code, torch or a model.

Pipeline: :func:`collect` (jobs -> series of models, seeds combined) -> :func:`analyse`
(paired bootstrap scores, gain per 100M between rungs, log-linear / logistic fits,
diminishing returns, capacity thresholds, verdicts, ladder) -> :func:`make_figures`,
:func:`write_tables`, ``fit.json`` and ``report.md`` (:func:`run_fit` does all of it from a
config; ``python -m scaling.fit`` is its Hydra CLI).
"""

from scaling.fit.analysis import Analysis, Curve, analyse, build_curve, fit_summary
from scaling.stats import paired_bootstrap, percentile_ci
from scaling.fit.collect import (METRICS, OVERALL, Collection, FinishedJob, ReferenceSeries, Series, collect,
                                 load_reference, newest_sweep, read_job, read_predictions)
from scaling.fit.config import REFERENCE_LADDER, Settings, anchor_paths, conf_dir, project_root
from scaling.fit.errors import FitError
from scaling.fit.figures import FIGURES, make_figures
from scaling.fit.fits import (CapacityThreshold, DiminishingReturns, LogisticFit, LogLinearFit, RungGain,
                              capacity_threshold, diminishing_returns, diminishing_returns_rungs, fit_logistic,
                              fit_loglinear, logistic, rung_gains)
from scaling.fit.document import fit_document
from scaling.fit.report import render_report
from scaling.fit.run import FitRun, load_config, run_fit
from scaling.fit.scores import SeriesScores, category_of
from scaling.fit.tables import Table, all_tables, write_tables
from scaling.fit.verdicts import Verdict, build_ladder, evaluate_track

__all__ = [
    "Analysis", "Curve", "analyse", "build_curve", "fit_summary", "paired_bootstrap", "percentile_ci", "METRICS",
    "OVERALL", "Collection", "FinishedJob", "ReferenceSeries", "Series", "collect", "load_reference", "newest_sweep",
    "read_job", "read_predictions", "Settings", "conf_dir", "REFERENCE_LADDER", "anchor_paths", "project_root",
    "FitError", "FIGURES", "make_figures",
    "CapacityThreshold", "DiminishingReturns", "LogisticFit", "LogLinearFit", "RungGain", "capacity_threshold",
    "diminishing_returns", "diminishing_returns_rungs", "fit_logistic", "fit_loglinear", "logistic", "rung_gains",
    "FitRun", "fit_document", "load_config", "render_report", "run_fit", "SeriesScores", "category_of", "Table",
    "all_tables", "write_tables", "Verdict", "build_ladder", "evaluate_track",
]

"""Where a job's training curves and results go besides ``results.json``: the CSV log and W&B.

Every job is its own W&B run (closed in a ``finally``); its summary carries the evaluation
metrics. ``metrics.csv`` keeps the whole history of a job that was resumed: the rows of
earlier attempts up to the checkpoint it resumed from, then the resumed run's.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from scaling.metrics import HEADLINE_METRICS
from scaling.results import atomic_write_text


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting the metrics.csv it finds (it appends to it)."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            self.metrics_keys = sorted(header)  # Lightning writes (and extends) sorted headers

    def _check_log_dir_exists(self) -> None:
        # Lightning removes metrics.csv here ("Previous log files ... will be deleted"): the
        # history of a resumed job. ResumableCSVLogger.resume_at trims it instead.
        return None


class ResumableCSVLogger(CSVLogger):
    """:class:`lightning.pytorch.loggers.CSVLogger` that keeps a resumed job's history.

    The job calls :meth:`resume_at` with the step it resumes from before training; rows are
    flushed at every logging step so a killed attempt loses none it had logged.
    """

    def __init__(self, *args: Any, flush_logs_every_n_steps: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)

    @property
    def metrics_path(self) -> Path:
        return Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE

    def resume_at(self, step: int) -> None:
        """Keep the rows logged before optimiser step ``step`` (the checkpoint's
        ``global_step``); the rows after it are logged again by the resumed run. ``0``: a
        fresh start, the old file goes."""
        path = self.metrics_path
        if not path.is_file():
            return
        if step <= 0:
            path.unlink()
            return
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = [r for r in reader if _step(r) is not None and _step(r) < step]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")  # as csv's default dialect
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, out.getvalue())

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def _step(row: dict) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


def build_loggers(cfg) -> list:
    """The Lightning loggers of ``cfg.logger`` (``logger=none``: none)."""
    return [instantiate(conf) for conf in (cfg.get("logger") or {}).values()
            if conf is not None and "_target_" in conf]


def wandb_loggers(loggers: list) -> list:
    return [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]


def wandb_tags(loggers: list, category: str, n_params: int) -> None:
    """Tag the W&B run with the measured size category and parameter count."""
    for lg in wandb_loggers(loggers):
        run = lg.experiment
        run.tags = tuple(run.tags or ()) + (category, f"{n_params / 1e6:.0f}M")


def wandb_results(loggers: list, record: dict, rows: list[dict]) -> None:
    """The evaluation metrics into the W&B summary, the predictions as a table."""
    split = record["data"]["eval_split"]  # "test" or "val": val scores never show up as test ones
    for lg in wandb_loggers(loggers):
        import wandb  # here: only jobs that log to W&B pay for importing it

        run = lg.experiment
        run.config.update(record["config"], allow_val_change=True)
        summary = {f"params/{k}": v for k, v in record["params"].items()}
        for key, value in record["metrics"]["overall"].items():
            if isinstance(value, (int, float)):
                summary[f"{split}/{key}"] = value
        for tier, m in record["metrics"]["by_tier"].items():
            for key in HEADLINE_METRICS:
                summary[f"{split}/{tier}/{key}"] = m[key]
        summary.update({f"eval/{k}": v for k, v in record["eval"].items() if isinstance(v, (int, float))})
        run.summary.update(summary)
        columns = ["id", "schema_id", "tier", "status", *HEADLINE_METRICS, "output"]
        table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        run.log({f"{split}/predictions": table})


def finish_wandb(loggers: list, record: dict) -> None:
    """Close the W&B run of this job (each multirun job is its own run)."""
    if not wandb_loggers(loggers):
        return
    import wandb

    if wandb.run is not None:
        wandb.run.summary["status"] = record.get("status")
        wandb.finish(exit_code=0 if record.get("status") == "completed" else 1)

"""Where a job's training curves and results go besides ``results.json``: the CSV log and W&B.

Every job is its own W&B run (closed in a ``finally``). The run holds the job's whole
resolved config from ``wandb.init`` on, flattened to dotted keys (``finetune.optim.lr``):
a W&B sweep locks the top-level keys it sets (``model``, ``seed``...), and a nested update
of a locked key is refused, while dotted keys never collide with them. Its summary carries
the evaluation metrics, or the error of a failed job. ``metrics.csv`` keeps the whole
history of a job that was resumed: the rows of earlier attempts up to the checkpoint it
resumed from, then the resumed run's.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
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


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` (``conf/logger/wandb.yaml``), minus two warnings at every
    job start: the ``anonymous=None`` Lightning always passes to ``wandb.init`` (a setting
    W&B deprecated), and under a W&B sweep agent the project and entity (the sweep's own
    win; W&B says it ignores ours)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        if os.environ.get("WANDB_SWEEP_ID"):
            self._wandb_init.pop("project", None)
            self._wandb_init.pop("entity", None)


def _not_advertising(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("💡 Tip")


def tidy_lightning_logging() -> None:
    """Lightning's log lines once each, without its vendor tips ("💡 Tip: ... try installing
    litlogger"). Lightning gives its ``lightning`` logger a console handler of its own and lets
    records propagate to the root logger, where Hydra's console (and job log file) handler
    prints them again: under a configured root, Lightning's own handler goes."""
    if logging.getLogger().handlers:
        lightning_log = logging.getLogger("lightning")
        for handler in list(lightning_log.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_log.removeHandler(handler)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _not_advertising not in logger.filters:
            logger.addFilter(_not_advertising)


def flat_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"finetune": {"optim": {"lr": 1e-4}}}`` -> ``{"finetune.optim.lr": 1e-4}``: nested
    mappings become dotted keys (lists stay values; an empty mapping stays as ``{}``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, prefix=name + "."))
        else:
            out[name] = value
    return out


def build_loggers(cfg, config: dict | None = None) -> list:
    """The Lightning loggers of ``cfg.logger`` (``logger=none``: none). A W&B logger gets
    ``config`` (the job's resolved config), flattened, for ``wandb.init``, and its run is
    started here, so a job that fails later still has it."""
    loggers = []
    for conf in (cfg.get("logger") or {}).values():
        if conf is None or "_target_" not in conf:
            continue
        if config is not None and str(conf["_target_"]).endswith("WandbLogger"):
            # _partial_: the config reaches wandb.init as given, not through OmegaConf
            logger = instantiate(conf, _partial_=True)(config=flat_config(config))
            logger.experiment  # noqa: B018 - wandb.init, with the config, now
        else:
            logger = instantiate(conf)
        loggers.append(logger)
    return loggers


def wandb_loggers(loggers: list) -> list:
    return [lg for lg in loggers if isinstance(lg, _LightningWandbLogger)]


def wandb_tags(loggers: list, category: str, n_params: int) -> None:
    """Tag the W&B run with the measured size category and parameter count."""
    for lg in wandb_loggers(loggers):
        run = lg.experiment
        run.tags = tuple(run.tags or ()) + (category, f"{n_params / 1e6:.0f}M")


PREDICTION_COLUMNS = ("id", "schema_id", "tier", "status", *HEADLINE_METRICS, "prompt", "expected", "output",
                      "error", "n_tokens", "cap", "hit_eos", "looped", "capped")
"""The columns of a job's W&B predictions table: what a reader of a failure needs beside the
scores (the prompt, the expected answer, the parse error, tokens, and why generation stopped)."""


def prediction_table_rows(rows: list[dict], records: list) -> list[list]:
    """One table row per scored answer (:data:`PREDICTION_COLUMNS`); ``records`` are the
    evaluated records (their prompt and expected answer), joined by id."""
    by_id = {r.id: r for r in records}
    out = []
    for row in rows:
        rec = by_id.get(row.get("id"))
        extra = {"prompt": rec.prompt if rec else None,
                 "expected": json.dumps(rec.expected_output, ensure_ascii=False) if rec else None}
        out.append([extra[c] if c in extra else row.get(c) for c in PREDICTION_COLUMNS])
    return out


def wandb_results(loggers: list, record: dict, rows: list[dict], records: list) -> None:
    """The evaluation metrics into the W&B summary, the predictions (``records``: the evaluated
    records, for their prompts and expected answers) as a table."""
    split = record["data"]["eval_split"]  # "test" or "val": val scores never show up as test ones
    for lg in wandb_loggers(loggers):
        import wandb  # here: only jobs that log to W&B pay for importing it

        run = lg.experiment
        summary = {f"params/{k}": v for k, v in record["params"].items()}
        for key, value in record["metrics"]["overall"].items():
            if isinstance(value, (int, float)):
                summary[f"{split}/{key}"] = value
        for tier, m in record["metrics"]["by_tier"].items():
            for key in HEADLINE_METRICS:
                summary[f"{split}/{tier}/{key}"] = m[key]
        summary.update({f"eval/{k}": v for k, v in record["eval"].items() if isinstance(v, (int, float))})
        run.summary.update(summary)
        table = wandb.Table(columns=list(PREDICTION_COLUMNS), data=prediction_table_rows(rows, records))
        run.log({f"{split}/predictions": table})


def finish_wandb(loggers: list, record: dict) -> None:
    """Close the W&B run of this job (each multirun job is its own run); a failed job's
    summary gets its error's type and message (``error/type``, ``error/message``)."""
    if not wandb_loggers(loggers):
        return
    import wandb

    if wandb.run is not None:
        summary = {"status": record.get("status")}
        error = record.get("error") or {}
        if record.get("status") != "completed" and error:
            summary.update({"error/type": error.get("type"), "error/message": error.get("message")})
        wandb.run.summary.update(summary)
        wandb.finish(exit_code=0 if record.get("status") == "completed" else 1)

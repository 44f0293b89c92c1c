"""One job, start to end: lock -> data -> skip? -> resume point -> model -> fine-tune (or the
train cache) -> evaluate -> ``results.json``.

What a re-run of the same job folder does (README, "Reliability"):

- held by a live process (``job.lock``): refused, nothing touched, reported as ``locked``;
- ``results.json`` completed with the same ``config_hash`` and the same data (``data_hash``):
  skipped;
- otherwise it runs: from ``checkpoints/last.ckpt`` when that checkpoint is this training's
  (:mod:`scaling.jobs.resume`), from the train cache when another job trained the same
  weights, else from step 0;
- a ``from_job`` run (``scaling.evaluate from_job=...``, :mod:`scaling.jobs.source`) never
  trains: it loads the finished job's weights, and fails before building a model when they
  are gone.

Every job that runs writes ``results.json`` (:mod:`scaling.results`) atomically: ``running``
as it starts, ``completed`` or ``failed`` (type, message, traceback) when it ends. A failure
while preparing (config, data) leaves a previously completed ``results.json`` in place.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from scaling.configs import dataclass_from_config, instantiate_node
from scaling.data.io import DataError
from scaling.data.prompts import format_prompt, format_target
from scaling.data.readings import contradicting
from scaling.data.sft import SFTDataset, stratified_fraction, stratified_split, tier_passes
from scaling.decode import DecodeConfig, answer_prompt_ratio, derive_max_new_tokens
from scaling.decode.evaluation import evaluate_records
from scaling.hardware import release_host_memory
from scaling.jobs.cache import CacheEntry, cache_entry, load_weights
from scaling.jobs.config import FinetuneConfig, LockConfig, eval_split
from scaling.jobs.identity import config_hash, data_hash, train_data_hash, train_hashes
from scaling.jobs.lock import LOCK_FILE, JobLock, JobLocked, is_secondary_rank
from scaling.jobs.record import new_record, now
from scaling.jobs.resume import ResumePoint, TrainIdentity, resume_point
from scaling.jobs.source import SourceJobError, find_weights, read_record, source_record
from scaling.jobs.hydra_runtime import hydra_job_dir
from scaling.jobs.tracking import build_loggers, finish_wandb, tidy_lightning_logging, wandb_results, wandb_tags
from scaling.models import build_model, build_tokenizer, category_for, count_parameters, resolved_revision
from scaling.models.depth import calibration_for, depth_record
from scaling.models.grow import grow_record, parse as parse_grow
from scaling.finetune import OptimConfig, SFTDataModule, SFTModule, peak_memory_mb
from scaling.results import (METRICS_FILE, PREDICTIONS_FILE, RESULTS_FILE, atomic_write_json, read_results_json,
                             write_jsonl)

log = logging.getLogger("scaling.train")

LOCKED = "locked"
"""The status :func:`run_job` returns for a job another process holds (never written)."""


def run_job(cfg: DictConfig, job_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run one job under its lock and return its results record (also in ``results.json``).

    A skipped job returns the earlier record with ``"skipped": True``; a job held by another
    process returns ``{"status": "locked", ...}`` and touches nothing.
    """
    job_dir = Path(job_dir) if job_dir is not None else hydra_job_dir()
    job_dir.mkdir(parents=True, exist_ok=True)
    tidy_lightning_logging()
    lock_cfg = dataclass_from_config(LockConfig, cfg.get("lock"), "lock")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    if is_secondary_rank():  # a DDP worker of the process that holds the lock
        return Job(cfg, job_dir).run()
    lock = JobLock(job_dir / LOCK_FILE, heartbeat_s=lock_cfg.heartbeat_s, stale_after_s=lock_cfg.stale_after_s)
    try:
        lock.acquire()
    except JobLocked as exc:
        log.error("job %s not run: %s", cfg.run_name, exc)
        return {"status": LOCKED, "run_name": str(cfg.run_name), "job_dir": str(job_dir),
                "error": {"type": "JobLocked", "message": str(exc), "holder": exc.holder}}
    try:
        return Job(cfg, job_dir).run()
    finally:
        lock.release()


class Job:
    """The state of one job while it runs; :meth:`run` is its whole life."""

    def __init__(self, cfg: DictConfig, job_dir: Path) -> None:
        self.cfg, self.job_dir = cfg, job_dir
        self.results_path = job_dir / RESULTS_FILE
        self.record = new_record(cfg, job_dir, config_hash(cfg))
        self.loggers: list = []
        self.resume: ResumePoint | None = None
        self.primary = not is_secondary_rank()
        """False in a DDP worker other than rank 0: it trains alongside rank 0 and writes
        nothing (no results.json, no train cache, no evaluation): rank 0 owns the job's files."""
        self.source: dict | None = None
        """A ``from_job`` run's source record (its ``results.json``); None for a job that trains."""
        self.legacy_train_hash: str | None = None

    # ------------------------------------------------------------------ the life of a job

    def run(self) -> dict[str, Any]:
        record, previous = self.record, _read_previous(self.results_path)
        started = skipped = False
        try:
            self.prepare()
            if self.completed_before(previous):
                skipped = True
                return {**previous, "skipped": True}
            if self.cfg.get("resume", True) and self.source is None:
                self.resume = resume_point(self.job_dir, (record["train_hash"], self.legacy_train_hash), previous,
                                           record["config_hash"])
            if self.primary:
                atomic_write_json(self.results_path, record)
                started = True
            # The W&B run starts here, with the whole config: a job that fails later keeps it.
            self.loggers = build_loggers(self.cfg, record["config"])
            self.build_model()
            self.train()
            if self.primary:
                self.evaluate()
            record["status"] = "completed"
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded, KeyboardInterrupt too
            record["status"] = "failed"
            record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
            log.error("job %s failed: %s: %s", self.cfg.run_name, type(exc).__name__, exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            if isinstance(exc, SystemExit):
                # Lightning turns SIGTERM (preemption, `kill`) into SIGTERMException, a SystemExit
                # with no code: stop the whole sweep as the signal asks, with the shell's status
                # for it, instead of starting the next job.
                raise SystemExit(exc.code if exc.code not in (None, 0) else 128 + signal.SIGTERM) from exc
        finally:
            if not skipped and self.primary:
                record["finished_at"] = now()
                if started or (previous or {}).get("status") != "completed":
                    atomic_write_json(self.results_path, record)
                else:  # failed while preparing: a finished result of this folder stays readable
                    log.error("results.json of %s left as it was (completed); this run failed before it started",
                              self.job_dir)
                    record["results_kept"] = True  # returned, never written
                if record["status"] == "failed" and not self.loggers:
                    self.loggers = self._failure_loggers()
                finish_wandb(self.loggers, record)
        return record

    def _failure_loggers(self) -> list:
        """The W&B run of a job that failed before its loggers were made (while preparing):
        its config and error are recorded there too. One that cannot be made is only logged."""
        try:
            return build_loggers(self.cfg, self.record["config"])
        except Exception as exc:  # noqa: BLE001 - the job's own error is what gets reported
            log.warning("no W&B run for the failed job %s: %s: %s", self.cfg.run_name, type(exc).__name__, exc)
            return []

    def completed_before(self, previous: dict | None) -> bool:
        """Whether ``previous`` is this job, completed: same config_hash, same data."""
        record = self.record
        if not self.cfg.get("skip_completed", True) or not previous or previous.get("status") != "completed":
            return False
        if previous.get("config_hash") != record["config_hash"]:
            return False
        files = (previous.get("data") or {}).get("files")
        before = data_hash(files) if isinstance(files, dict) and files else None
        if before != record["data_hash"]:
            log.info("%s: results.json is completed with the same config_hash but other data (data_hash %s, now %s): "
                     "running again", self.job_dir, before, record["data_hash"])
            return False
        log.info("skip %s: results.json is completed with the same config_hash %s and data_hash %s", self.job_dir,
                 record["config_hash"], record["data_hash"])
        return True

    # ------------------------------------------------------------------ config and data

    def prepare(self) -> None:
        """Typed configs and the data; fills ``data``, ``data_hash`` and ``train_hash``."""
        cfg, record = self.cfg, self.record
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        self.spec = instantiate_node(cfg.model)
        data_spec = instantiate_node(cfg.data)
        self.finetune: FinetuneConfig = instantiate_node(cfg.finetune)
        self.decode: DecodeConfig = instantiate_node(cfg.decode)
        self.fmt = data_spec.prompt_format
        self.split = eval_split(cfg, self.finetune)
        grow = parse_grow(self.spec.grow)
        if grow is not None and grow.train == "new" and self.finetune.method == "lora":
            # peft freezes every base weight itself: "only the new blocks" would silently mean adapters everywhere
            raise ValueError("model.grow.train=new trains only the inserted blocks, and finetune.method=lora trains "
                             "adapters instead: use finetune=full with train=new, or model.grow.train=all with lora")

        log.info("data: loading %s %s", data_spec.name, data_spec.root)
        data = self.data = data_spec.load()
        self.train_records = list(data.train)
        if cfg.eval.get("train_limit"):
            self.train_records = self.train_records[: int(cfg.eval.train_limit)]
        # The held-out validation records are fixed by (val_fraction, seed), whether or not this
        # job trains, so a base model and a fine-tuned one are scored on the same ones.
        self.fit_records, self.val_records = stratified_split(self.train_records, self.finetune.val_fraction,
                                                              seed=int(cfg.seed))
        # The data axis: a stratified share of the records left for fitting (validation untouched).
        excluded = {}
        if data_spec.exclude_contradicting:
            # Labels no reading of their prompt gives teach the model to invent values.
            excluded = contradicting(self.fit_records, data.schemas)
            self.fit_records = [r for r in self.fit_records if r.id not in excluded]
            log.info("data: %d training records whose gold contradicts the prompt left out", len(excluded))
        self.fit_records = stratified_fraction(self.fit_records, data_spec.train_fraction, seed=int(cfg.seed))
        extra = list(data.extra_train)
        if extra:
            # Past 100%: more records from data.extra_train_file, after validation was drawn.
            if data_spec.exclude_contradicting:
                extra_excluded = contradicting(extra, data.schemas)
                extra = [r for r in extra if r.id not in extra_excluded]
                excluded = {**excluded, **extra_excluded}
            extra = stratified_fraction(extra, data_spec.extra_train_fraction, seed=int(cfg.seed))
            self.fit_records = self.fit_records + extra
            log.info("data: %d records of %s added to training (data.extra_train_fraction=%s)", len(extra),
                     data_spec.extra_train_file, data_spec.extra_train_fraction)
        eval_records = {"test": list(data.test), "val": self.val_records, "none": []}[self.split]
        if cfg.eval.get("limit"):
            eval_records = eval_records[: int(cfg.eval.limit)]
        self.eval_records = eval_records
        record["data"] = {"name": data.name, "version": data.version, "root": str(data.root) if data.root else None,
                          "n_train": len(self.fit_records), "train_fraction": data_spec.train_fraction,
                          "n_val": len(self.val_records), "n_test": len(data.test),
                          "eval_split": self.split, "n_eval": len(eval_records), "files": data.files}
        if data_spec.extra_train_file is not None:
            record["data"]["extra_train"] = {"file": data_spec.extra_train_file, "n": len(extra),
                                             "fraction": data_spec.extra_train_fraction}
        if data_spec.exclude_contradicting:
            record["data"]["excluded"] = {"rule": "gold contradicts the prompt", "n": len(excluded),
                                          "ids": {i: c.message for i, c in excluded.items()}}
        record["data_hash"] = data_hash(data.files)
        record["train_hash"], self.legacy_train_hash = train_hashes(cfg, data.files)
        if cfg.get("from_job"):
            self.prepare_source(data_spec)

    def prepare_source(self, data_spec) -> None:
        """A ``from_job`` run: the finished job's record, checked against the data read now, and
        its fine-tuned weights, found before any model is built (or refused, saying where they
        were looked for); fills ``source_job``."""
        folder = Path(str(self.cfg.from_job))
        source = read_record(folder)
        files = source["data"].get("files") or {}
        if files and train_data_hash(files) != train_data_hash(self.data.files):
            raise SourceJobError(f"{folder / RESULTS_FILE}: the training data read now ({data_spec.root}) is not what "
                                 "the job trained on (field data.files: another sha256 of its training file or "
                                 "schemas), and its prompts' caps and tokenizer come from it; pass "
                                 "data.root=<the folder the job read>")
        self.weights = find_weights(source, folder, [self.cfg.get("train_cache")])
        kept = ((source.get("model") or {}).get("depth") or {}).get("kept")
        if self.spec.depth is not None and kept is not None:
            # The blocks the job kept, as recorded: Block Influence is not measured again.
            self.spec = replace(self.spec, depth={"rule": "indices", "keep": len(kept),
                                                  "indices": [int(i) for i in kept]})
        self.source = source
        self.record["source_job"] = source_record(source, folder, self.weights)
        log.info("from_job %s: its config, %s", folder,
                 f"its weights {self.weights}" if self.weights else "no fine-tuned weights (finetune=none)")

    # ------------------------------------------------------------------ the model

    def build_model(self) -> None:
        """Tokenizer and model, and what the record says about them (the one place both are built)."""
        cfg, spec, record, finetune = self.cfg, self.spec, self.record, self.finetune
        bpe_texts = None
        if (spec.tokenizer or {}).get("kind") == "bpe":
            # The tiny models' BPE is trained on the training split only (never on test text).
            bpe_texts = [format_prompt(r.prompt, self.data.schemas[r.schema_id].schema, self.fmt)
                         + format_target(r.expected_output, self.fmt) for r in self.train_records]
        self.tokenizer = build_tokenizer(spec, train_texts=bpe_texts)
        vocab = ((self.source or {}).get("model") or {}).get("vocab_size")
        if vocab is not None and len(self.tokenizer) != int(vocab):
            raise SourceJobError(f"{self.cfg.from_job}: the rebuilt tokenizer has {len(self.tokenizer)} tokens, the "
                                 f"job's had {vocab} (results.json field model.vocab_size)")
        self.model = build_model(spec, tokenizer=self.tokenizer, seed=int(cfg.seed),
                                 calibration=calibration_for(spec, self.fit_records, self.data.schemas, self.tokenizer,
                                                             self.fmt))
        self.base_counts = counts = count_parameters(self.model)
        record["model"] = {"key": spec.key, "source": spec.source, "hub_id": spec.hub_id, "revision": spec.revision,
                           "revision_resolved": resolved_revision(spec, self.model),
                           "family": spec.family, "vocab_size": len(self.tokenizer), "depth": depth_record(self.model),
                           "grow": grow_record(self.model)}
        record["category"] = category_for(counts.total)
        record["finetune"] = {"method": finetune.method, "epochs": finetune.epochs, "max_steps": finetune.max_steps,
                              "optim": finetune.optim, "lora": finetune.lora, "tier_repeat": finetune.tier_repeat}
        log.info("model %s: %s parameters (%s non-embedding), category %s", spec.key, f"{counts.total:,}",
                 f"{counts.non_embedding:,}", record["category"])
        wandb_tags(self.loggers, record["category"], counts.total)

    # ------------------------------------------------------------------ training

    def train(self) -> None:
        """Fine-tune (or reuse the train cache's weights); fills ``train`` and ``params``."""
        record, finetune = self.record, self.finetune
        trainable = self.base_counts.trainable
        record["train"] = None
        entry = cache_entry(self.cfg.get("train_cache"), record["train_hash"])
        # Weights cached by an earlier version, under the train hash of identity 1.
        legacy = cache_entry(self.cfg.get("train_cache"), self.legacy_train_hash or record["train_hash"])
        found = next((e for e in (entry, legacy) if e is not None and e.complete), None)
        if finetune.method == "none":
            trainable = 0
        elif self.source is not None:
            # from_job: the finished job's weights, never a training step.
            self.model = load_weights(self.model, self.weights)
            record["train"] = {**(self.source.get("train") or {}), "reused_from": str(self.weights.parent)}
            trainable = (self.source.get("params") or {}).get("trainable", trainable)
            log.info("from_job: evaluating the fine-tuned weights %s (no training)", self.weights)
        elif found is not None:
            # The same training (config and data) already done in this output root: reuse it.
            cached = found.info()
            self.model = found.load_into(self.model)
            record["train"] = {**cached["train"], "reused_from": str(found.path)}
            trainable = cached["trainable"]
            log.info("training: reusing fine-tuned weights from %s", found.path)
        else:
            if finetune.method == "lora":
                self.model = _lora_wrap(self.model, finetune.lora)
                trainable = count_parameters(self.model).trainable
            record["train"] = self.fit()
            if finetune.method == "lora":
                self.model = self.model.merge_and_unload()  # plain weights: faster generation, same function
            for p in self.model.parameters():
                p.grad = None  # the last step's gradients: the model's size again, unused from here
            rss = release_host_memory()
            if rss is not None:
                log.info("training done: %.0f MiB resident before evaluation", rss)
            if entry is not None and self.primary:
                self.store(entry, trainable)
        counts = self.base_counts
        record["params"] = {"total": counts.total, "non_embedding": counts.non_embedding, "trainable": trainable}

    def store(self, entry: CacheEntry, trainable: int) -> None:
        """The fine-tuned weights into the train cache; a cache that cannot be written costs
        only the reuse, never the finished training (the job evaluates anyway)."""
        try:
            entry.save(self.model, {"train": self.record["train"], "trainable": trainable,
                                    "job_dir": str(self.job_dir), "train_hash": self.record["train_hash"]},
                       tokenizer=self.tokenizer)
        except OSError as exc:
            why = f"{exc.filename or entry.path}: {exc.strerror or exc}"
            log.warning("train cache not written (%s); evaluating anyway: the weights stay in %s", why,
                        self.job_dir / "checkpoints")
            self.record["train"]["cache_error"] = why

    def trainer(self, callbacks: list, **extra: Any) -> L.Trainer:
        """The Lightning Trainer of ``cfg.trainer`` (the one place it is made)."""
        return instantiate(self.cfg.trainer)(callbacks=callbacks, logger=self.loggers or False, **extra)

    def fit(self) -> dict[str, Any]:
        cfg, finetune, job_dir = self.cfg, self.finetune, self.job_dir
        tokenizer, data = self.tokenizer, self.data
        train_set = SFTDataset(self.fit_records, data.schemas, tokenizer, self.fmt, finetune.max_length)
        val_set = (SFTDataset(self.val_records, data.schemas, tokenizer, self.fmt, finetune.max_length)
                   if self.val_records else None)
        if train_set.n_truncated:
            log.warning("%d training examples exceed finetune.max_length=%s and lost prompt tokens",
                        train_set.n_truncated, finetune.max_length)
        extra_passes = tier_passes(self.fit_records, finetune.tier_repeat)
        examples_per_epoch = len(train_set) + sum(map(len, extra_passes))
        if extra_passes:
            log.info("finetune.tier_repeat=%s: %d examples an epoch (%d distinct)", finetune.tier_repeat,
                     examples_per_epoch, len(train_set))
        dm = SFTDataModule(train_set, val_set, tokenizer.pad_token_id, finetune.batch_size, finetune.max_batch_tokens,
                           seed=int(cfg.seed), extra_passes=extra_passes)
        module = SFTModule(self.model, OptimConfig.from_config(finetune.optim), finetune.gradient_checkpointing,
                           name=str(cfg.model.key), logits_at=finetune.logits_at)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
        if not self.loggers:
            callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
        callbacks.append(TrainIdentity(self.record["train_hash"]))
        if val_set is not None:
            callbacks.append(ModelCheckpoint(dirpath=job_dir / "checkpoints", filename="best", monitor="val/loss",
                                             mode="min", save_top_k=1, auto_insert_metric_name=False))
        trainer = self.trainer(callbacks, **({} if val_set is not None else {"limit_val_batches": 0}))
        resume = self.resume
        for lg in self.loggers if self.primary else ():
            if hasattr(lg, "resume_at"):
                lg.resume_at(resume.step if resume else 0)  # keep the history up to the checkpoint
        if resume:
            log.info("resuming from %s (step %d)", resume.path, resume.step)
        t0 = time.perf_counter()
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume.path) if resume else None)
        wall = time.perf_counter() - t0
        if trainer.global_step == 0:
            raise RuntimeError(f"training took no optimiser step ({len(train_set)} training examples, "
                               f"finetune.max_steps={finetune.max_steps}, finetune.epochs={finetune.epochs}): "
                               "nothing was learned, nothing is recorded as fine-tuned")
        device = module.device
        stats = {
            "tokens": int(module.tokens_seen),
            "target_tokens": int(module.target_tokens_seen),
            "steps": int(trainer.global_step),
            "epochs": float(trainer.current_epoch),
            "n_examples": len(train_set),
            "examples_per_epoch": examples_per_epoch,
            "n_val": len(val_set) if val_set else 0,
            "n_truncated": train_set.n_truncated,
            "wall_s": round(wall, 2),
            "train_step_s": round(module.train_time_s, 2),
            "tokens_per_s": round(module.tokens_seen / module.train_time_s, 2) if module.train_time_s else None,
            "peak_mem_mb": round(peak_memory_mb(device), 1),
            "resumed_from": str(resume.path) if resume else None,
            "resumed_at_step": resume.step if resume else None,
            "final_train_loss": _metric(trainer, "train/loss_epoch"),
            "final_val_loss": _metric(trainer, "val/loss"),
            "precision": str(trainer.precision),
            "device": str(device),
            "world_size": trainer.world_size,
        }
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return stats

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> None:
        """Generate and score ``eval.split``; fills ``decode``, ``eval`` and ``metrics``."""
        cfg, record, decode, fmt = self.cfg, self.record, self.decode, self.fmt
        if self.split == "none":
            record["eval"] = record["metrics"] = None
            log.info("eval.split=none: no evaluation (training and validation loss only)")
            return
        all_targets = [format_target(r.expected_output, fmt) for r in list(self.data.train) + list(self.data.test)]
        max_new = derive_max_new_tokens(self.tokenizer, all_targets, decode)
        # Per-row caps come from the records the model was fitted on, never from what it is scored on.
        cap_ratio = answer_prompt_ratio(
            self.tokenizer,
            [format_prompt(r.prompt, self.data.schemas[r.schema_id].schema, fmt, self.tokenizer) for r in self.fit_records],
            [format_target(r.expected_output, fmt) for r in self.fit_records]) if decode.prompt_cap else None
        record["decode"] = {"mode": decode.mode, "max_new_tokens": max_new, "stop_at_json_end": decode.stop_at_json_end,
                            "batch_size": decode.batch_size, "grammar_strict": decode.grammar_strict,
                            "grounded": decode.grounded,
                            "engine": decode.engine, "dtype": decode.dtype, "prompt_cap_ratio": cap_ratio}
        use_cuda = torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
        self.model.to(torch.device("cuda") if use_cuda else torch.device("cpu"))
        log.info("eval: %d %s examples, %s decoding, max_new_tokens=%d", len(self.eval_records), self.split,
                 decode.mode, max_new)
        result = evaluate_records(self.model, self.tokenizer, self.eval_records, self.data.schemas, fmt, decode,
                                  max_new_tokens=max_new, desc=f"eval {self.spec.key}", cap_ratio=cap_ratio)
        write_jsonl(self.job_dir / PREDICTIONS_FILE, result.rows)
        atomic_write_json(self.job_dir / METRICS_FILE, result.metrics)
        record["eval"] = result.stats
        record["metrics"] = result.metrics
        overall = result.metrics["overall"]
        log.info("eval %s: JSONExact %.3f  Field F1 %.3f  compliance %.3f  (%.1f tok/s)", self.spec.key,
                 overall["json_exact"], overall["field_f1"], overall["schema_compliance"],
                 result.stats.get("tokens_per_s") or 0.0)
        wandb_results(self.loggers, record, result.rows, self.eval_records)


def _read_previous(path: Path) -> dict | None:
    """The job folder's ``results.json`` from an earlier run; None when absent or unreadable
    (truncated JSON, bytes that are not UTF-8, not an object)."""
    try:
        return read_results_json(path)
    except DataError:
        return None


def _lora_wrap(model, lora: dict):
    from peft import LoraConfig, get_peft_model  # here: peft is imported only by LoRA jobs

    config = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _metric(trainer, key: str):
    value = trainer.callback_metrics.get(key)
    return None if value is None else round(float(value), 5)

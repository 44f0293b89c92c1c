"""One job's steps, in order: data -> model -> fine-tune -> evaluate -> record.

:func:`train_and_evaluate` is the whole flow on one screen; the functions below it are its
steps. Around it is the job's life (:mod:`scaling.jobs.run`): the lock, skipping a completed
job, the resume point, ``results.json`` written as the job starts and as it ends, failures.
``python -m scaling.train`` is the Hydra entry over both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from scaling.typed_config import instantiate_node
from scaling.data.io import Dataset
from scaling.data.prompts import PromptFormat, format_prompt, format_target
from scaling.data.readings import contradicting
from scaling.data.sft import SFTDataset, stratified_fraction, stratified_split, tier_passes
from scaling.decode import DecodeConfig, answer_prompt_ratio, derive_max_new_tokens
from scaling.decode.evaluation import evaluate_records
from scaling.finetune import OptimConfig, SFTDataModule, SFTModule, peak_memory_mb
from scaling.hardware import release_host_memory
from scaling.jobs.cache import CacheEntry, cache_entry, load_weights
from scaling.jobs.config import FinetuneConfig, eval_split
from scaling.jobs.identity import data_hash, train_data_hash, train_hashes
from scaling.jobs.record import JobRecord
from scaling.jobs.resume import ResumePoint, TrainIdentity
from scaling.jobs.from_job import SourceJobError, find_weights, read_record, source_record
from scaling.jobs.tracking import wandb_results, wandb_tags
from scaling.models import ModelSpec, build_model, build_tokenizer, category_for, count_parameters, resolved_revision
from scaling.models.depth import calibration_for, depth_record
from scaling.models.grow import grow_record, parse as parse_grow
from scaling.models.lora import lora_wrap
from scaling.results import METRICS_FILE, PREDICTIONS_FILE, RESULTS_FILE, DataSection, TrainSection, atomic_write_json, write_jsonl

log = logging.getLogger("scaling.train")


class JobLife(Protocol):
    """What the steps need of the job that runs them (:class:`scaling.jobs.run.Job`)."""

    cfg: DictConfig
    job_dir: Path
    record: JobRecord
    """The results record each step fills; the job writes it to ``results.json``."""
    primary: bool
    """False in a DDP worker other than rank 0: it trains, and writes nothing."""
    loggers: list
    resume: ResumePoint | None

    def start(self, legacy_train_hash: str | None, from_job: bool) -> bool:
        """The data read, before any model: False when the job is skipped (completed before)."""


def train_and_evaluate(job: JobLife) -> bool:
    """Run one job's steps, each filling its part of ``job.record``. False when the job was
    completed before (skipped after reading the data, nothing built)."""
    cfg, record = job.cfg, job.record
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    spec: ModelSpec = instantiate_node(cfg.model)
    data_spec = instantiate_node(cfg.data)
    finetune: FinetuneConfig = instantiate_node(cfg.finetune)
    decode: DecodeConfig = instantiate_node(cfg.decode)
    fmt, split = data_spec.prompt_format, eval_split(cfg, finetune)
    check_grow(spec, finetune)

    # 1. Data: train / fit / validation / evaluation records, and the hashes that name the job.
    data, record.data = load_data(cfg, data_spec, fmt, finetune, split)
    record.data_hash = data_hash(data.dataset.files)
    record.train_hash, legacy_train_hash = train_hashes(cfg, data.dataset.files)
    source = weights = None
    if cfg.get("from_job"):  # a finished job scored again: its weights, its kept blocks
        source, weights, spec, record.source_job = from_job(cfg, spec, data, data_spec.root)

    # The job's life (scaling.jobs.run): skip a completed job, else find the resume point,
    # write results.json "running" and start the W&B run.
    if not job.start(legacy_train_hash, from_job=source is not None):
        return False

    # 2. Model: tokenizer, then weights (random, hub, GGUF, local), pruned (model.depth) or grown (model.grow).
    tokenizer, model = build_tokenizer_and_model(cfg, spec, data, source)
    counts = count_parameters(model)
    record.model = model_record(spec, model, tokenizer)
    record.category = category_for(counts.total)
    record.finetune = {"method": finetune.method, "epochs": finetune.epochs, "max_steps": finetune.max_steps,
                          "optim": finetune.optim, "lora": finetune.lora, "tier_repeat": finetune.tier_repeat}
    log.info("model %s: %s parameters (%s non-embedding), category %s", spec.key, f"{counts.total:,}",
             f"{counts.non_embedding:,}", record.category)
    wandb_tags(job.loggers, record.category, counts.total)

    # 3. Fine-tune: nothing (finetune=none), the source job's weights (from_job), the train
    # cache's, or Lightning training, from checkpoints/last.ckpt when the job resumes.
    model, trainable = fine_tune(job, model, tokenizer, data, finetune, counts.trainable, legacy_train_hash,
                                 source, weights)
    record.params = {"total": counts.total, "non_embedding": counts.non_embedding, "trainable": trainable}

    # 4. Evaluate: generate on eval.split and score (rank 0 only: it owns the job's files).
    if job.primary:
        evaluate(job, model, tokenizer, data, decode, spec.key)

    # 5. Record: every step filled job.record; the job writes it to results.json as "completed".
    return True


# ---------------------------------------------------------------------- 1. data


@dataclass
class JobData:
    """The records the steps read (:func:`load_data`)."""

    dataset: Dataset
    """As read: train, test, extra training records, schemas, files (and their sha256)."""
    fmt: PromptFormat
    split: str
    """``eval.split``: ``test``, ``val`` or ``none``."""
    train_records: list
    """The training file's records (``eval.train_limit`` applied): BPE tokenizers are trained on them."""
    fit_records: list
    """What the model is fitted on: the training records less validation, filtered, at
    ``data.train_fraction``, plus ``data.extra_train_file``'s."""
    val_records: list
    eval_records: list


def check_grow(spec: ModelSpec, finetune: FinetuneConfig) -> None:
    grow = parse_grow(spec.grow)
    if grow is not None and grow.train == "new" and finetune.method == "lora":
        # peft freezes every base weight itself: "only the new blocks" would silently mean adapters everywhere
        raise ValueError("model.grow.train=new trains only the inserted blocks, and finetune.method=lora trains "
                         "adapters instead: use finetune=full with train=new, or model.grow.train=all with lora")


def load_data(cfg: DictConfig, data_spec, fmt: PromptFormat, finetune: FinetuneConfig,
              split: str) -> tuple[JobData, DataSection]:
    """The job's records, and the results record's ``data``."""
    log.info("data: loading %s %s", data_spec.name, data_spec.root)
    data = data_spec.load()
    train_records = list(data.train)
    if cfg.eval.get("train_limit"):
        train_records = train_records[: int(cfg.eval.train_limit)]
    # The held-out validation records are fixed by (val_fraction, seed), whether or not this
    # job trains, so a base model and a fine-tuned one are scored on the same ones.
    fit_records, val_records = stratified_split(train_records, finetune.val_fraction, seed=int(cfg.seed))
    # The data axis: a stratified share of the records left for fitting (validation untouched).
    excluded = {}
    if data_spec.exclude_contradicting:
        # Labels no reading of their prompt gives teach the model to invent values.
        excluded = contradicting(fit_records, data.schemas)
        fit_records = [r for r in fit_records if r.id not in excluded]
        log.info("data: %d training records whose gold contradicts the prompt left out", len(excluded))
    fit_records = stratified_fraction(fit_records, data_spec.train_fraction, seed=int(cfg.seed))
    extra = list(data.extra_train)
    if extra:
        # Past 100%: more records from data.extra_train_file, after validation was drawn.
        if data_spec.exclude_contradicting:
            extra_excluded = contradicting(extra, data.schemas)
            extra = [r for r in extra if r.id not in extra_excluded]
            excluded = {**excluded, **extra_excluded}
        extra = stratified_fraction(extra, data_spec.extra_train_fraction, seed=int(cfg.seed))
        fit_records = fit_records + extra
        log.info("data: %d records of %s added to training (data.extra_train_fraction=%s)", len(extra),
                 data_spec.extra_train_file, data_spec.extra_train_fraction)
    eval_records = {"test": list(data.test), "val": val_records, "none": []}[split]
    if cfg.eval.get("limit"):
        eval_records = eval_records[: int(cfg.eval.limit)]
    record = DataSection(
        name=data.name, version=data.version, root=str(data.root) if data.root else None,
        n_train=len(fit_records), train_fraction=data_spec.train_fraction, n_val=len(val_records),
        n_test=len(data.test), eval_split=split, n_eval=len(eval_records), files=data.files,
        extra_train=({"file": data_spec.extra_train_file, "n": len(extra), "fraction": data_spec.extra_train_fraction}
                     if data_spec.extra_train_file is not None else None),
        excluded=({"rule": "gold contradicts the prompt", "n": len(excluded),
                   "ids": {i: c.message for i, c in excluded.items()}} if data_spec.exclude_contradicting else None))
    return JobData(data, fmt, split, train_records, fit_records, val_records,
                   eval_records), record


def from_job(cfg: DictConfig, spec: ModelSpec, data: JobData,
             data_root) -> tuple[dict, Path | None, ModelSpec, dict[str, Any]]:
    """A ``from_job`` run: the finished job's record, checked against the data read now, and
    its fine-tuned weights, found before any model is built (or refused, saying where they
    were looked for). Returns the record, the weights, the model spec with the blocks the
    job kept, and the results record's ``source_job``."""
    folder = Path(str(cfg.from_job))
    source = read_record(folder)
    files = source["data"].get("files") or {}
    if files and train_data_hash(files) != train_data_hash(data.dataset.files):
        raise SourceJobError(f"{folder / RESULTS_FILE}: the training data read now ({data_root}) is not what "
                             "the job trained on (field data.files: another sha256 of its training file or "
                             "schemas), and its prompts' caps and tokenizer come from it; pass "
                             "data.root=<the folder the job read>")
    weights = find_weights(source, folder, [cfg.get("train_cache")])
    kept = ((source.get("model") or {}).get("depth") or {}).get("kept")
    if spec.depth is not None and kept is not None:
        # The blocks the job kept, as recorded: Block Influence is not measured again.
        spec = replace(spec, depth={"rule": "indices", "keep": len(kept), "indices": [int(i) for i in kept]})
    recorded = source_record(source, folder, weights)
    log.info("from_job %s: its config, %s", folder,
             f"its weights {weights}" if weights else "no fine-tuned weights (finetune=none)")
    return source, weights, spec, recorded


# ---------------------------------------------------------------------- 2. model


def build_tokenizer_and_model(cfg: DictConfig, spec: ModelSpec, data: JobData, source: dict | None):
    """Tokenizer and model (the one place both are built)."""
    bpe_texts = None
    if (spec.tokenizer or {}).get("kind") == "bpe":
        # The tiny models' BPE is trained on the training split only (never on test text).
        bpe_texts = [format_prompt(r.prompt, data.dataset.schemas[r.schema_id].schema, data.fmt)
                     + format_target(r.expected_output, data.fmt) for r in data.train_records]
    tokenizer = build_tokenizer(spec, train_texts=bpe_texts)
    vocab = ((source or {}).get("model") or {}).get("vocab_size")
    if vocab is not None and len(tokenizer) != int(vocab):
        raise SourceJobError(f"{cfg.from_job}: the rebuilt tokenizer has {len(tokenizer)} tokens, the "
                             f"job's had {vocab} (results.json field model.vocab_size)")
    model = build_model(spec, tokenizer=tokenizer, seed=int(cfg.seed),
                        calibration=calibration_for(spec, data.fit_records, data.dataset.schemas, tokenizer, data.fmt))
    return tokenizer, model


def model_record(spec: ModelSpec, model, tokenizer) -> dict[str, Any]:
    """The results record's ``model``."""
    return {"key": spec.key, "source": spec.source, "hub_id": spec.hub_id, "revision": spec.revision,
            "revision_resolved": resolved_revision(spec, model),
            "family": spec.family, "vocab_size": len(tokenizer), "depth": depth_record(model),
            "grow": grow_record(model)}


# ---------------------------------------------------------------------- 3. fine-tune


def fine_tune(job: JobLife, model, tokenizer, data: JobData, finetune: FinetuneConfig, trainable: int,
              legacy_train_hash: str | None, source: dict | None, weights: Path | None):
    """Fine-tune ``model`` (or reuse weights trained before); fills the record's ``train``.
    Returns the model to evaluate and its number of trained parameters."""
    record = job.record
    record.train = None
    entry = cache_entry(job.cfg.get("train_cache"), record.train_hash)
    # Weights cached by an earlier version, under the train hash of identity 1.
    legacy = cache_entry(job.cfg.get("train_cache"), legacy_train_hash or record.train_hash)
    found = next((e for e in (entry, legacy) if e is not None and e.complete), None)
    if finetune.method == "none":
        trainable = 0
    elif source is not None:
        # from_job: the finished job's weights, never a training step.
        model = load_weights(model, weights)
        record.train = replace(TrainSection.from_json(source.get("train") or {}), reused_from=str(weights.parent))
        trainable = (source.get("params") or {}).get("trainable", trainable)
        log.info("from_job: evaluating the fine-tuned weights %s (no training)", weights)
    elif found is not None:
        # The same training (config and data) already done in this output root: reuse it.
        cached = found.info()
        model = found.load_into(model)
        record.train = replace(TrainSection.from_json(cached["train"]), reused_from=str(found.path))
        trainable = cached["trainable"]
        log.info("training: reusing fine-tuned weights from %s", found.path)
    else:
        if finetune.method == "lora":
            model = lora_wrap(model, finetune.lora)
            trainable = count_parameters(model).trainable
        record.train = fit(job, model, tokenizer, data, finetune)
        if finetune.method == "lora":
            model = model.merge_and_unload()  # plain weights: faster generation, same function
        for p in model.parameters():
            p.grad = None  # the last step's gradients: the model's size again, unused from here
        rss = release_host_memory()
        if rss is not None:
            log.info("training done: %.0f MiB resident before evaluation", rss)
        if entry is not None and job.primary:
            store(job, entry, model, tokenizer, trainable)
    return model, trainable


def store(job: JobLife, entry: CacheEntry, model, tokenizer, trainable: int) -> None:
    """The fine-tuned weights into the train cache; a cache that cannot be written costs
    only the reuse, never the finished training (the job evaluates anyway)."""
    try:
        entry.save(model, {"train": job.record.train.to_json(), "trainable": trainable,
                           "job_dir": str(job.job_dir), "train_hash": job.record.train_hash},
                   tokenizer=tokenizer)
    except OSError as exc:
        why = f"{exc.filename or entry.path}: {exc.strerror or exc}"
        log.warning("train cache not written (%s); evaluating anyway: the weights stay in %s", why,
                    job.job_dir / "checkpoints")
        job.record.train = replace(job.record.train, cache_error=why)


def fit(job: JobLife, model, tokenizer, data: JobData, finetune: FinetuneConfig) -> TrainSection:
    """Lightning training: datasets, data module, module, callbacks, the Trainer of
    ``cfg.trainer`` (the one place it is made), ``trainer.fit``. Returns the record's ``train``."""
    cfg, job_dir, schemas, fmt = job.cfg, job.job_dir, data.dataset.schemas, data.fmt
    train_set = SFTDataset(data.fit_records, schemas, tokenizer, fmt, finetune.max_length)
    val_set = (SFTDataset(data.val_records, schemas, tokenizer, fmt, finetune.max_length)
               if data.val_records else None)
    if train_set.n_truncated:
        log.warning("%d training examples exceed finetune.max_length=%s and lost prompt tokens",
                    train_set.n_truncated, finetune.max_length)
    extra_passes = tier_passes(data.fit_records, finetune.tier_repeat)
    examples_per_epoch = len(train_set) + sum(map(len, extra_passes))
    if extra_passes:
        log.info("finetune.tier_repeat=%s: %d examples an epoch (%d distinct)", finetune.tier_repeat,
                 examples_per_epoch, len(train_set))
    dm = SFTDataModule(train_set, val_set, tokenizer.pad_token_id, finetune.batch_size, finetune.max_batch_tokens,
                       seed=int(cfg.seed), extra_passes=extra_passes)
    module = SFTModule(model, OptimConfig.from_config(finetune.optim), finetune.gradient_checkpointing,
                       name=str(cfg.model.key), logits_at=finetune.logits_at)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not job.loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    callbacks.append(TrainIdentity(job.record.train_hash))
    if val_set is not None:
        callbacks.append(ModelCheckpoint(dirpath=job_dir / "checkpoints", filename="best", monitor="val/loss",
                                         mode="min", save_top_k=1, auto_insert_metric_name=False))
    trainer = instantiate(cfg.trainer)(callbacks=callbacks, logger=job.loggers or False,
                                       **({} if val_set is not None else {"limit_val_batches": 0}))
    resume = job.resume
    for lg in job.loggers if job.primary else ():
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
    stats = TrainSection(
        tokens=int(module.tokens_seen),
        target_tokens=int(module.target_tokens_seen),
        steps=int(trainer.global_step),
        epochs=float(trainer.current_epoch),
        n_examples=len(train_set),
        examples_per_epoch=examples_per_epoch,
        n_val=len(val_set) if val_set else 0,
        n_truncated=train_set.n_truncated,
        wall_s=round(wall, 2),
        train_step_s=round(module.train_time_s, 2),
        tokens_per_s=round(module.tokens_seen / module.train_time_s, 2) if module.train_time_s else None,
        peak_mem_mb=round(peak_memory_mb(device), 1),
        resumed_from=str(resume.path) if resume else None,
        resumed_at_step=resume.step if resume else None,
        final_train_loss=_metric(trainer, "train/loss_epoch"),
        final_val_loss=_metric(trainer, "val/loss"),
        precision=str(trainer.precision),
        device=str(device),
        world_size=trainer.world_size,
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return stats


def _metric(trainer, key: str):
    value = trainer.callback_metrics.get(key)
    return None if value is None else round(float(value), 5)


# ---------------------------------------------------------------------- 4. evaluate


def evaluate(job: JobLife, model, tokenizer, data: JobData, decode: DecodeConfig, key: str) -> None:
    """Generate and score ``eval.split``; fills the record's ``decode``, ``eval`` and ``metrics``
    and writes ``predictions.jsonl`` and ``metrics.json``."""
    cfg, record, fmt, schemas = job.cfg, job.record, data.fmt, data.dataset.schemas
    if data.split == "none":
        record.eval = record.metrics = None
        log.info("eval.split=none: no evaluation (training and validation loss only)")
        return
    all_targets = [format_target(r.expected_output, fmt) for r in list(data.dataset.train) + list(data.dataset.test)]
    max_new = derive_max_new_tokens(tokenizer, all_targets, decode)
    # Per-row caps come from the records the model was fitted on, never from what it is scored on.
    cap_ratio = answer_prompt_ratio(
        tokenizer,
        [format_prompt(r.prompt, schemas[r.schema_id].schema, fmt, tokenizer) for r in data.fit_records],
        [format_target(r.expected_output, fmt) for r in data.fit_records]) if decode.prompt_cap else None
    record.decode = {"mode": decode.mode, "max_new_tokens": max_new, "stop_at_json_end": decode.stop_at_json_end,
                        "batch_size": decode.batch_size, "grammar_strict": decode.grammar_strict,
                        "grounded": decode.grounded,
                        "engine": decode.engine, "dtype": decode.dtype, "prompt_cap_ratio": cap_ratio}
    use_cuda = torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto")
    model.to(torch.device("cuda") if use_cuda else torch.device("cpu"))
    log.info("eval: %d %s examples, %s decoding, max_new_tokens=%d", len(data.eval_records), data.split,
             decode.mode, max_new)
    result = evaluate_records(model, tokenizer, data.eval_records, schemas, fmt, decode,
                              max_new_tokens=max_new, desc=f"eval {key}", cap_ratio=cap_ratio)
    write_jsonl(job.job_dir / PREDICTIONS_FILE, result.rows)
    atomic_write_json(job.job_dir / METRICS_FILE, result.metrics)
    record.eval = result.stats
    record.metrics = result.metrics
    overall = result.metrics["overall"]
    log.info("eval %s: JSONExact %.3f  Field F1 %.3f  compliance %.3f  (%.1f tok/s)", key,
             overall["json_exact"], overall["field_f1"], overall["schema_compliance"],
             result.stats.get("tokens_per_s") or 0.0)
    wandb_results(job.loggers, record.to_json(), result.rows, data.eval_records)

"""Hydra entry point: one job = build model and data -> fine-tune -> evaluate -> results.json.

    python -m scaling.train -m model=smol135,minimodel200,smol360      # the ladder
    python -m scaling.train -m model=tiny_s,tiny_m seed=0,1,2           # seeds
    python -m scaling.train -m finetune=none,full decode=greedy,constrained

Every job writes ``results.json`` (see :mod:`scaling.results`) atomically in its job folder,
``completed`` or ``failed`` with the error; a failing job never stops the sweep. Re-running
a sweep (same ``sweep_name``) skips completed jobs with the same ``config_hash`` and resumes
interrupted ones from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from scaling.paths import CONF_DIR

log = logging.getLogger("scaling.train")

# Keys that say where or how verbosely a job runs, not what it computes: excluded from the
# config hash so a re-run of the same sweep recognises its finished jobs.
_HASH_EXCLUDE = ("sweep_name", "output_root", "run_name", "train_cache", "skip_completed", "resume", "logger", "callbacks",
                 "hydra", "threads")
# Options added after runs existed hash as absent while at their default, so finished jobs
# and cached weights stay recognised.
_HASH_OMIT_AT_DEFAULT = ((("finetune", "tier_repeat"), None), (("data", "train_version"), None),
                         (("model", "depth"), None), (("data", "train_fraction"), 1.0))
_HASH_EXCLUDE_NESTED = (("trainer", "enable_progress_bar"), ("trainer", "default_root_dir"),
                        ("trainer", "log_every_n_steps"), ("decode", "progress"), ("data", "root"),
                        ("finetune", "checkpoint_every_n_steps"), ("finetune", "gradient_checkpointing"))


@dataclass(frozen=True)
class FinetuneConfig:
    """How a job trains (``conf/finetune/*.yaml``)."""

    method: str = "full"
    """``full`` (all weights), ``lora`` (peft adapters, merged before evaluation) or ``none``
    (evaluate the base model: "base vs fine-tuned" is one sweep over this key)."""
    epochs: int = 1
    """Passes over the training split."""
    max_steps: int = -1
    """Cap on optimiser steps (-1: no cap)."""
    batch_size: int = 8
    """Examples per micro-batch (length-grouped, dynamically padded)."""
    max_batch_tokens: int | None = 8192
    """A micro-batch stops growing when examples x longest length would exceed this."""
    accumulate_grad_batches: int = 1
    max_length: int | None = 4096
    """Longest example in tokens; longer ones lose prompt tokens from the left, never answer."""
    val_fraction: float = 0.0
    """Fraction of each schema's training records held out for validation loss (0: none)."""
    tier_repeat: dict[str, int] | None = None
    """Times a tier's training records are seen per epoch (``{complex: 2}``; unnamed tiers
    once): more updates where a model fails without a second epoch over what it already
    fits. Each repeat is its own shuffled pass. Validation records are never repeated."""
    gradient_checkpointing: bool = False
    checkpoint_every_n_steps: int = 50
    """How often ``last.ckpt`` is refreshed (the resume point of a killed job)."""
    optim: dict | None = None
    """See :class:`scaling.module.OptimConfig`."""
    lora: dict | None = None
    """peft LoRA settings: ``r``, ``alpha``, ``dropout``, ``target_modules``."""

    def __post_init__(self) -> None:
        if self.method not in ("full", "lora", "none"):
            raise ValueError(f"finetune.method={self.method!r}: expected full, lora or none")
        if self.method == "lora" and not self.lora:
            raise ValueError("finetune.method=lora needs finetune.lora settings (r, alpha, ...)")
        from scaling.data.io import TIERS

        for tier, times in (self.tier_repeat or {}).items():
            if tier not in TIERS:
                raise ValueError(f"finetune.tier_repeat.{tier}: unknown tier (expected {', '.join(TIERS)})")
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ValueError(f"finetune.tier_repeat.{tier}={times!r}: expected a whole number >= 1")


# --------------------------------------------------------------------------------------
# resolvers used by the configs
# --------------------------------------------------------------------------------------


def _wandb_offline() -> bool:
    """Offline unless W&B credentials exist (or WANDB_MODE says otherwise): never hang."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" not in netrc.read_text()
    except OSError:
        return True


def _job_dirname(overrides: str, limit: int = 200) -> str:
    """The overrides as a folder name, shortened with a hash beyond ``limit`` characters
    (file systems cap a name at 255 bytes; a sweep with many overrides exceeds that)."""
    if len(overrides) <= limit:
        return overrides
    digest = hashlib.sha256(overrides.encode()).hexdigest()[:10]
    return f"{overrides[: limit - 11]}~{digest}"


def _auto_precision(accelerator: str) -> str:
    """``${auto_precision:cpu}``: bf16-mixed where the hardware has fast bf16 (scaling.hardware)."""
    from scaling.hardware import resolve_precision

    return resolve_precision("auto", accelerator)


for _name, _fn in (("wandb_offline", _wandb_offline),
                   ("job_type", lambda method: "eval" if method == "none" else "train"),
                   ("job_dirname", _job_dirname),
                   ("auto_precision", _auto_precision)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _hash(cfg: DictConfig, exclude: tuple[str, ...] = ()) -> str:
    data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    for key in (*_HASH_EXCLUDE, *exclude):
        data.pop(key, None)
    for outer, inner in _HASH_EXCLUDE_NESTED:
        if isinstance(data.get(outer), dict):
            data[outer].pop(inner, None)
    for (outer, inner), default in _HASH_OMIT_AT_DEFAULT:
        if isinstance(data.get(outer), dict) and data[outer].get(inner, default) == default:
            data[outer].pop(inner, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(cfg: DictConfig) -> str:
    """Hash of what the job computes (paths, logging and verbosity excluded)."""
    return _hash(cfg)


def train_hash(cfg: DictConfig) -> str:
    """Hash of what *training* computes: the config hash without decoding and evaluation.

    Jobs of one sweep that differ only in ``decode`` (greedy vs constrained) share it, so the
    second one reuses the first one's fine-tuned weights instead of training again.
    """
    # eval.train_limit changes the training data, so it stays in.
    limit = (cfg.get("eval") or {}).get("train_limit")
    return _hash(cfg, exclude=("decode", "eval")) + (f"-n{limit}" if limit else "")


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for pkg in ("scaling", "torch", "transformers", "lightning", "peft", "xgrammar", "datasets", "hydra-core",
                "wandb", "jsonschema"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def machine_record() -> dict:
    """Where the job ran: host, process, torch threads, accelerator."""
    import socket

    import torch

    from scaling.hardware import machine_bf16_record

    return {"hostname": socket.gethostname(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            **machine_bf16_record()}


EVAL_SPLITS = ("test", "val", "none")


def eval_split(cfg: DictConfig, finetune: "FinetuneConfig") -> str:
    """``eval.split``, checked: ``test`` (the reported score), ``val`` (the records that
    ``finetune.val_fraction`` holds out of train: for choosing settings without touching
    test) or ``none`` (train only; validation loss is still logged)."""
    split = str((cfg.get("eval") or {}).get("split", "test"))
    if split not in EVAL_SPLITS:
        raise ValueError(f"eval.split={split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    if split == "val" and not finetune.val_fraction > 0:
        raise ValueError("eval.split=val scores the records held out of train, but finetune.val_fraction is "
                         f"{finetune.val_fraction}: set finetune.val_fraction (e.g. 0.1)")
    return split


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _job_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def _lora_wrap(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


# --------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------


def train(cfg: DictConfig, job_dir: str | os.PathLike | None = None) -> dict:
    """Run one job and return its results record (also written to ``results.json``)."""
    from scaling.results import RESULTS_FILE, RESULTS_VERSION, atomic_write_json, read_json

    job_dir = Path(job_dir) if job_dir is not None else _job_dir()
    job_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.threads))
    results_path = job_dir / RESULTS_FILE
    chash = config_hash(cfg)
    if cfg.get("skip_completed", True) and results_path.exists():
        try:
            previous = read_json(results_path)
        except (OSError, ValueError):
            previous = {}
        if previous.get("status") == "completed" and previous.get("config_hash") == chash:
            log.info("skip %s: results.json is completed with the same config_hash %s", job_dir, chash)
            previous["skipped"] = True
            return previous

    record: dict[str, Any] = {
        "results_version": RESULTS_VERSION,
        "status": "running",
        "error": None,
        "run_name": cfg.run_name,
        "group": cfg.sweep_name,
        "job_dir": str(job_dir),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "config_hash": chash,
        "seed": int(cfg.seed),
        "versions": package_versions(),
        "machine": machine_record(),
        "created_at": _now(),
    }
    atomic_write_json(results_path, record)
    loggers: list = []
    try:
        _run(cfg, job_dir, record, loggers)
        record["status"] = "completed"
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, KeyboardInterrupt too
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        log.error("job %s failed: %s: %s", cfg.run_name, type(exc).__name__, exc)
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, SystemExit):
            # Lightning turns SIGTERM (preemption, `kill`) into SIGTERMException, a SystemExit
            # with no code: stop the whole sweep as the signal asks, with the shell's status
            # for it, instead of starting the next job.
            raise SystemExit(exc.code if exc.code not in (None, 0) else 128 + signal.SIGTERM) from exc
    finally:
        record["finished_at"] = _now()
        atomic_write_json(results_path, record)
        _finish_wandb(loggers, record)
    return record


def _run(cfg: DictConfig, job_dir: Path, record: dict, loggers: list) -> None:
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from scaling.data.prompts import format_prompt, format_target
    from scaling.data.sft import stratified_fraction, stratified_split
    from scaling.decode import DecodeConfig, answer_prompt_ratio, derive_max_new_tokens
    from scaling.evaluate import evaluate_records
    from scaling.models import build_model, build_tokenizer, category_for, count_parameters, resolved_revision
    from scaling.models.depth import calibration_for, depth_record
    from scaling.results import METRICS_FILE, PREDICTIONS_FILE, atomic_write_json, write_jsonl

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    spec = instantiate(cfg.model, _convert_="all")
    data_spec = instantiate(cfg.data, _convert_="all")
    finetune = instantiate(cfg.finetune, _convert_="all")
    decode: DecodeConfig = instantiate(cfg.decode, _convert_="all")
    fmt = data_spec.prompt_format
    split = eval_split(cfg, finetune)

    log.info("data: loading %s %s", data_spec.name, data_spec.root)
    data = data_spec.load()
    train_records = list(data.train)
    test_records = list(data.test)
    if cfg.eval.get("train_limit"):
        train_records = train_records[: int(cfg.eval.train_limit)]
    # The held-out validation records are fixed by (val_fraction, seed), whether or not this
    # job trains, so a base model and a fine-tuned one are scored on the same ones.
    fit_records, val_records = stratified_split(train_records, finetune.val_fraction, seed=int(cfg.seed))
    fit_records = stratified_fraction(fit_records, data_spec.train_fraction, seed=int(cfg.seed))
    eval_records = {"test": test_records, "val": val_records, "none": []}[split]
    if cfg.eval.get("limit"):
        eval_records = eval_records[: int(cfg.eval.limit)]
    record["data"] = {"name": data.name, "version": data.version, "root": str(data.root) if data.root else None,
                      "n_train": len(fit_records), "train_fraction": data_spec.train_fraction,
                      "n_val": len(val_records), "n_test": len(test_records),
                      "eval_split": split, "n_eval": len(eval_records), "files": data.files}

    bpe_texts = None
    if (spec.tokenizer or {}).get("kind") == "bpe":
        # The tiny models' BPE is trained on the training split only (never on test text).
        bpe_texts = [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt) + format_target(r.expected_output, fmt)
                     for r in train_records]
    tokenizer = build_tokenizer(spec, train_texts=bpe_texts)
    model = build_model(spec, tokenizer=tokenizer, seed=int(cfg.seed),
                        calibration=calibration_for(spec, fit_records, data.schemas, tokenizer, fmt))
    base_counts = count_parameters(model)
    record["model"] = {"key": spec.key, "source": spec.source, "hub_id": spec.hub_id, "revision": spec.revision,
                       "revision_resolved": resolved_revision(spec, model),
                       "family": spec.family, "vocab_size": len(tokenizer), "depth": depth_record(model)}
    record["category"] = category_for(base_counts.total)
    record["finetune"] = {"method": finetune.method, "epochs": finetune.epochs, "max_steps": finetune.max_steps,
                          "optim": finetune.optim, "lora": finetune.lora, "tier_repeat": finetune.tier_repeat}
    log.info("model %s: %s parameters (%s non-embedding), category %s", spec.key, f"{base_counts.total:,}",
             f"{base_counts.non_embedding:,}", record["category"])

    loggers.extend(_build_loggers(cfg))
    _wandb_tags(loggers, record["category"], base_counts.total)

    trainable = base_counts.trainable
    record["train"] = None
    cache_dir = Path(cfg.train_cache) / train_hash(cfg) if cfg.get("train_cache") else None
    if finetune.method == "none":
        trainable = 0
    elif cache_dir is not None and (cache_dir / "train.json").exists():
        # Same training config already trained in this output root: reuse its weights.
        from scaling.results import read_json

        cached = read_json(cache_dir / "train.json")
        model = load_weights(model, cache_dir / "model.safetensors")
        record["train"] = {**cached["train"], "reused_from": str(cache_dir)}
        trainable = cached["trainable"]
        log.info("training: reusing fine-tuned weights from %s", cache_dir)
    else:
        if finetune.method == "lora":
            model = _lora_wrap(model, finetune.lora)
            trainable = count_parameters(model).trainable
        record["train"] = _fit(cfg, job_dir, model, tokenizer, data, fit_records, val_records, finetune, fmt, loggers)
        if finetune.method == "lora":
            model = model.merge_and_unload()  # plain weights: faster generation, same function
        if cache_dir is not None:
            _save_cached_weights(model, cache_dir, {"train": record["train"], "trainable": trainable,
                                                    "job_dir": str(job_dir)})
    record["params"] = {"total": base_counts.total, "non_embedding": base_counts.non_embedding,
                        "trainable": trainable}

    if split == "none":
        record["eval"] = record["metrics"] = None
        log.info("eval.split=none: no evaluation (training and validation loss only)")
        return
    all_targets = [format_target(r.expected_output, fmt) for r in list(data.train) + list(data.test)]
    max_new = derive_max_new_tokens(tokenizer, all_targets, decode)
    # Per-row caps come from the records the model was fitted on, never from what it is scored on.
    cap_ratio = answer_prompt_ratio(
        tokenizer, [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt, tokenizer) for r in fit_records],
        [format_target(r.expected_output, fmt) for r in fit_records]) if decode.prompt_cap else None
    record["decode"] = {"mode": decode.mode, "max_new_tokens": max_new, "stop_at_json_end": decode.stop_at_json_end,
                        "batch_size": decode.batch_size, "grammar_strict": decode.grammar_strict,
                        "engine": decode.engine, "dtype": decode.dtype, "prompt_cap_ratio": cap_ratio}
    device = torch.device("cuda") if torch.cuda.is_available() and cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto") else torch.device("cpu")
    model.to(device)
    log.info("eval: %d %s examples, %s decoding, max_new_tokens=%d", len(eval_records), split, decode.mode, max_new)
    result = evaluate_records(model, tokenizer, eval_records, data.schemas, fmt, decode, max_new_tokens=max_new,
                              desc=f"eval {spec.key}", cap_ratio=cap_ratio)
    write_jsonl(job_dir / PREDICTIONS_FILE, result.rows)
    atomic_write_json(job_dir / METRICS_FILE, result.metrics)
    record["eval"] = result.stats
    record["metrics"] = result.metrics
    overall = result.metrics["overall"]
    log.info("eval %s: JSONExact %.3f  Field F1 %.3f  compliance %.3f  (%.1f tok/s)", spec.key, overall["json_exact"],
             overall["field_f1"], overall["schema_compliance"], result.stats.get("tokens_per_s") or 0.0)
    _wandb_results(loggers, record, result.rows)


def _fit(cfg, job_dir: Path, model, tokenizer, data, train_recs, val_recs, finetune: FinetuneConfig, fmt,
         loggers) -> dict:
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from scaling.data.sft import SFTDataset, tier_passes
    from scaling.module import OptimConfig, SFTDataModule, SFTModule, peak_memory_mb

    train_set = SFTDataset(train_recs, data.schemas, tokenizer, fmt, finetune.max_length)
    val_set = SFTDataset(val_recs, data.schemas, tokenizer, fmt, finetune.max_length) if val_recs else None
    if train_set.n_truncated:
        log.warning("%d training examples exceed finetune.max_length=%s and lost prompt tokens",
                    train_set.n_truncated, finetune.max_length)
    extra_passes = tier_passes(train_recs, finetune.tier_repeat)
    examples_per_epoch = len(train_set) + sum(map(len, extra_passes))
    if extra_passes:
        log.info("finetune.tier_repeat=%s: %d examples an epoch (%d distinct)", finetune.tier_repeat,
                 examples_per_epoch, len(train_set))
    dm = SFTDataModule(train_set, val_set, tokenizer.pad_token_id, finetune.batch_size, finetune.max_batch_tokens,
                       seed=int(cfg.seed), extra_passes=extra_passes)
    module = SFTModule(model, OptimConfig.from_config(finetune.optim), finetune.gradient_checkpointing,
                       name=str(cfg.model.key))
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    if val_set is not None:
        callbacks.append(ModelCheckpoint(dirpath=job_dir / "checkpoints", filename="best", monitor="val/loss",
                                         mode="min", save_top_k=1, auto_insert_metric_name=False))
    extra = {} if val_set is not None else {"limit_val_batches": 0}
    trainer: L.Trainer = instantiate(cfg.trainer)(callbacks=callbacks, logger=loggers or False, **extra)
    last = job_dir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if cfg.get("resume", True) and last.exists() else None
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    wall = time.perf_counter() - t0
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
        "resumed_from": ckpt_path,
        "final_train_loss": _metric(trainer, "train/loss_epoch"),
        "final_val_loss": _metric(trainer, "val/loss"),
        "precision": str(trainer.precision),
        "device": str(device),
        "world_size": trainer.world_size,
    }
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return stats


def _save_cached_weights(model, cache_dir: Path, info: dict) -> None:
    """Fine-tuned weights + training stats; train.json is written last (the completeness mark)."""
    from safetensors.torch import save_file

    from scaling.results import atomic_write_json

    cache_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Tied weights share storage; safetensors refuses shared tensors, so store clones.
    seen: dict[int, str] = {}
    for k, v in list(state.items()):
        ptr = v.untyped_storage().data_ptr()
        if ptr in seen:
            state[k] = v.clone()
        seen[ptr] = k
    tmp = cache_dir / ".model.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, cache_dir / "model.safetensors")
    atomic_write_json(cache_dir / "train.json", info)


def load_weights(model, path: Path):
    """Load a ``model.safetensors`` written by the train cache into ``model`` (tied weights re-tied)."""
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"cached weights {path} do not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}; delete the folder to retrain")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


def _metric(trainer, key: str):
    value = trainer.callback_metrics.get(key)
    return None if value is None else round(float(value), 5)


def _build_loggers(cfg: DictConfig) -> list:
    from hydra.utils import instantiate

    out = []
    for conf in (cfg.get("logger") or {}).values():
        if conf is not None and "_target_" in conf:
            out.append(instantiate(conf))
    return out


def _wandb_loggers(loggers: list) -> list:
    return [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]


def _wandb_tags(loggers: list, category: str, n_params: int) -> None:
    for lg in _wandb_loggers(loggers):
        run = lg.experiment
        run.tags = tuple(run.tags or ()) + (category, f"{n_params / 1e6:.0f}M")


def _wandb_results(loggers: list, record: dict, rows: list[dict]) -> None:
    split = record["data"]["eval_split"]  # "test" or "val": val scores never show up as test ones
    for lg in _wandb_loggers(loggers):
        import wandb

        run = lg.experiment
        run.config.update(record["config"], allow_val_change=True)
        summary = {f"params/{k}": v for k, v in record["params"].items()}
        for key, value in record["metrics"]["overall"].items():
            if isinstance(value, (int, float)):
                summary[f"{split}/{key}"] = value
        for tier, m in record["metrics"]["by_tier"].items():
            for key in ("json_exact", "field_f1", "schema_compliance"):
                summary[f"{split}/{tier}/{key}"] = m[key]
        summary.update({f"eval/{k}": v for k, v in record["eval"].items() if isinstance(v, (int, float))})
        run.summary.update(summary)
        columns = ["id", "schema_id", "tier", "status", "json_exact", "field_f1", "schema_compliance", "output"]
        table = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
        run.log({f"{split}/predictions": table})


def _finish_wandb(loggers: list, record: dict) -> None:
    """Close the W&B run of this job (each multirun job is its own run)."""
    if not _wandb_loggers(loggers):
        return
    import wandb

    if wandb.run is not None:
        wandb.run.summary["status"] = record.get("status")
        wandb.finish(exit_code=0 if record.get("status") == "completed" else 1)


def _hydra_task(cfg: DictConfig) -> float | None:
    record = train(cfg)
    if record.get("status") != "completed":
        err = record.get("error") or {}
        message = f"job {cfg.run_name} failed: {err.get('type')}: {err.get('message')} (see {record.get('job_dir')}/results.json)"
        if _is_multirun():
            return None  # train() has logged the error; the sweep goes on with the next job
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    if not record.get("metrics"):
        return None  # eval.split=none: nothing to optimise
    return float(record["metrics"]["overall"]["json_exact"])


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    return _hydra_task(cfg)


if __name__ == "__main__":
    main()

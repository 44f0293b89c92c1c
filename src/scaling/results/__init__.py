"""`results.json`: the contract between a training job and the analysis.

One file per job, written atomically (temporary file in the same folder, then
``os.replace``) so a reader never sees half a file, and a killed job leaves either
the previous complete file or none (:mod:`scaling.results.files`). A run folder is read in one
place, :class:`RunFolder` (:mod:`scaling.results.folder`); ``results.json`` typed is
:class:`Results` (:mod:`scaling.results.record`). This module holds the contract and what the
analysis derives from a record (size category, recipe, decoder and model labels).

Format, version ``RESULTS_VERSION``::

    {
      "results_version": 1,
      "status": "completed" | "failed" | "running",
      "error": null | {"type": str, "message": str, "traceback": str},
      "run_name": str,                       # e.g. "smol135-full-s0"
      "group": str,                          # the sweep (W&B group); the multirun folder name
      "job_dir": str,
      "model": {"key": str, "source": "hub"|"gguf"|"random"|"local", "hub_id": str|null,
                "revision": str|null,          # as configured (a branch such as "main", or a commit)
                "revision_resolved": str|null, # the 40-hex commit the hub weights came from
                                               # (source=hub; also from the local cache), else null
                "family": str, "vocab_size": int,
                "depth": null | {"rule": str, "keep": int, "n_blocks": int, "kept": [int],
                                 "dropped": [int], "scores": [float],   # one per original block
                                 "measured_on": {...}, "seconds": float},  # model.depth
                "grow": null | {"rule": str, "add": int, "n_blocks": int, "n_blocks_grown": int,
                                "sources": [int], "inserted": [int], "origin": [int],
                                "zeroed": [str], "train": "all"|"new",
                                "params": {"source": int, "grown": int, "added": int,
                                           "new_blocks": int, "trainable": int}}},  # model.grow
      "params": {"total": int, "non_embedding": int, "trainable": int},   # measured
      "category": "NLM"|"MLM"|"SLM"|"LLM",     # from params.total
      "finetune": {"method": "full"|"lora"|"none", ...},
      "decode": {"mode": "greedy"|"constrained", "max_new_tokens": int, "grammar_strict": bool},
                                             # absent with eval.split=none
      "data": {"name": str, "version": str, "n_train": int,   # records trained on
               "train_fraction": float,      # data.train_fraction (1.0: all; absent in old runs)
               "n_val": int,                 # held out by finetune.val_fraction
               "n_test": int, "eval_split": "test"|"val"|"none", "n_eval": int,
               "files": {path: sha256}},
      "train": null | {"tokens": int, "target_tokens": int, "steps": int, "epochs": float,
                       "wall_s": float, "train_step_s": float, "tokens_per_s": float,
                       "peak_mem_mb": float, "resumed_from": str|null, "resumed_at_step": int|null,
                       "reused_from": str,     # present when the train cache's weights were used
                       "cache_error": str,     # present when the train cache could not be written
                       ...},                   # every key, with its meaning: TrainSection
      "eval": {"wall_s": float, "generated_tokens": int, "tokens_per_s": float,
               "latency_s_per_example": float, "n": int},
      "metrics": {"overall": M, "by_tier": {tier: M}, "by_schema": {schema_id: M},  # null with eval.split=none
                  "complex_plus": M + {"by_schema": {schema_id: M}, "parts": {...}}},   # when added (below)
      "config": {...resolved Hydra config...},
      "config_hash": str,                    # the config without bookkeeping keys
      "data_hash": str,                      # the content of data.files (not their paths)
      "train_hash": str,                     # the training's identity: the train cache's key
                                             # (see scaling.jobs.identity)
      "seed": int,
      "versions": {package: version},
      "created_at": iso8601, "finished_at": iso8601
    }

where ``M`` is the aggregate written by :func:`scaling.metrics.aggregate`:
``{"n": int, "json_exact": float, "field_f1": float, "field_f1_toplevel": float,
"schema_compliance": float, "compliance_keys_types": float,
"ci": {metric: [lo, hi]}}`` (fractions in [0, 1], 95% bootstrap intervals), plus what the
prompts determine (:func:`scaling.ceiling.summarise`): ``"ceiling"`` (the best JSONExact any
reader of the prompts can expect, with its interval, and JSONExact as a share of it) and
``"answers"`` (answers per kind: exact, gold contradicts the prompt, unparsed, another reading
of the prompt, inconsistent with it).

``metrics.complex_plus`` is present only once :mod:`scaling.complex_plus` has pooled the run's complex
answers with the same model's answers on ``v3_extra/test_complex.jsonl`` (n = 145, "complex+"), and
``complex_plus.jsonl`` beside it then holds those 145 answers; the other blocks stay the 158's.

``predictions.jsonl`` beside it holds one line per evaluated example (``eval.split``) with ``id``,
``schema_id``, ``tier``, ``output`` (raw model text), ``status``, ``parsed``, the
per-example metric values and :func:`scaling.ceiling.score_rows`' fields (``ceiling``,
``answer_kind`` ...), so analysis can pair examples across models.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from scaling.data.io import sha256_file  # noqa: F401 - re-exported: results name files by their sha256
from scaling.metrics import METRIC_KEYS
from scaling.results.files import (COMPLEX_PLUS_FILE, METRICS_FILE, PREDICTIONS_FILE, RESULTS_FILE,  # noqa: F401
                                   RESULTS_VERSION, atomic_write_json, atomic_write_text, read_json, write_jsonl)
from scaling.results.folder import (RunFolder, check_id, read_jsonl, read_outputs, read_predictions,  # noqa: F401
                                    read_results_json, read_text, without_line)
from scaling.results.record import DataSection, EvalStats, Hashes, Results, RunError, TrainSection  # noqa: F401

CATEGORY_BOUNDS = (("NLM", 10e6), ("MLM", 250e6), ("SLM", 1e9), ("LLM", float("inf")))
"""The study's size categories by total parameters (upper bound exclusive): nano (<10M),
micro (10M-250M), small (250M-1B), large. ``results.json: category`` and the fit's tables use them."""


def category_for(n_params: float) -> str:
    """Category of a model from its measured total parameter count."""
    for name, upper in CATEGORY_BOUNDS:
        if n_params < upper:
            return name
    return CATEGORY_BOUNDS[-1][0]


def describe_categories() -> str:
    """``"NLM <10M, MLM 10M-250M, SLM 250M-1B, LLM above"``."""
    def size(n: float) -> str:
        return f"{n / 1e9:g}B" if n >= 1e9 else f"{n / 1e6:g}M"
    parts, lower = [], None
    for name, upper in CATEGORY_BOUNDS:
        if upper == float("inf"):
            parts.append(f"{name} above")
        else:
            parts.append(f"{name} <{size(upper)}" if lower is None else f"{name} {size(lower)}-{size(upper)}")
        lower = upper
    return ", ".join(parts)


REFERENCE_PREDICTION_KEYS = ("id", "schema_id", "tier", "output", "status", "n_tokens", "hit_eos", "looped", "capped",
                             *METRIC_KEYS)
"""What a committed reference run keeps of each prediction: the model's own output and its
scores, never the prompt or expected text (the data stays in its own repository)."""


def decode_label(mode: str, config: Any) -> str:
    """The decoder a job used, as tables and fit series name it: ``mode``, with
    ``" (strict)"`` for a constrained job with ``decode.grammar_strict`` and ``", grounded"``
    inside the brackets for one with ``decode.grounded`` (values kept to the prompt)."""
    decode = (config or {}).get("decode") or {}
    notes = [n for n, on in (("strict", decode.get("grammar_strict") and mode == "constrained"),
                             ("grounded", decode.get("grounded"))) if on]
    return f"{mode} ({', '.join(notes)})" if notes else mode


def recipe(config: Any) -> tuple[tuple[str, str], ...]:
    """What a job's model was shown and trained on, beyond model and decoder, as
    ``(name, value)`` pairs: the prompt format, and for a fine-tuned job its epochs,
    learning rate, tier repeats, share of the training records (``data.train_fraction``:
    the data axis), the training data (:func:`train_data`: ``v2`` for a job trained on
    EdgeJSON v2's records), the training precision (``trainer.precision``, as resolved:
    ``32-true`` vs ``bf16-mixed``) and which parameters train (``trains``: ``new blocks`` for a
    grown rung with ``model.grow.train=new``, else ``all``). Two jobs that differ here are different recipes, never
    replicates of one (see :func:`varying_recipe`)."""
    config = config or {}
    prompt = (config.get("data") or {}).get("prompt") or {}
    parts = [("prompt", str(prompt.get("schema", "?"))), ("template", str(prompt.get("template", "?")))]
    finetune = config.get("finetune") or {}
    if finetune.get("method", "none") != "none":
        repeat = finetune.get("tier_repeat") or {}
        parts += [("epochs", str(finetune.get("epochs", "?"))),
                  ("lr", f"{((finetune.get('optim') or {}).get('lr', '?'))}"),
                  ("repeat", ", ".join(f"{t}×{n}" for t, n in sorted(repeat.items())) or "none"),
                  (RECORDS, fraction_label(train_fraction(config))),
                  (TRAIN, train_data(config)),
                  ("precision", str((config.get("trainer") or {}).get("precision", "?"))),
                  ("trains", "new blocks" if ((config.get("model") or {}).get("grow") or {}).get("train") == "new"
                   else "all")]
    return tuple(parts)


#: The recipe part that names the data axis (``data.train_fraction``).
RECORDS = "records"


#: The recipe part that names the training data (``data.train_version`` / ``data.train_file``).
TRAIN = "train"


def train_data(config: Any) -> str:
    """The training data of a job's config as recipes name it: ``data.train_version``
    (``"v2"``) when it is not the scored ``data.version``; ``data.train_file`` as its last
    two path parts (``"v2/train.jsonl"``, ``"mine/small.jsonl"``) unless it is the layout's
    own ``<root>/<version>/train.jsonl``; else ``data.version`` (``"v3"``: the default, the
    train split of the test set's version). With ``data.extra_train_file`` the extra records
    follow: ``"v3 + v3_extra/train.jsonl 50%"`` (the 200% point of EdgeJSON's data axis): never
    the published training set, so never the same series as v3 alone.

    Every fine-tuned job carries the part, the default included: :func:`varying_recipe`
    compares a name among the jobs that have it, so a v2 job beside v3 jobs that lacked the
    part would read as the same recipe. In a sweep trained on one file it does not vary and
    appears in no label or series."""
    data = (config or {}).get("data") or {}
    base = _base_train_data(data)
    extra = data.get("extra_train_file")
    if not extra:
        return base
    fraction = data.get("extra_train_fraction", 1.0)
    return f"{base} + {'/'.join(Path(str(extra)).parts[-2:])} {fraction_label(float(fraction))}"


def _base_train_data(data: Any) -> str:
    version = str(data.get("version") or "?")
    train_file, train_version = data.get("train_file"), data.get("train_version")
    if train_file:
        path = Path(str(train_file))
        default = Path(str(data.get("root"))) / version / "train.jsonl" if data.get("root") else None
        if default is not None and os.path.normpath(path) == os.path.normpath(default):
            return version
        return "/".join(path.parts[-2:])
    if train_version:
        return str(train_version)
    return version


def train_fraction(config: Any) -> float:
    """``data.train_fraction`` of a job's config (1.0 when absent: jobs from before the option)."""
    value = ((config or {}).get("data") or {}).get("train_fraction", 1.0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 1.0


def fraction_label(fraction: float) -> str:
    """``"25%"``, ``"100%"``: a train fraction as recipes and tables name it."""
    return f"{fraction * 100:.4g}%"


def model_key(model: Any) -> str:
    """The key the analysis names a job's model by: ``results.json``'s ``model.key``, with
    ``_d<k>`` appended when ``model.depth`` kept ``k`` of more blocks, or ``_g<k>`` when
    ``model.grow`` added ``k`` blocks, and the key does not already say so
    (``model=smol135 model.depth={keep:8}`` is ``smol135_d8``, never a replicate of the
    30-block ``smol135``; ``model.grow={add:8}`` makes it ``smol135_g8``)."""
    key = str((model or {}).get("key"))
    depth = (model or {}).get("depth")
    if isinstance(depth, dict) and isinstance(depth.get("kept"), list) and isinstance(depth.get("n_blocks"), int):
        k = len(depth["kept"])
        if k < depth["n_blocks"] and not key.endswith(f"_d{k}"):
            key = f"{key}_d{k}"
    grow = (model or {}).get("grow")
    if isinstance(grow, dict) and isinstance(grow.get("add"), int) and not isinstance(grow.get("add"), bool):
        k = grow["add"]
        if not key.endswith(f"_g{k}"):
            key = f"{key}_g{k}"
    return key


def rung_kind(model: Any) -> str:
    """How a job's model relates to its pretrained source: ``pruned`` (``model.depth`` kept fewer
    blocks), ``grown`` (``model.grow`` added blocks) or ``original``."""
    depth = (model or {}).get("depth")
    if isinstance(depth, dict) and isinstance(depth.get("kept"), list) and isinstance(depth.get("n_blocks"), int) \
            and len(depth["kept"]) < depth["n_blocks"]:
        return "pruned"
    grow = (model or {}).get("grow")
    if isinstance(grow, dict) and grow.get("add"):
        return "grown"
    return "original"


def varying_recipe(recipes: Iterable[tuple[tuple[str, str], ...]]) -> frozenset[str]:
    """The recipe names whose values differ across ``recipes`` (a name missing from some,
    e.g. the learning rate of a base job, is compared among those that have it)."""
    values: dict[str, set[str]] = {}
    for parts in recipes:
        for name, value in parts:
            values.setdefault(name, set()).add(value)
    return frozenset(name for name, vals in values.items() if len(vals) > 1)


def recipe_label(parts: tuple[tuple[str, str], ...], names: frozenset[str]) -> str:
    """``"prompt fields, repeat complex×2"``: the parts named in ``names``, in recipe order."""
    return ", ".join(f"{name} {value}" for name, value in parts if name in names)


def export_reference(job_dir: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy a job's ``results.json`` and a prompt-free ``predictions.jsonl`` to ``dest``, and its
    ``complex_plus.jsonl`` when it has one (already prompt-free)."""
    folder, dest = RunFolder(job_dir), Path(dest)
    results = folder.results_json()
    rows = [{k: row[k] for k in REFERENCE_PREDICTION_KEYS if k in row} for row in folder.predictions()]
    dest.mkdir(parents=True, exist_ok=True)
    if folder.complex_plus_path.is_file():
        atomic_write_text(dest / COMPLEX_PLUS_FILE, folder.complex_plus_path.read_text(encoding="utf-8"))
    atomic_write_json(dest / RESULTS_FILE, results)
    write_jsonl(dest / PREDICTIONS_FILE, rows)
    return dest

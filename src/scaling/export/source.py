"""A finished job as the source of an export: its record, data, tokenizer and weights.

A job folder holds ``results.json`` (the resolved config, the data's sha256, metrics) and
``predictions.jsonl``; the fine-tuned weights live in the train cache
(``<train_cache>/<train_hash>/model.safetensors``, see :mod:`scaling.jobs.cache`), shared by
the jobs that differ only in decoding. They are found from ``--weights``, else as
:func:`scaling.jobs.from_job.find_weights` finds them for ``scaling.evaluate from_job=...``:
``train.reused_from`` in ``results.json``, or ``train_cache`` / train hash as recorded (for
jobs older than the recorded ``train_hash``: recomputed from the config and ``data_hash``),
each relative path tried from the working directory and from the folders above the job (a
sweep runs from the repository root, with ``output_root`` relative to it). The cache entry's
own ``train.json`` must name one of the job's train hashes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaling.data import DataError
from scaling.data.prompts import format_prompt, format_target
from scaling.decode import DecodeConfig
from scaling.errors import LocatedError
from scaling.jobs.from_job import SourceJobError, WeightsNotFound, candidates, find_weights, known_train_hashes
from scaling.models import ModelSpec
from scaling.results import PREDICTIONS_FILE, RESULTS_FILE, RunFolder, read_outputs, sha256_file


class ExportError(LocatedError, RuntimeError):
    """An export cannot proceed; the message names the file, field or flag and what to do."""


def _first_existing(path: str, job_dir: Path, marker: str) -> Path | None:
    for cand in candidates(path, job_dir):
        if (cand / marker).exists():
            return cand
    return None


@dataclass
class JobSource:
    """A completed job, read from its folder."""

    job_dir: Path
    results: dict
    config: Any = field(repr=False)
    """The recorded config as an OmegaConf ``DictConfig`` (what Hydra instantiated)."""

    @classmethod
    def load(cls, job_dir: str | os.PathLike) -> "JobSource":
        from omegaconf import OmegaConf

        job_dir = Path(job_dir)
        path = job_dir / RESULTS_FILE
        results = RunFolder(job_dir).results_json(
            ExportError, missing="no results.json (expected a job folder of `python -m scaling.train`)")
        if results.get("status") != "completed":
            raise ExportError(f"{path}: field status is {results.get('status')!r}; only a completed job can be "
                              "exported")
        for key in ("config", "config_hash", "model", "params", "category", "data", "finetune"):
            if key not in results:
                raise ExportError(f"{path}: field {key!r} is missing")
        return cls(job_dir=job_dir, results=results, config=OmegaConf.create(results["config"]))

    # ---------------------------------------------------------------- what the job used

    @property
    def results_path(self) -> Path:
        return self.job_dir / RESULTS_FILE

    @property
    def predictions_path(self) -> Path | None:
        path = self.job_dir / PREDICTIONS_FILE
        return path if path.is_file() else None

    def model_spec(self):
        """The job's model spec; for a depth rung, the blocks it kept as recorded
        (``model.depth.kept``), so Block Influence is not measured again."""
        from dataclasses import replace

        spec = ModelSpec.from_config(self.config.model)
        recorded = (self.results.get("model") or {}).get("depth") or {}
        if getattr(spec, "depth", None) is not None and recorded.get("kept") is not None:
            kept = [int(i) for i in recorded["kept"]]
            spec = replace(spec, depth={"rule": "indices", "keep": len(kept), "indices": kept})
        return spec

    def data_spec(self, data_root: str | os.PathLike | None = None):
        from dataclasses import replace

        from hydra.utils import instantiate

        spec = instantiate(self.config.data, _convert_="all")
        if data_root is not None:
            return replace(spec, root=str(data_root), synth=None)
        if spec.root and not Path(spec.root).is_absolute() and not (Path(spec.root) / spec.version).is_dir():
            # A relative root is relative to where the sweep ran: try the folders above the job.
            found = _first_existing(spec.root, self.job_dir, spec.version)
            if found is not None:
                spec = replace(spec, root=str(found))
        return spec

    def decode_config(self):
        """The job's decoding settings (settings added since the job ran take their defaults)."""
        data = {k: v for k, v in dict(self.results["config"].get("decode") or {}).items() if k != "_target_"}
        return DecodeConfig.from_config(data)

    @property
    def cap_ratio(self) -> float | None:
        """The answer/prompt ratio the job's per-row caps used (``None``: no per-row caps)."""
        ratio = (self.results.get("decode") or {}).get("prompt_cap_ratio")
        return None if ratio is None else float(ratio)

    @property
    def max_new_tokens(self) -> int:
        decode = self.results.get("decode") or {}
        if not decode.get("max_new_tokens"):
            raise ExportError(f"{self.results_path}: field decode.max_new_tokens is missing (a job with "
                              "eval.split=none has no decoding to reproduce); pass it explicitly")
        return int(decode["max_new_tokens"])

    def load_data(self, data_root: str | os.PathLike | None = None):
        """The job's dataset, checked byte for byte against the sha256 in ``results.json``."""
        spec = self.data_spec(data_root)
        try:
            data = spec.load()
        except DataError as exc:
            raise ExportError(f"cannot read the data of {self.results_path} ({exc}); pass --data-root") from None
        recorded = self.results["data"].get("files") or {}
        self._check_files(recorded, self.results["data"].get("root"), data.files, str(data.root or ""))
        return data

    def _check_files(self, recorded: dict, recorded_root: str | None, found: dict, found_root: str) -> None:
        def rel(files: dict, root: str | None) -> dict[str, str]:
            out = {}
            for p, sha in files.items():
                out[os.path.relpath(p, root) if root else os.path.basename(p)] = sha
            return out

        want, have = rel(recorded, recorded_root), rel(found, found_root)
        for name, sha in want.items():
            if name not in have:
                raise ExportError(f"{self.results_path}: data file {name} (field data.files) is not in the data at "
                                  f"{found_root}; pass --data-root")
            if have[name] != sha:
                raise ExportError(f"{self.results_path}: data file {name} has sha256 {have[name][:12]}... at "
                                  f"{found_root}, but the job read {sha[:12]}...; this is not the job's data")

    def tokenizer(self, data=None):
        """The job's tokenizer, rebuilt the way :func:`scaling.pipeline.build_tokenizer_and_model` built it (a trained
        BPE needs ``data``: it is trained on the training split, deterministically)."""
        spec = self.model_spec()
        texts = None
        if (spec.tokenizer or {}).get("kind") == "bpe":
            if data is None:
                raise ExportError("a trained BPE tokenizer needs the job's data")
            fmt = self.data_spec().prompt_format
            records = list(data.train)
            limit = (self.results["config"].get("eval") or {}).get("train_limit")
            if limit:
                records = records[: int(limit)]
            # As scaling.pipeline builds it: prompt + target of every training record (never test text).
            texts = [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt) + format_target(r.expected_output, fmt)
                     for r in records]
        from scaling.models import build_tokenizer  # here: it loads torch, which --help never needs

        tok = build_tokenizer(spec, train_texts=texts)
        vocab = self.results["model"].get("vocab_size")
        if vocab is not None and len(tok) != int(vocab):
            raise ExportError(f"{self.results_path}: the rebuilt tokenizer has {len(tok)} tokens, the job's had "
                              f"{vocab} (field model.vocab_size)")
        return tok

    # ---------------------------------------------------------------- weights

    def weights_path(self, override: str | os.PathLike | None = None) -> Path | None:
        """The fine-tuned ``model.safetensors`` (``None`` for ``finetune.method=none``)."""
        if override is not None:
            path = Path(override)
            path = path / "model.safetensors" if path.is_dir() else path
            if not path.is_file():
                raise ExportError(f"--weights {override}: no such file")
            return path
        try:
            return find_weights(self.results, self.job_dir)
        except WeightsNotFound as exc:
            raise ExportError(f"{exc}. Pass --weights PATH/model.safetensors, or run the export from where the "
                              "sweep ran.") from None
        except SourceJobError as exc:
            raise ExportError(str(exc)) from None

    @property
    def train_hash(self) -> str | None:
        """The job's train hash: recorded, or (older jobs) recomputed from config and data."""
        return (known_train_hashes(self.results) or [None])[0]

    def build_model(self, tokenizer, weights: Path | None):
        """The job's architecture with the fine-tuned weights loaded (fp32, eval mode)."""
        spec = self.model_spec()
        from scaling.models import build_model  # here: it loads torch

        model = build_model(spec, tokenizer=tokenizer, seed=int(self.results.get("seed", 0)))
        if weights is not None:
            from scaling.jobs.cache import load_weights  # here: safetensors.torch

            model = load_weights(model, weights)
        return _without_gguf_marker(model).eval()

    def reference_outputs(self) -> dict[str, str] | None:
        """``{id: output}`` of the job's own (PyTorch) evaluation, if it has one."""
        if self.predictions_path is None:
            return None
        return read_outputs(self.predictions_path, ExportError)

    def evaluated_records(self, data) -> list:
        """The records the job scored, in its order (the ids of its predictions.jsonl; without
        one, the first ``data.n_eval`` test records). What an export's card and a deployed
        file's measurements are scored on."""
        split = self.results["data"].get("eval_split", "test")
        if split != "test":
            raise ExportError(f"{self.results_path}: the job scored the {split!r} split; an export reports test "
                              "metrics (export a job with eval.split=test)")
        by_id = {r.id: r for r in data.test}
        ref = self.reference_outputs()
        if ref is None:
            return list(data.test)[: int(self.results["data"].get("n_eval") or len(data.test))]
        missing = [i for i in ref if i not in by_id]
        if missing:
            raise ExportError(f"{self.predictions_path}: ids not in the test data: {missing[:5]}")
        return [by_id[i] for i in ref]

    def provenance(self, weights: Path | None) -> dict:
        """What identifies the source: job, config hash, and the sha256 of what was read."""
        out = {
            "job_dir": str(self.job_dir.resolve()),
            "run_name": self.results.get("run_name"),
            "config_hash": self.results["config_hash"],
            "results_sha256": sha256_file(self.results_path),
            "predictions_sha256": sha256_file(self.predictions_path) if self.predictions_path else None,
            "weights": str(weights.resolve()) if weights else None,
            "weights_sha256": sha256_file(weights) if weights else None,
            "train_hash": self.train_hash,
            "data_hash": self.results.get("data_hash"),
        }
        return out


def _without_gguf_marker(model):
    """The same weights in a model built from its config alone.

    transformers dequantises a GGUF to plain fp32 tensors but keeps a GGUF "quantizer" on the
    model (and ``quantization_config`` on its config), and ``save_pretrained`` refuses such a
    model ("quantized with gguf and is not serializable"). Fine-tuned ``smol135_gguf`` weights
    are that kind of model."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    import torch
    from transformers import AutoModelForCausalLM

    from scaling.jobs.cache import plain_config  # here, beside torch and transformers

    plain = AutoModelForCausalLM.from_config(plain_config(model.config), dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise ExportError(f"rebuilding the model without its GGUF marker lost weights: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    plain.tie_weights()
    return plain


def reproduce_overrides(source: JobSource) -> list[str] | None:
    """The job's command-line overrides, from Hydra's ``.hydra/overrides.yaml`` in its folder."""
    path = source.job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [str(x) for x in data] if isinstance(data, list) else None


__all__ = ["ExportError", "JobSource", "reproduce_overrides"]

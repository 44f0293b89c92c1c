"""The train cache: fine-tuned weights keyed by :func:`scaling.jobs.identity.train_hash`.

``<train_cache>/<train_hash>/`` holds ``model.safetensors`` (the merged, evaluation-ready
weights) and ``train.json`` (the training stats, the trainable-parameter count and the job
that trained them). ``train.json`` is written last: an entry without it is incomplete and
is trained again. Jobs that differ only in decoding, evaluation or the test set share an
entry.

An entry is also a transformers folder: ``config.json`` (the architecture as trained: a depth
rung's kept blocks, without the GGUF loader's quantisation marker) and the tokenizer's files,
so ``model.source=local model.path=<entry>`` loads it (with ``model.depth=null``: the blocks
are already dropped). Entries written before these files load only into a model built from
the job's config (:func:`load_weights`, as the train cache, ``from_job`` and the export do).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from scaling.results import atomic_write_json, read_json

log = logging.getLogger("scaling.train")

WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "train.json"


@dataclass(frozen=True)
class CacheEntry:
    """One entry of the train cache (it may not exist yet)."""

    path: Path

    @property
    def complete(self) -> bool:
        return (self.path / INFO_FILE).is_file() and (self.path / WEIGHTS_FILE).is_file()

    def info(self) -> dict[str, Any]:
        return read_json(self.path / INFO_FILE)

    def load_into(self, model):
        """The cached weights loaded into ``model`` (tied weights re-tied)."""
        return load_weights(model, self.path / WEIGHTS_FILE)

    def save(self, model, info: dict[str, Any], tokenizer=None) -> None:
        """Store ``model``'s weights, its config and ``tokenizer``, then ``info`` (the
        completeness mark). Raises OSError when the cache cannot be written; the caller
        decides what that costs."""
        self.path.mkdir(parents=True, exist_ok=True)
        if getattr(model, "config", None) is not None:
            plain_config(model.config).save_pretrained(str(self.path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(self.path))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        # Tied weights share storage; safetensors refuses shared tensors, so store clones.
        seen: set[int] = set()
        for k, v in list(state.items()):
            ptr = v.untyped_storage().data_ptr()
            if ptr in seen:
                state[k] = v.clone()
            seen.add(ptr)
        tmp = self.path / f".{WEIGHTS_FILE}.{os.getpid()}.tmp"
        try:
            save_file(state, str(tmp))
            os.replace(tmp, self.path / WEIGHTS_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_json(self.path / INFO_FILE, info)


def plain_config(config):
    """A copy of a transformers config without the GGUF loader's ``quantization_config``: the
    weights are stored dequantised, and a config that names a quantiser makes
    ``from_pretrained`` look for one."""
    import copy

    config = copy.deepcopy(config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config


def cache_entry(train_cache: str | os.PathLike | None, train_hash: str) -> CacheEntry | None:
    """The entry for ``train_hash`` under ``train_cache`` (None: the cache is off)."""
    return CacheEntry(Path(train_cache) / train_hash) if train_cache else None


def load_weights(model, path: str | os.PathLike):
    """Load a ``model.safetensors`` written by the train cache into ``model`` (tied weights re-tied)."""
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"cached weights {path} do not match the model: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}; delete the folder {Path(path).parent} to retrain")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model

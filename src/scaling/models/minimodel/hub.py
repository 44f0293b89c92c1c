"""MiniModel weights from wherever they are: a ``save_pretrained`` folder, a published-format
folder or file, or the Hugging Face hub (:func:`download_minimodel`, one snapshot so one commit).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint import MiniModelWeightsError, _raise_on_loading_info, load_published_minimodel
from .network import MiniModelConfig, MiniModelForCausalLM
from .tokenizer import special_token_ids

__all__ = ["download_minimodel", "load_minimodel_pretrained"]


def _snapshot_commit(folder: Path) -> str | None:
    """The commit of a hub cache snapshot folder (``.../snapshots/<40 hex>``), else ``None``."""
    name = Path(folder).name
    return name if Path(folder).parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", name) else None


def download_minimodel(
    repo_id: str, revision: str | None = None, local_files_only: bool = False, weights: bool = True
) -> tuple[Path, str | None]:
    """Fetch a published MiniModel repo's weights and tokenizer files (one snapshot, so one commit).

    Returns the snapshot folder (``model.safetensors`` unless ``weights=False``, ``tokenizer.json``,
    ``special_tokens_map.json``, as far as the repo has them) and the commit it resolved to.
    ``local_files_only`` reads the local cache only. ``huggingface_hub`` errors (``OSError``
    subclasses) propagate.
    """
    from huggingface_hub import snapshot_download

    files = ["tokenizer.json", "special_tokens_map.json"] + (["model.safetensors"] if weights else [])
    folder = Path(
        snapshot_download(repo_id, revision=revision, allow_patterns=files, local_files_only=local_files_only)
    )
    if weights and not (folder / "model.safetensors").is_file():
        raise MiniModelWeightsError(f"{repo_id}@{revision or 'main'}: the repository has no model.safetensors")
    return folder, _snapshot_commit(folder)


def load_minimodel_pretrained(
    where: str | Path,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
    **config_overrides: Any,
) -> MiniModelForCausalLM:
    """Load MiniModel weights from a folder, a file or the hub, whatever their format.

    ``where`` is one of: a folder written by ``save_pretrained`` (``config.json`` with
    ``model_type: minimodel``), loaded with ``from_pretrained``; a published-format folder
    (``model.safetensors`` [+ ``tokenizer.json``, ``special_tokens_map.json``]) or ``.safetensors``
    file, loaded with :func:`load_published_minimodel`; otherwise a hub repo id such as
    ``xTimeCrystal/MiniModel-200M-Base``, fetched at ``revision`` with :func:`download_minimodel`
    (the local cache only with ``local_files_only``). For published weights the special-token ids
    come from the tokenizer files next to them (:func:`special_token_ids`); ``config_overrides`` win
    over everything inferred. A hub load sets ``config._commit_hash`` to the commit it resolved to
    (as ``transformers.from_pretrained`` does).

    Raises :class:`MiniModelWeightsError` / :class:`MiniModelTokenizerError` (``ValueError``) for
    unusable files and ``OSError`` (from ``huggingface_hub``) when a hub file is neither reachable
    nor cached.
    """
    path = Path(where)
    commit = None
    if path.is_dir() and (path / "config.json").is_file():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (OSError, ValueError) as err:
            raise MiniModelWeightsError(f"{path / 'config.json'}: unreadable config ({err})") from err
        if model_type != MiniModelConfig.model_type:
            raise MiniModelWeightsError(
                f"{path / 'config.json'}: field 'model_type' is {model_type!r}, expected 'minimodel'"
            )
        model, info = MiniModelForCausalLM.from_pretrained(
            path, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True, **config_overrides
        )
        _raise_on_loading_info(str(path), info, model.config)
        return model.eval()
    if path.exists():
        weights = path / "model.safetensors" if path.is_dir() else path
    else:
        folder, commit = download_minimodel(str(where), revision, local_files_only=local_files_only)
        weights = folder / "model.safetensors"
    tokenizer_json = weights.parent / "tokenizer.json"
    overrides = special_token_ids(tokenizer_json) if tokenizer_json.is_file() else {}
    overrides.update(config_overrides)
    model = load_published_minimodel(weights, dtype=dtype, **overrides)
    model.config._commit_hash = commit
    return model

"""Published-format MiniModel weights: reading a ``model.safetensors``, inferring the config
from its shapes, and loading it into :class:`~.network.MiniModelForCausalLM` with errors that
list every missing, unexpected and mis-shaped tensor.

Parameter names equal the published ones (``emb.weight``, ``blocks.N.att.{q,k,v,g,o}_proj.weight``,
``blocks.N.ffn.{k,v}_proj.weight``), so a published state dict loads directly; ``lm_head.weight``
is tied to ``emb.weight`` and never stored separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scaling.errors import LocatedError
from scaling.models.weights import loading_info_mismatches, mismatch_report

from .network import MiniModelConfig, MiniModelForCausalLM

__all__ = [
    "MiniModelWeightsError",
    "load_minimodel_weights",
    "load_published_minimodel",
    "minimodel_config_from_state_dict",
]


class MiniModelWeightsError(LocatedError, ValueError):
    """A published-format MiniModel state dict does not match the model it is loaded into.

    ``str()`` names the source (file or ``<state dict>``) and lists missing keys, unexpected keys and
    shape mismatches, with a hint when the mismatch points at a config field.
    """


def _read_state_dict(source: Mapping[str, torch.Tensor] | str | Path) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(source, Mapping):
        return dict(source), "<state dict>"
    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise MiniModelWeightsError(f"{path}: no such weights file (expected a published model.safetensors)")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path)), str(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise MiniModelWeightsError(f"{path}: not a readable safetensors file ({err})") from err


def load_minimodel_weights(
    model: MiniModelForCausalLM, state_dict_or_path: Mapping[str, torch.Tensor] | str | Path
) -> MiniModelForCausalLM:
    """Load published-format MiniModel weights into ``model`` in place and return it.

    ``state_dict_or_path`` is a mapping of tensors, a ``.safetensors`` file, or a directory holding
    ``model.safetensors``. Keys must be exactly the model's (``emb.weight``,
    ``blocks.N.att.{q,k,v,g,o}_proj.weight``, ``blocks.N.ffn.{k,v}_proj.weight`` [+ ``.bias`` when
    ``mlp_bias``]); an ``lm_head.weight`` is accepted only if it equals ``emb.weight`` (a stored copy
    of the tied head). Tensors are cast to each parameter's dtype; a model on the meta device gets
    the tensors assigned. Raises :class:`MiniModelWeightsError` listing missing keys, unexpected
    keys and shape mismatches; nothing is loaded then.
    """
    state, source = _read_state_dict(state_dict_or_path)
    head = state.pop("lm_head.weight", None)
    if head is not None:
        emb = state.get("emb.weight")
        if emb is None or head.shape != emb.shape or not torch.equal(head, emb):
            raise MiniModelWeightsError(
                f"{source}: 'lm_head.weight' differs from 'emb.weight', but MiniModel ties its output head "
                "to the embedding"
            )
    params = {name: p for name, p in model.state_dict().items() if name != "lm_head.weight"}
    missing = sorted(set(params) - set(state), key=_natural_key)
    unexpected = sorted(set(state) - set(params), key=_natural_key)
    mismatched = [
        f"{name}: checkpoint {tuple(state[name].shape)} vs model {tuple(params[name].shape)}"
        for name in sorted(set(params) & set(state), key=_natural_key)
        if tuple(state[name].shape) != tuple(params[name].shape)
    ]
    report = mismatch_report(f"{source}: weights do not match MiniModelForCausalLM({_config_summary(model.config)})",
                             missing, unexpected, mismatched,
                             hint=_config_hint(state, model.config) if missing or unexpected or mismatched else None)
    if report:
        raise MiniModelWeightsError(report)
    on_meta = any(p.is_meta for p in model.parameters())
    cast = {name: state[name].to(params[name].dtype) for name in params}
    model.load_state_dict(cast, strict=False, assign=on_meta)
    model.tie_weights()
    return model


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in name.split(".")]


def _config_summary(config: MiniModelConfig) -> str:
    return (
        f"layers={config.num_hidden_layers}, hidden={config.hidden_size}, heads={config.num_attention_heads}x"
        f"{config.head_dim}, mlp={config.intermediate_size}, vocab={config.vocab_size}, mlp_bias={config.mlp_bias}"
    )


def _config_hint(state: Mapping[str, torch.Tensor], config: MiniModelConfig) -> str:
    try:
        inferred = minimodel_config_from_state_dict(state, head_dim=config.head_dim)
    except MiniModelWeightsError:
        return ""
    fields = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size", "mlp_bias")
    diffs = [f"{f}={getattr(inferred, f)!r}" for f in fields if getattr(inferred, f) != getattr(config, f)]
    return f"the checkpoint looks like MiniModelConfig({', '.join(diffs)})" if diffs else ""


def minimodel_config_from_state_dict(
    state_dict_or_path: Mapping[str, torch.Tensor] | str | Path, **overrides: Any
) -> MiniModelConfig:
    """Infer a :class:`MiniModelConfig` from published-format weights.

    Shapes give ``vocab_size``, ``hidden_size``, ``num_hidden_layers``, ``intermediate_size`` and
    ``mlp_bias``; the head split cannot be read from shapes, so ``num_attention_heads`` is
    ``q_proj`` width / ``head_dim`` with ``head_dim`` from ``overrides`` (default 64, as published).
    Any other ``MiniModelConfig`` argument may be given in ``overrides`` and wins over inference.
    """
    state, source = _read_state_dict(state_dict_or_path)
    try:
        vocab, hidden = state["emb.weight"].shape
        layer_ids = {int(k.split(".")[1]) for k in state if k.startswith("blocks.") and k.split(".")[1].isdigit()}
        inner = state["blocks.0.att.q_proj.weight"].shape[0]
        mlp = state["blocks.0.ffn.k_proj.weight"].shape[0]
    except (KeyError, ValueError) as err:
        raise MiniModelWeightsError(f"{source}: not a MiniModel state dict (no {err})") from err
    if layer_ids != set(range(len(layer_ids))):
        raise MiniModelWeightsError(f"{source}: block indices are not contiguous from 0: {sorted(layer_ids)}")
    head_dim = overrides.pop("head_dim", 64)
    if inner % head_dim:
        raise MiniModelWeightsError(f"{source}: q_proj width {inner} is not a multiple of head_dim {head_dim}")
    inferred: dict[str, Any] = {
        "vocab_size": int(vocab),
        "hidden_size": int(hidden),
        "num_hidden_layers": len(layer_ids),
        "num_attention_heads": inner // head_dim,
        "head_dim": head_dim,
        "intermediate_size": int(mlp),
        "mlp_bias": "blocks.0.ffn.k_proj.bias" in state,
    }
    inferred.update(overrides)
    return MiniModelConfig(**inferred)


def load_published_minimodel(
    path: str | Path, dtype: torch.dtype = torch.float32, **config_overrides: Any
) -> MiniModelForCausalLM:
    """Build a :class:`MiniModelForCausalLM` from a published ``model.safetensors`` (or its directory).

    The config is inferred with :func:`minimodel_config_from_state_dict` (``config_overrides`` e.g.
    ``bos_token_id=...`` are applied), the weights are loaded with :func:`load_minimodel_weights`,
    and the model is returned in ``dtype`` and eval mode.
    """
    state, _ = _read_state_dict(path)
    config = minimodel_config_from_state_dict(state, **config_overrides)
    with torch.device("meta"):
        model = MiniModelForCausalLM(config)
    load_minimodel_weights(model, state)
    return model.to(dtype).eval()


def _raise_on_loading_info(source: str, info: Mapping[str, Any], config: MiniModelConfig) -> None:
    """``from_pretrained`` fills missing weights with random values and only logs it: refuse instead."""
    report = mismatch_report(f"{source}: weights do not match MiniModelForCausalLM({_config_summary(config)})",
                             *loading_info_mismatches(info, sort_key=_natural_key))
    if report:
        raise MiniModelWeightsError(report)

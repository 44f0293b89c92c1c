"""Parameter counts measured on a model instance (never taken from its name)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts measured on a model instance (tied weights counted once)."""

    total: int
    non_embedding: int
    """Total minus the token embedding matrix (and the output projection when untied), the
    convention of Kaplan et al. (2020): it is what scales compute per token."""
    trainable: int

    def as_dict(self) -> dict[str, int]:
        return {"total": self.total, "non_embedding": self.non_embedding, "trainable": self.trainable}


def count_parameters(model: nn.Module) -> ParamCounts:
    """Count parameters of ``model``: unique tensors, so tied embeddings count once."""
    seen: set[int] = set()
    total = trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    embedding = 0
    in_emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if in_emb is not None:
        embedding += in_emb.weight.numel()
    if out_emb is not None and (in_emb is None or out_emb.weight is not in_emb.weight):
        embedding += out_emb.weight.numel()
    return ParamCounts(total=total, non_embedding=total - embedding, trainable=trainable)

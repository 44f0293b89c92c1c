"""Grown rungs: insert ``k`` new transformer blocks into a pretrained model, function-preserving.

``model.grow: {add: 8}`` on any rung whose blocks sit in one ``nn.ModuleList`` (transformers'
Llama family, e.g. SmolLM2 from the hub or its bundled GGUF, and our MiniModel port) builds the
model as usual, then inserts ``k`` copies of chosen blocks, each right after the block it copies,
before fine-tuning. This is LLaMA Pro's block expansion (Wu et al., 2024, "LLaMA Pro: Progressive
LLaMA with Block Expansion"): every copy's output projections (attention ``o_proj`` and MLP
``down_proj``; MiniModel's ``att.o_proj`` and ``ffn.v_proj``) start at zero, so each copy adds
exactly zero to the residual stream and the grown model computes the source model's function at
step 0 (bit for bit in fp32). The copies are not dead: the gradient of a zeroed projection is its
input times the upstream gradient, non-zero from the first step, and once it moves the rest of
the copy learns too. SOLAR's depth up-scaling (duplicating and concatenating whole layer ranges)
changes the function at step 0 and is not built here.

Which blocks are copied (``rule``):

- ``interleave`` (the default): the ``k`` copies spread evenly. The ``N`` source blocks are cut
  into ``k`` groups of (nearly) equal length and the last block of each group is copied, i.e.
  block ``ceil(j N / k) - 1`` for ``j = 1..k``: LLaMA Pro's rule (a copy after every
  ``N/k``-th block) when ``k`` divides ``N``, and always including the last block. For
  SmolLM2-135M (30 blocks): +8 copies blocks 3, 7, 11, 14, 18, 22, 26, 29; +15 every odd block;
  +30 every block.
- ``every_n`` with ``n``: a copy after every ``n``-th block (blocks ``n-1, 2n-1, ...``), so
  ``N // n`` copies (``add``, when given, must say the same).
- ``indices`` with ``indices: [...]``: a copy of each listed source block (0-based; a block listed
  twice gets two copies, stacked after it).

``train: new`` freezes every pretrained parameter (embeddings, head, final norm and the original
blocks) so that only the inserted blocks train, as LLaMA Pro does; ``train: all`` (the default)
fine-tunes everything. The freeze is set here, on the built model, so the optimiser (which takes
only parameters that require grad) and the measured ``params.trainable`` follow it.

After growing, every block's attention learns its new position (``layer_idx`` 0..N+k-1:
transformers' KV cache, and our decode engine's slot cache, are indexed by it) and
``config.num_hidden_layers`` (and ``config.layer_types``) describe the ``N + k`` blocks, so the
grown model is a plain deeper model of its family: generation with the cache, ``save_pretrained``
and llama.cpp's converter all see an ordinary Llama. ``results.json`` records it under
``model.grow`` (:func:`grow_record`): the rule, the source blocks, the inserted positions, which
original block each block of the grown model came from, and parameter counts measured on the
model. ``model.grow: null`` (every model's default) hashes as absent.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from scaling.typed_config import dataclass_from_config, optional_mapping, to_plain
from scaling.models.counting import count_parameters
from scaling.models.depth import find_blocks
from scaling.models.errors import ModelLoadError

RULES = ("interleave", "every_n", "indices")
TRAIN = ("all", "new")
#: The output projections of a block, per block layout (the first whose modules all exist wins):
#: transformers' Llama family, then our MiniModel port.
OUTPUT_PROJECTIONS = (("self_attn.o_proj", "mlp.down_proj"), ("att.o_proj", "ffn.v_proj"))
#: Config attribute that carries the record on a grown model (saved with ``save_pretrained``).
CONFIG_ATTR = "block_growth"


def _whole(value: Any, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


@dataclass(frozen=True)
class GrowSpec:
    """``model.grow``: which blocks of the pretrained stack a grown rung copies, and what trains."""

    add: int | None = None
    """Number of blocks inserted (required with ``rule: interleave``; with ``every_n`` and
    ``indices`` it follows from ``n`` / the list and, when given, must agree)."""
    rule: str = "interleave"
    """``interleave`` (copies spread evenly), ``every_n`` (a copy after every ``n``-th block) or
    ``indices`` (copies of the listed blocks); see :mod:`scaling.models.grow`."""
    n: int | None = None
    """With ``rule: every_n``: a copy after blocks ``n-1, 2n-1, ...``."""
    indices: tuple[int, ...] | None = None
    """With ``rule: indices``: the source blocks to copy (0-based; repeat one for two copies)."""
    train: str = "all"
    """Which parameters fine-tune: ``all``, or ``new`` (only the inserted blocks; every
    pretrained parameter frozen, as LLaMA Pro trains)."""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ModelLoadError(f"model.grow.rule={self.rule!r}: expected one of {', '.join(RULES)}")
        if self.train not in TRAIN:
            raise ModelLoadError(f"model.grow.train={self.train!r}: expected one of {', '.join(TRAIN)}")
        if self.add is not None and not _whole(self.add, 1):
            raise ModelLoadError(f"model.grow.add={self.add!r}: expected a whole number of blocks >= 1")
        if self.rule == "interleave" and self.add is None:
            raise ModelLoadError("model.grow.add is missing: rule=interleave needs the number of blocks to insert "
                                 "(e.g. model.grow={add:8})")
        if self.rule == "every_n":
            if not _whole(self.n, 1):
                raise ModelLoadError(f"model.grow.n={self.n!r}: rule=every_n needs a whole number n >= 1 "
                                     "(a copy after every n-th block)")
        elif self.n is not None:
            raise ModelLoadError("model.grow.n is only read with model.grow.rule=every_n")
        if self.rule == "indices":
            idx = list(self.indices or [])
            if not idx or any(not _whole(i, 0) for i in idx):
                raise ModelLoadError(f"model.grow.indices={self.indices!r}: rule=indices needs a list of source "
                                     "block indices >= 0")
            if self.add is not None and self.add != len(idx):
                raise ModelLoadError(f"model.grow.add={self.add} but model.grow.indices lists {len(idx)} blocks")
            object.__setattr__(self, "indices", tuple(sorted(idx)))
        elif self.indices is not None:
            raise ModelLoadError("model.grow.indices is only read with model.grow.rule=indices")

    @classmethod
    def from_config(cls, cfg: Any) -> "GrowSpec":
        data = to_plain(cfg)
        if data.get("indices") is not None:
            data["indices"] = tuple(data["indices"])
        return dataclass_from_config(cls, data, "model.grow", error=ModelLoadError)

    def sources(self, n_blocks: int) -> list[int]:
        """The source block of each copy, in increasing order (one entry per inserted block)."""
        if self.rule == "interleave":
            k = int(self.add)
            return [-(-(j * n_blocks) // k) - 1 for j in range(1, k + 1)]   # ceil(j N / k) - 1
        if self.rule == "every_n":
            picked = list(range(self.n - 1, n_blocks, self.n))
            if not picked:
                raise ModelLoadError(f"model.grow.n={self.n}: the model has only {n_blocks} blocks, so no block "
                                     "is an n-th one")
            if self.add is not None and self.add != len(picked):
                raise ModelLoadError(f"model.grow.add={self.add} but model.grow.n={self.n} on {n_blocks} blocks "
                                     f"inserts {len(picked)} (after blocks {picked})")
            return picked
        if self.indices[-1] >= n_blocks:
            raise ModelLoadError(f"model.grow.indices={list(self.indices)}: the model has blocks 0..{n_blocks - 1}")
        return list(self.indices)


def parse(grow: Any) -> GrowSpec | None:
    """``model.grow`` from a config value (None: no blocks inserted)."""
    return optional_mapping(grow, GrowSpec, "model.grow", "{add: 8}", error=ModelLoadError)


def projection_names(block: nn.Module) -> tuple[str, ...]:
    """The names of the modules whose outputs a block adds to the residual stream (attention and
    MLP output projections); :class:`ModelLoadError` for a block layout not in
    :data:`OUTPUT_PROJECTIONS`."""
    for names in OUTPUT_PROJECTIONS:
        if all(_has_submodule(block, n) for n in names):
            return names
    known = "; ".join(" + ".join(names) for names in OUTPUT_PROJECTIONS)
    raise ModelLoadError(f"model.grow: blocks of type {type(block).__name__} have none of the known output "
                         f"projections ({known}), so a copy cannot start as the identity")


def _has_submodule(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


@torch.no_grad()
def zero_copy(block: nn.Module) -> nn.Module:
    """A deep copy of ``block`` whose output projections (weights and biases) are zero: the copy
    adds nothing to the residual stream it is inserted into."""
    new = copy.deepcopy(block)
    for name in projection_names(new):
        for p in new.get_submodule(name).parameters(recurse=False):
            p.zero_()
    return new


def insert_blocks(model: nn.Module, sources: Sequence[int]) -> tuple[list[int], list[int]]:
    """Insert a zero-output copy of each block in ``sources`` right after it (in place).

    Renumbers every block's ``layer_idx`` to its new position and sets
    ``config.num_hidden_layers`` (and ``config.layer_types``). Returns ``(inserted, origin)``:
    the new blocks' positions in the grown stack, and for each block of the grown stack the
    index of the original block it is (or copies)."""
    parent, name, blocks = find_blocks(model, "model.grow")
    n = len(blocks)
    if any(not 0 <= s < n for s in sources):
        raise ModelLoadError(f"model.grow: source blocks {sorted(sources)} do not fit a model with {n} blocks")
    copies = Counter(int(s) for s in sources)
    layers: list[nn.Module] = []
    inserted: list[int] = []
    origin: list[int] = []
    for i, block in enumerate(blocks):
        layers.append(block)
        origin.append(i)
        for _ in range(copies[i]):
            inserted.append(len(layers))
            layers.append(zero_copy(block))
            origin.append(i)
    for idx, block in enumerate(layers):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = idx
    setattr(parent, name, nn.ModuleList(layers))
    config = getattr(model, "config", None)
    if config is not None:
        config.num_hidden_layers = len(layers)
        layer_types = getattr(config, "layer_types", None)
        if isinstance(layer_types, (list, tuple)) and len(layer_types) == n:
            config.layer_types = [layer_types[i] for i in origin]
    return inserted, origin


def freeze_all_but(model: nn.Module, positions: Sequence[int]) -> None:
    """Only the blocks at ``positions`` of the stack keep ``requires_grad``."""
    _, _, blocks = find_blocks(model, "model.grow")
    for p in model.parameters():
        p.requires_grad_(False)
    for i in positions:
        for p in blocks[i].parameters():
            p.requires_grad_(True)


def apply_grow(model: nn.Module, spec) -> nn.Module:
    """The hook :func:`scaling.models.build_model` calls: grow ``model`` as ``spec.grow`` says
    (nothing when it is unset), freeze it for ``train: new``, and leave the record on
    ``model.config`` (read it back with :func:`grow_record`)."""
    grow = parse(getattr(spec, "grow", None))
    if grow is None:
        return model
    _, _, blocks = find_blocks(model, "model.grow")
    n = len(blocks)
    sources = grow.sources(n)
    before = count_parameters(model)
    inserted, origin = insert_blocks(model, sources)
    if grow.train == "new":
        freeze_all_but(model, inserted)
    after = count_parameters(model)
    _, _, grown = find_blocks(model, "model.grow")
    new_params = sum(p.numel() for i in inserted for p in grown[i].parameters())
    record = {
        "rule": grow.rule, "add": len(inserted), "n_blocks": n, "n_blocks_grown": len(origin),
        **({"n": grow.n} if grow.rule == "every_n" else {}),
        "sources": sources, "inserted": inserted, "origin": origin,
        "zeroed": list(projection_names(grown[inserted[0]])),
        "train": grow.train,
        "params": {"source": before.total, "grown": after.total, "added": after.total - before.total,
                   "new_blocks": new_params, "trainable": after.trainable},
    }
    if getattr(model, "config", None) is not None:
        setattr(model.config, CONFIG_ATTR, record)
    return model


def grow_record(model: nn.Module) -> dict | None:
    """What :func:`apply_grow` did to ``model`` (None for a model that was not grown): ``rule``,
    ``add``, ``n_blocks`` (before), ``n_blocks_grown``, ``sources`` (the original block each copy
    copies), ``inserted`` (the copies' positions in the grown stack), ``origin`` (for every block of
    the grown stack, the original block it is or copies), ``zeroed`` (the projections that start at
    zero), ``train`` and ``params`` (``source``, ``grown`` and ``added`` totals, ``new_blocks``,
    ``trainable``, measured on the model)."""
    inner = getattr(model, "base_model", model)  # a peft wrapper keeps the config on the base
    config = getattr(model, "config", None) or getattr(inner, "config", None)
    record = getattr(config, CONFIG_ATTR, None) if config is not None else None
    return dict(record) if isinstance(record, dict) else None


__all__ = ["RULES", "TRAIN", "OUTPUT_PROJECTIONS", "GrowSpec", "parse", "projection_names", "zero_copy",
           "insert_blocks", "freeze_all_but", "apply_grow", "grow_record"]

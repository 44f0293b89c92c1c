"""Depth rungs: keep ``k`` of a pretrained model's ``N`` transformer blocks.

``model.depth: {keep: 8}`` on any rung whose blocks sit in one ``nn.ModuleList`` (every
llama-family model from the hub or a GGUF file, our MiniModel port, and the random-init
architectures of the tests) builds the model as usual, then drops ``N - k`` blocks before
fine-tuning. The rest of the model (embeddings, final norm, head) is untouched, so the rungs
``8 / 15 / 22 / 30`` of SmolLM2-135M have ~57M / 81M / 106M / 135M parameters (measured on
the built model, as for every rung).

Which blocks are kept: ``rule: block_influence`` (the default), ShortGPT's Block Influence
(Men et al., 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect"): for block ``i`` with input hidden states ``x`` and output ``y`` at every token,

    BI_i = 1 - mean over tokens of cos(x_t, y_t)

A block that barely turns the residual stream (BI near 0) is the one to drop; the ``k``
blocks with the largest BI are kept, in their original order. It is measured here on the
job's own *training* records (prompt + answer tokens, exactly as fine-tuning sees them):
``n_examples`` of them, stratified by schema (round-robin over schemas, each schema's
records in the order of the SHA-256 of their ids), so the choice never depends on the job
seed, on file order or on test data.

Why this rule and not Minitron's: Minitron (Muralidharan et al., 2024; Sreenivas et al.,
2024, "LLM Pruning and Distillation in Practice") rank blocks by the LM loss or downstream
accuracy after removing a block or a contiguous run of blocks, and found that dropping one
contiguous run of late blocks (keeping the last) beat dropping the individually
least-important ones. That search needs one evaluation per candidate cut and per rung: on
this CPU, tens of forward passes of the 135M over the calibration set for every rung.
Block Influence needs one forward pass for all rungs at once, and because every rung keeps
the top ``k`` of the same ranking, the rungs are *nested* (the 8 blocks of the smallest are
among the 15 of the next, ...): going up the ladder only adds blocks, which is what a
capacity axis should do. NVIDIA's own depth-pruning tool for Minitron (NeMo's
``gpt_prune.py --target_num_layers``) ranks blocks by the same cosine-similarity metric.
Its limits: ShortGPT measured it for removing about a quarter of the blocks, without
fine-tuning; our smallest rung removes 22 of 30 and is fine-tuned afterwards.
``rule: indices`` with ``indices: [...]`` keeps exactly the listed blocks instead (a pinned
selection: a contiguous cut as Minitron found best, or an earlier run's choice), with
nothing measured.

The measurement runs once per job (one forward pass of the full model over the calibration
examples, batch 1, no padding; see :func:`block_influence`), not cached: for SmolLM2-135M on
EdgeJSON v3's training split, 32 examples (21,397 tokens) took 77 s on one thread of the
shared 2-core CPU (101 s in a second run beside other jobs), small next to fine-tuning, and
rungs of one sweep that train on the same records measure the same scores. 16, 32, 48 and 64
examples kept the same blocks at 8, 15 and 22 of 30 (8: blocks 0, 1, 18, 19, 20, 23, 24, 29),
hence ``n_examples: 32``. ``results.json`` records it under
``model.depth`` (:func:`depth_record`): the rule, every block's score, the kept and dropped
indices, and which examples it was measured on.

After pruning, every kept block's attention learns its new position (``layer_idx`` 0..k-1:
transformers' KV cache is indexed by it) and ``config.num_hidden_layers`` (and
``config.layer_types`` where the architecture has one) describe the ``k`` blocks, so
generation with the cache, saving and reloading all see a plain ``k``-block model.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from scaling.typed_config import dataclass_from_config, optional_mapping, to_plain
from scaling.data.sft import build_example
from scaling.models.errors import ModelLoadError

RULES = ("block_influence", "indices")
#: Where model classes keep their blocks (first match wins).
BLOCK_PATHS = ("model.layers", "blocks", "transformer.h", "model.decoder.layers", "gpt_neox.layers")
#: Config attribute that carries the record on a pruned model (saved with ``save_pretrained``).
CONFIG_ATTR = "depth_pruning"


@dataclass(frozen=True)
class DepthSpec:
    """``model.depth``: which blocks of the pretrained stack a rung keeps."""

    keep: int
    """Number of blocks kept (``1 <= keep <= N``; ``keep == N`` builds the unpruned model)."""
    rule: str = "block_influence"
    """``block_influence`` (ShortGPT, measured on training records) or ``indices``."""
    n_examples: int = 32
    """Training records the Block Influence is measured on (stratified by schema)."""
    indices: tuple[int, ...] | None = None
    """The blocks to keep with ``rule: indices`` (0-based, any order; sorted when applied)."""

    def __post_init__(self) -> None:
        if isinstance(self.keep, bool) or not isinstance(self.keep, int) or self.keep < 1:
            raise ModelLoadError(f"model.depth.keep={self.keep!r}: expected a whole number of blocks >= 1")
        if self.rule not in RULES:
            raise ModelLoadError(f"model.depth.rule={self.rule!r}: expected one of {', '.join(RULES)}")
        if isinstance(self.n_examples, bool) or not isinstance(self.n_examples, int) or self.n_examples < 1:
            raise ModelLoadError(f"model.depth.n_examples={self.n_examples!r}: expected a whole number >= 1")
        if self.rule == "indices":
            idx = list(self.indices or [])
            if len(idx) != self.keep or len(set(idx)) != len(idx) or any(
                    isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in idx):
                raise ModelLoadError(f"model.depth.indices={self.indices!r}: rule=indices needs {self.keep} "
                                     "distinct block indices >= 0 (model.depth.keep of them)")
            object.__setattr__(self, "indices", tuple(sorted(idx)))
        elif self.indices is not None:
            raise ModelLoadError("model.depth.indices is only read with model.depth.rule=indices")

    @classmethod
    def from_config(cls, cfg: Any) -> "DepthSpec":
        data = to_plain(cfg)
        if "indices" in data and data["indices"] is not None:
            data["indices"] = tuple(data["indices"])
        return dataclass_from_config(cls, data, "model.depth", error=ModelLoadError)


def parse(depth: Any) -> DepthSpec | None:
    """``model.depth`` from a config value (None: keep every block)."""
    return optional_mapping(depth, DepthSpec, "model.depth", "{keep: 8}", error=ModelLoadError)


# --------------------------------------------------------------------------------------
# calibration: which training tokens Block Influence is measured on
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Token ids of the records Block Influence is measured on (prompt + answer + EOS)."""

    record_ids: tuple[str, ...]
    input_ids: tuple[tuple[int, ...], ...]

    @property
    def n_tokens(self) -> int:
        return sum(map(len, self.input_ids))

    @property
    def sha256(self) -> str:
        """Identity of the examples (their ids and tokens), recorded beside the scores."""
        h = hashlib.sha256()
        for rid, ids in zip(self.record_ids, self.input_ids):
            h.update(rid.encode() + b"\0" + ",".join(map(str, ids)).encode() + b"\n")
        return h.hexdigest()


def pick_records(records: Sequence, n: int) -> list:
    """``n`` records stratified by schema: round-robin over schemas (sorted), each schema's
    records ordered by the SHA-256 of their ids. Independent of file order and of any seed."""
    by_schema: dict[str, list] = defaultdict(list)
    for r in records:
        by_schema[r.schema_id].append(r)
    queues = [sorted(rs, key=lambda r: hashlib.sha256(str(r.id).encode()).hexdigest())
              for _, rs in sorted(by_schema.items())]
    out: list = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(out) < n:
                out.append(q[depth])
        depth += 1
    return out


def calibration_for(spec, records: Sequence, schemas: dict, tokenizer, fmt) -> Calibration | None:
    """The calibration examples a model spec needs (None when it keeps every block or pins
    them with ``rule: indices``). ``records`` must be the job's training records only."""
    depth = parse(getattr(spec, "depth", None))
    if depth is None or depth.rule != "block_influence":
        return None
    picked = pick_records(records, depth.n_examples)
    if not picked:
        raise ModelLoadError(f"model.depth.rule=block_influence for model {spec.key!r}: no training records "
                             "to measure it on")
    examples = [build_example(r, schemas[r.schema_id].schema if r.schema_id in schemas else None, tokenizer, fmt,
                              max_length=None) for r in picked]
    return Calibration(tuple(str(r.id) for r in picked), tuple(tuple(e.input_ids) for e in examples))


# --------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------


def find_blocks(model: nn.Module, option: str = "model.depth") -> tuple[nn.Module, str, nn.ModuleList]:
    """``(parent, attribute, blocks)``: the ModuleList of transformer blocks of ``model``
    (``option``: the setting an error names)."""
    for path in BLOCK_PATHS:
        parent: Any = model
        parts = path.split(".")
        for part in parts[:-1]:
            parent = getattr(parent, part, None)
            if parent is None:
                break
        blocks = getattr(parent, parts[-1], None) if parent is not None else None
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return parent, parts[-1], blocks
    raise ModelLoadError(f"{option}: cannot find the transformer blocks of {type(model).__name__} "
                         f"(looked for {', '.join(BLOCK_PATHS)})")


@torch.no_grad()
def block_influence(model: nn.Module, calibration: Calibration) -> tuple[list[float], int]:
    """Block Influence of every block, ``1 - mean_t cos(x_t, y_t)`` over all calibration
    tokens (``x``: a block's input hidden states, ``y``: its output), and the token count.

    One example at a time (no padding to mask), in eval mode without a KV cache; cosines
    are summed in float64 so the order of the sum cannot move the ranking.
    """
    _, _, blocks = find_blocks(model)
    sums = torch.zeros(len(blocks), dtype=torch.float64)
    counts = torch.zeros(len(blocks), dtype=torch.float64)

    def hook(i: int):
        def fn(module, args, kwargs, output):
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, (tuple, list)) else output
            cos = torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1, eps=1e-8)
            sums[i] += cos.double().sum().cpu()
            counts[i] += cos.numel()
        return fn

    handles = [b.register_forward_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for ids in calibration.input_ids:
            model(input_ids=torch.tensor([ids], device=device), use_cache=False, logits_to_keep=1)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not bool((counts > 0).all()):
        missing = [i for i in range(len(blocks)) if counts[i] == 0]
        raise ModelLoadError(f"model.depth: blocks {missing} never ran in the forward pass of "
                             f"{type(model).__name__}")
    return (1.0 - sums / counts).tolist(), int(counts[0].item())


def keep_blocks(model: nn.Module, kept: Sequence[int]) -> nn.Module:
    """Keep only the blocks ``kept`` (in increasing order), renumbering each kept block's
    ``layer_idx`` (the KV cache's index) to 0..k-1 and setting ``config.num_hidden_layers``
    (and ``config.layer_types``) to match. Modifies ``model`` in place and returns it."""
    parent, name, blocks = find_blocks(model)
    kept = sorted(int(i) for i in kept)
    n = len(blocks)
    if not kept or kept[0] < 0 or kept[-1] >= n or len(set(kept)) != len(kept):
        raise ModelLoadError(f"model.depth: block indices {kept} do not fit a model with {n} blocks (0..{n - 1})")
    new = nn.ModuleList([blocks[i] for i in kept])
    for new_idx, block in enumerate(new):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    setattr(parent, name, new)
    config = getattr(model, "config", None)
    if config is not None:
        config.num_hidden_layers = len(kept)
        layer_types = getattr(config, "layer_types", None)
        if isinstance(layer_types, (list, tuple)) and len(layer_types) == n:
            config.layer_types = [layer_types[i] for i in kept]
    return model


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """The ``k`` highest scores' indices, in block order (ties go to the earlier block)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def apply_depth(model: nn.Module, spec, calibration: Calibration | None = None) -> nn.Module:
    """The hook :func:`scaling.models.build_model` calls: prune ``model`` as ``spec.depth``
    says (nothing when it is unset) and leave the record on ``model.config`` (read it back
    with :func:`depth_record`)."""
    depth = parse(getattr(spec, "depth", None))
    if depth is None:
        return model
    _, _, blocks = find_blocks(model)
    n = len(blocks)
    if depth.keep > n:
        raise ModelLoadError(f"model.depth.keep={depth.keep}: model {spec.key!r} has only {n} blocks")
    record: dict[str, Any] = {"rule": depth.rule, "keep": depth.keep, "n_blocks": n}
    if depth.rule == "indices":
        if depth.indices[-1] >= n:
            raise ModelLoadError(f"model.depth.indices={list(depth.indices)}: model {spec.key!r} has blocks "
                                 f"0..{n - 1}")
        kept = list(depth.indices)
    elif depth.keep == n:
        kept = list(range(n))  # keep-all: nothing to choose, nothing measured
        record["rule"] = "none (every block kept)"
    else:
        if calibration is None:
            raise ModelLoadError(
                f"model.depth.rule=block_influence for model {spec.key!r} is measured on training records, and "
                "none were given: build it through `python -m scaling.train` (finetune=none evaluates without "
                "training), or pin the blocks with model.depth.rule=indices model.depth.indices=[...]")
        t0 = time.perf_counter()
        scores, n_tokens = block_influence(model, calibration)
        kept = top_k(scores, depth.keep)
        record.update({
            "scores": [round(s, 6) for s in scores],
            "measured_on": {"split": "train", "what": "prompt + answer tokens, stratified by schema",
                            "n_examples": len(calibration.input_ids), "n_tokens": n_tokens,
                            "record_ids": list(calibration.record_ids), "sha256": calibration.sha256},
            "seconds": round(time.perf_counter() - t0, 2),
        })
    record["kept"] = kept
    record["dropped"] = [i for i in range(n) if i not in set(kept)]
    if len(kept) < n:
        keep_blocks(model, kept)
    if getattr(model, "config", None) is not None:
        setattr(model.config, CONFIG_ATTR, record)
    return model


def depth_record(model: nn.Module) -> dict | None:
    """What :func:`apply_depth` did to ``model`` (None for an unpruned build): ``rule``,
    ``keep``, ``n_blocks``, ``kept``, ``dropped`` and, for Block Influence, ``scores`` (one
    per original block), ``measured_on`` and ``seconds``."""
    inner = getattr(model, "base_model", model)  # a peft wrapper keeps the config on the base
    config = getattr(model, "config", None) or getattr(inner, "config", None)
    record = getattr(config, CONFIG_ATTR, None) if config is not None else None
    return dict(record) if isinstance(record, dict) else None


__all__ = ["RULES", "DepthSpec", "Calibration", "parse", "pick_records", "calibration_for", "find_blocks",
           "block_influence", "keep_blocks", "top_k", "apply_depth", "depth_record"]

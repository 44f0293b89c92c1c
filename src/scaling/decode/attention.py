"""Decode-step attention over each row's own columns of the slot cache.

With one slot per row, a decode step's attention reads columns ``0 .. read`` of every slot,
``read`` set by the row furthest along; the 4D mask hides the rest. When rows of very
different lengths share a step (a 3,000-token complex row beside 20 simple rows of 400),
most of that work is masked out. On a CPU it is cheaper to attend row by row over exactly
the row's columns (views of the slot, no copy) once the masked share is large: measured
here with 26 such rows, 210 ms per step masked against 101 ms row by row, and the other way
round for rows of equal length (164 against 199 ms at 2,000 tokens each: the loop's fixed
cost is ~1.3 ms per row per step). The engine chooses per step
(``decode.row_attention_waste``); GPUs always take the masked path (a loop of small kernels
costs more there than the masked columns).

The function is registered with transformers' ``AttentionInterface`` under
:data:`SLOT_ATTENTION` and falls back to transformers' SDPA attention whenever no row
ranges are set (prefill, masked steps, models called outside the engine).
"""

from __future__ import annotations

import threading

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

SLOT_ATTENTION = "scaling_slot_sdpa"

_state = threading.local()


def set_row_ranges(ranges: list[tuple[int, int]] | None) -> None:
    """Row ``i`` of the next forward attends to cache columns ``ranges[i][0] .. ranges[i][1]``
    (end exclusive); ``None``: the masked path."""
    _state.ranges = ranges


def slot_sdpa(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask, scaling=None,
              dropout: float = 0.0, **kwargs):
    ranges = getattr(_state, "ranges", None)
    if ranges is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    # One query token: its heads grouped per key/value head act as the "positions" of the
    # query, so grouped-query attention needs no copy of keys and values.
    packed = query.reshape(rows, kv_heads, heads // kv_heads, dim)
    out = torch.empty((rows, kv_heads, heads // kv_heads, dim), dtype=query.dtype, device=query.device)
    for i, (start, end) in enumerate(ranges):
        out[i] = torch.nn.functional.scaled_dot_product_attention(
            packed[i:i + 1], key[i:i + 1, :, start:end], value[i:i + 1, :, start:end], scale=scaling)[0]
    return out.reshape(rows, 1, heads, dim), None


AttentionInterface.register(SLOT_ATTENTION, slot_sdpa)

"""A preallocated KV cache with one slot per decoded row.

Why not transformers' ``DynamicCache``: it grows by ``torch.cat`` on every step, copying every
layer's keys and values (O(T^2) copies over a long answer; measured at ~30% of a decode step
of SmolLM2-135M with 12 rows at 1,500 tokens of context), and dropping or adding rows means
rebuilding it. Here each row owns a slot ``[heads, width, head_dim]`` of a buffer allocated
once per layer; a step writes one column per row in place and attention reads a view.

Layout. Active rows occupy slots ``0 .. n-1`` (a finished row's slot is refilled by moving the
last row into it, one row's copy). Within its slot a row's prompt sits in columns
``start .. start+len`` (left-padded by its prefill chunk) and each generated token is written
at the row's own next column, so rows of different lengths never shift each other.
Positions are per row (``position_ids``), independent of columns.

The model sees this object through the public ``Cache.update`` hook and a 4D boolean attention
mask built by the engine (:meth:`SlotKVCache.decode_mask`), which transformers' attention
functions take as given; no model internals are touched.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


class _SlotLayer(CacheLayerMixin):
    """One layer's slot buffers; the owning :class:`SlotKVCache` says where to write and read."""

    is_sliding = False
    is_compileable = False

    def __init__(self, owner: "SlotKVCache") -> None:
        super().__init__()
        self.owner = owner

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        o = self.owner
        shape = (o.slots, key_states.shape[1], o.width, key_states.shape[-1])
        self.keys = torch.zeros(shape, dtype=key_states.dtype, device=key_states.device)
        self.values = torch.zeros(shape[:3] + (value_states.shape[-1],), dtype=value_states.dtype,
                                  device=value_states.device)
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        o = self.owner
        first, n = o.first_slot, key_states.shape[0]
        if o.write_cols is None:  # prefill: the chunk's columns 0..width of its new slots
            width = key_states.shape[2]
            self.keys[first:first + n, :, :width] = key_states
            self.values[first:first + n, :, :width] = value_states
            return self.keys[first:first + n, :, :width], self.values[first:first + n, :, :width]
        rows = o.slot_index[:n]
        self.keys[rows, :, o.write_cols] = key_states[:, :, 0]
        self.values[rows, :, o.write_cols] = value_states[:, :, 0]
        return self.keys[:n, :, :o.read_cols], self.values[:n, :, :o.read_cols]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_seq_length(self) -> int:
        """Columns already cached before this forward (transformers' meaning): in a decode
        step all read columns but the one being written; a prefill starts from empty slots."""
        o = self.owner
        return 0 if o.write_cols is None else o.read_cols - 1

    def get_max_length(self) -> int:
        return self.owner.width

    def move_slots(self, src: torch.Tensor, dst: torch.Tensor) -> None:
        if self.is_initialized:
            self.keys[dst] = self.keys[src]
            self.values[dst] = self.values[src]

    def resize(self, slots: int, width: int, keep: int, keep_cols: int) -> None:
        if not self.is_initialized:
            return
        keys = self.keys.new_zeros((slots, self.keys.shape[1], width, self.keys.shape[3]))
        values = self.values.new_zeros((slots, self.values.shape[1], width, self.values.shape[3]))
        keys[:keep, :, :keep_cols] = self.keys[:keep, :, :keep_cols]
        values[:keep, :, :keep_cols] = self.values[:keep, :, :keep_cols]
        self.keys, self.values = keys, values


class SlotKVCache(Cache):
    """Slot buffers for every layer of one model, ``slots`` rows x ``width`` columns each.

    The engine calls :meth:`set_prefill` or :meth:`set_decode` before each forward; the
    model's attention layers call :meth:`update` (through ``Cache.update``).
    """

    def __init__(self, num_layers: int, slots: int, width: int) -> None:
        self.slots, self.width = slots, width
        self.first_slot = 0
        self.write_cols: torch.Tensor | None = None
        self.read_cols = 0
        self.slot_index = torch.arange(slots)
        super().__init__(layers=[_SlotLayer(self) for _ in range(num_layers)])

    # -- what the next forward does ------------------------------------------------------------

    def set_prefill(self, first_slot: int) -> None:
        """The next forward prefills a chunk of prompts into slots ``first_slot ..``."""
        self.first_slot, self.write_cols = first_slot, None

    def set_decode(self, write_cols: torch.Tensor, read_cols: int) -> None:
        """The next forward is one token for each of the first ``len(write_cols)`` slots, written
        at those columns; attention reads columns ``0 .. read_cols``."""
        self.first_slot, self.write_cols, self.read_cols = 0, write_cols, read_cols
        if self.slot_index.device != write_cols.device:
            self.slot_index = self.slot_index.to(write_cols.device)

    # -- slot management -----------------------------------------------------------------------

    def move_slots(self, src: list[int], dst: list[int]) -> None:
        """Copy slots ``src`` into slots ``dst`` (refilling the holes finished rows left)."""
        if not src:
            return
        device = self.layers[0].keys.device if self.layers[0].is_initialized else None
        src_t, dst_t = torch.tensor(src, device=device), torch.tensor(dst, device=device)
        for layer in self.layers:
            layer.move_slots(src_t, dst_t)

    def resize(self, slots: int, width: int, keep: int, keep_cols: int) -> None:
        """Reallocate to ``slots`` x ``width``, keeping the first ``keep`` slots' first
        ``keep_cols`` columns (a copy; done when the rows' needs change, not per step)."""
        for layer in self.layers:
            layer.resize(slots, width, keep, keep_cols)
        self.slots, self.width = slots, width
        self.slot_index = torch.arange(slots, device=self.slot_index.device)

    @property
    def nbytes(self) -> int:
        return sum(layer.keys.nbytes + layer.values.nbytes for layer in self.layers if layer.is_initialized)

    @staticmethod
    def prefill_mask(lengths: list[int], width: int, device) -> torch.Tensor:
        """4D boolean mask ``[rows, 1, width, width]`` for left-padded prompts: causal, keys
        from each row's first real column on; padding queries see themselves only (their
        output is never used, and a fully masked row would give NaN)."""
        cols = torch.arange(width, device=device)
        start = width - torch.tensor(lengths, device=device)
        causal = cols[None, :, None] >= cols[None, None, :]
        valid = cols[None, None, :] >= start[:, None, None]
        mask = causal & valid
        mask |= torch.eye(width, dtype=torch.bool, device=device)[None]
        return mask[:, None]

    @staticmethod
    def decode_mask(start: torch.Tensor, end: torch.Tensor, read_cols: int) -> torch.Tensor:
        """4D boolean mask ``[rows, 1, 1, read_cols]``: row ``i`` attends to its columns
        ``start[i] .. end[i]`` (``end`` inclusive: the token written this step)."""
        cols = torch.arange(read_cols, device=start.device)
        return ((cols[None, :] >= start[:, None]) & (cols[None, :] <= end[:, None]))[:, None, None, :]

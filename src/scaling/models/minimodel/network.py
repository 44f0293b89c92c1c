"""MiniModel-200M-Base as a native ``transformers`` causal LM.

``xTimeCrystal/MiniModel-200M-Base`` (Apache-2.0) ships plain ``model.safetensors`` weights,
``tokenizer.json`` and ``special_tokens_map.json`` (no ``config.json``, no ``tokenizer_config.json``);
its model code lives on GitHub, not in ``transformers``. This module re-implements that network as
``MiniModelForCausalLM(PreTrainedModel, GenerationMixin)`` so that training, ``generate()`` (KV cache,
left padding) and evaluation treat it exactly like a Llama checkpoint.

Architecture (one block, ``norm`` = RMSNorm over the last dim with no learnable weight)::

    h = norm(emb(input_ids))                               # the embedding output is normalised too
    for block in blocks:
        x = norm(h)
        q, k, v = split_heads(q_proj(x)), split_heads(k_proj(x)), split_heads(v_proj(x))
        q, k = rope(norm(q)), rope(norm(k))                # QK-norm per head, no scale; partial RoPE
        a = sdpa(q, k, v, causal)                          # softmax scale 1/sqrt(head_dim)
        h = h + o_proj(merge_heads(a) * sigmoid(g_proj(x)))  # sigmoid output gate
        x = norm(h)
        h = h + ffn.v_proj(relu(ffn.k_proj(x)) ** 2)       # ReLU^2 MLP
    logits = norm(h) @ emb.weight.T                        # tied embeddings

Which upstream file this follows. The author's repository (github.com/xTimeCrystal/MiniModel) holds
two model files. MiniModel-200M-Base (24 layers, width 768, 12 heads of 64, vocab 32,768, published
September 2025) was trained with the FIRST one, ``fast_self_attn_model.py`` at the repository root
(commit 20d34ad, 2025-09-24; ``trainGPT-token.py`` beside it imports ``Transformer`` from it and says
"MiniModel-200M-Base used 24 layers"). This port follows that file. The later
``MiniModel 2.0 (MoE)/fast_self_attn_model.py`` (February 2026, after the checkpoint) rotates
ADJACENT pairs ``(2i, 2i+1)`` with YaRN-style tables; applied to the published weights it gives
different logits at every position after the first (on the tiny reference weights in
``../shared/reference/minimodel_v1/``, max |diff| about 14 on logits of scale ~15), so the weights
would load without a missing key and then see scrambled positions. ``tests/test_minimodel.py``
checks the port against logits computed by the first file and checks that the 2.0 layout does not
reproduce them.

Rotary embedding of the first file ("half-truncated RoPE", from modded-nanogpt): each head of width
``N`` is split in halves ``x1 = x[:N/2]``, ``x2 = x[N/2:]``, and dimension ``i`` rotates together
with dimension ``i + N/2``, for ``i < R/2`` only, where ``R = rotary_dim = N * partial_rotary_factor``
(32 of 64: 16 rotating pairs). The pair angles are ``position * (1/theta) ** linspace(0, 1, R/2)``
(16 frequencies ``(1/1024) ** (k/15)``; the slowest pair turns exactly ``1/theta`` rad per position);
the original pads them with ``N/2 - R/2`` zero frequencies, so dims ``R/2 .. N/2-1`` and
``N/2 + R/2 .. N-1`` pass through unchanged. Rotation (the author's sign convention, float32):
``y1 = x1 cos + x2 sin``, ``y2 = -x1 sin + x2 cos``. Positions count from 0 (a left-padded row gets
``cumsum(mask) - 1``, so its first real token is position 0, as in training).

RMSNorm epsilon defaults to ``torch.finfo(torch.float32).eps`` (about 1.19e-7): the author's code
uses ``torch.rms_norm(x, (x.size(-1),), eps=torch.finfo(torch.float32).eps)``.

Parameter names equal the published ones (``emb.weight``, ``blocks.N.att.{q,k,v,g,o}_proj.weight``,
``blocks.N.ffn.{k,v}_proj.weight``), so a published state dict loads directly; ``lm_head.weight``
is tied to ``emb.weight`` and never stored separately.

The checkpoint loaders (:mod:`.checkpoint`), the tokenizer (:mod:`.tokenizer`) and the hub
download (:mod:`.hub`) sit beside this module; importing it registers ``minimodel`` with the
``transformers`` Auto classes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x
    _init = nn.init


__all__ = [
    "MINIMODEL_EPS",
    "MiniModelConfig",
    "MiniModelForCausalLM",
    "apply_rotary",
    "register_minimodel",
    "rms_norm",
    "rotary_cos_sin",
]

MINIMODEL_EPS: float = torch.finfo(torch.float32).eps
"""RMSNorm epsilon of the published model: float32 machine epsilon, 2**-23."""

_TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])
# The output field that carries the KV cache was renamed `past_key_values` -> `cache` in transformers 5.
_OUTPUT_CACHE_FIELD = (
    "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
)


class MiniModelConfig(PretrainedConfig):
    r"""Configuration of a MiniModel decoder; the defaults are MiniModel-200M-Base.

    Args:
        vocab_size: number of token ids (32768 for the published tokenizer).
        hidden_size: residual-stream width ``C`` (768).
        intermediate_size: ReLU^2 MLP hidden width (3072).
        num_hidden_layers: number of blocks (24).
        num_attention_heads: number of attention heads ``H``; keys/values have as many (no GQA) (12).
        head_dim: per-head width ``N``; ``None`` means ``hidden_size // num_attention_heads`` (64).
        max_position_embeddings: training context length (2048). Longer inputs still run (the
            rotary angles are computed on the fly) but were never seen in training.
        rms_norm_eps: epsilon of every weightless RMSNorm (float32 machine epsilon).
        rope_theta: rotary base; the slowest rotating pair turns ``1/rope_theta`` rad per position (1024).
        partial_rotary_factor: fraction of each head's dims that rotate (0.5: 32 of 64, i.e. dims
            0-15 paired with 32-47; see the module docstring).
        mlp_bias: whether the MLP projections carry biases (the published keys have none).
        tie_word_embeddings: the output projection is ``emb.weight`` (must stay True for the
            published weights, which store no separate head).
        use_cache: default for ``use_cache`` in ``forward``/``generate``.
        bos_token_id, eos_token_id, pad_token_id: special-token ids; ``None`` by default because they
            are defined by the tokenizer file, which the loader of the tokenizer should copy here.
    """

    model_type = "minimodel"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        vocab_size: int = 32768,
        hidden_size: int = 768,
        intermediate_size: int = 3072,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 12,
        head_dim: int | None = None,
        max_position_embeddings: int = 2048,
        rms_norm_eps: float = MINIMODEL_EPS,
        rope_theta: float = 1024.0,
        partial_rotary_factor: float = 0.5,
        mlp_bias: bool = False,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        bos_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Assigned after the base __init__ so that its defaults (e.g. tie_word_embeddings=True in
        # transformers 4.x) can never override the values passed here.
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.head_dim = head_dim if head_dim is not None else _div_or_raise(hidden_size, num_attention_heads)
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.partial_rotary_factor = partial_rotary_factor
        self.mlp_bias = mlp_bias
        self.tie_word_embeddings = tie_word_embeddings
        self.use_cache = use_cache
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self._validate()

    @property
    def rotary_dim(self) -> int:
        """Number of leading dims of each head that rotate (``head_dim * partial_rotary_factor``)."""
        return int(round(self.head_dim * self.partial_rotary_factor))

    def _validate(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MiniModelConfig: field '{name}' must be a positive integer, got {value!r}")
        if not (isinstance(self.rms_norm_eps, (int, float)) and self.rms_norm_eps > 0):
            raise ValueError(f"MiniModelConfig: field 'rms_norm_eps' must be > 0, got {self.rms_norm_eps!r}")
        if not (isinstance(self.rope_theta, (int, float)) and self.rope_theta > 1):
            raise ValueError(f"MiniModelConfig: field 'rope_theta' must be > 1, got {self.rope_theta!r}")
        if not (0 <= self.partial_rotary_factor <= 1):
            raise ValueError(
                f"MiniModelConfig: field 'partial_rotary_factor' must lie in [0, 1], got {self.partial_rotary_factor!r}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"MiniModelConfig: field 'head_dim' must be even (rotary pairs dim i with i + head_dim/2), "
                f"got {self.head_dim}"
            )
        if self.rotary_dim % 2:
            raise ValueError(
                f"MiniModelConfig: field 'partial_rotary_factor': head_dim * factor = {self.rotary_dim} "
                "must be even (dims rotate in pairs)"
            )


def _div_or_raise(hidden_size: int, num_heads: int) -> int:
    if not isinstance(num_heads, int) or num_heads <= 0 or hidden_size % num_heads:
        raise ValueError(
            f"MiniModelConfig: field 'head_dim' is None, so hidden_size ({hidden_size}) must be a multiple of "
            f"num_attention_heads ({num_heads}); pass head_dim explicitly otherwise"
        )
    return hidden_size // num_heads


# ---------------------------------------------------------------------------------------------
# Functional pieces (public so they can be tested on their own)


def rms_norm(x: torch.Tensor, eps: float = MINIMODEL_EPS) -> torch.Tensor:
    """RMSNorm over the last dim with no weight: ``x / sqrt(mean(x**2) + eps)``, computed in float32."""
    return F.rms_norm(x.float(), (x.size(-1),), eps=eps).to(x.dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, rotary_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation cosines and sines for ``position_ids`` of shape ``[B, T]``.

    Returns two float32 tensors of shape ``[B, T, rotary_dim // 2]``: entry ``i`` is for the pair of
    dims ``(i, i + head_dim // 2)``, whose angle is ``position * (1/theta) ** (i / (rotary_dim // 2 - 1))``
    (``i = 0`` only, angle = position, when ``rotary_dim == 2``). The frequencies are computed as the
    original does, ``(1/theta) ** linspace(0, 1, R/2)`` in float32, times a float32 position, so the
    angles match its precomputed table bit for bit.
    """
    half = rotary_dim // 2
    exponents = torch.linspace(0.0, 1.0, steps=half, dtype=torch.float32, device=position_ids.device)
    inv_freq = (1.0 / float(theta)) ** exponents
    angles = position_ids.to(torch.float32)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate dim ``i`` of each head with dim ``i + N/2``, for ``i < cos.size(-1)`` (the first file's layout).

    ``x`` is ``[B, H, T, N]``; ``cos``/``sin`` are ``[B, T, R/2]`` from :func:`rotary_cos_sin`. With
    ``x1 = x[..., i]`` and ``x2 = x[..., i + N/2]``: ``y1 = x1 cos + x2 sin``, ``y2 = x2 cos - x1 sin``.
    Every other dim is returned unchanged (in the original they carry zero frequency: cos 1, sin 0).
    The rotation is done in float32 and cast back to ``x.dtype``.
    """
    pairs = cos.size(-1)
    if pairs == 0:
        return x
    head_dim = x.size(-1)
    if head_dim % 2 or pairs > head_dim // 2:
        raise ValueError(f"apply_rotary: {pairs} rotating pairs do not fit a head of width {head_dim}")
    half = head_dim // 2
    cos = cos[:, None]  # broadcast over heads
    sin = sin[:, None]
    x1, x2 = x[..., :pairs].float(), x[..., half : half + pairs].float()
    y1 = (x1 * cos + x2 * sin).to(x.dtype)
    y2 = (x2 * cos - x1 * sin).to(x.dtype)
    return torch.cat((y1, x[..., pairs:half], y2, x[..., half + pairs :]), dim=-1)


# ---------------------------------------------------------------------------------------------
# Modules


class MiniModelAttention(nn.Module):
    """Full multi-head causal attention with per-head weightless QK-norm, partial RoPE and a sigmoid gate."""

    def __init__(self, config: MiniModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.eps = config.rms_norm_eps
        inner = self.num_heads * self.head_dim
        self.q_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.g_proj = nn.Linear(config.hidden_size, inner, bias=False)
        self.o_proj = nn.Linear(inner, config.hidden_size, bias=False)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.g_proj):
            proj._minimodel_init = "uniform"
        self.o_proj._minimodel_init = "zeros"  # residual branch starts at zero, as in the original

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: Cache | None,
        cache_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` is the normalised residual ``[B, T, C]``; ``attention_mask`` is ``None`` (plain causal
        attention over all keys) or a boolean ``[B, 1, T, S]`` mask, True = may attend.

        With a cache, the new keys/values (``[B, H, T, N]``, keys already QK-normed and rotated at
        their own positions) go through ``cache.update(k, v, layer_idx, {"cache_position": ...})``,
        the ``transformers`` Cache API, and attention runs over the ``S = P + T`` keys it returns."""
        bsz, seq, _ = x.shape
        q = self.q_proj(x).view(bsz, seq, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(bsz, seq, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(bsz, seq, self.num_heads, self.head_dim).transpose(1, 2)
        q = apply_rotary(rms_norm(q, self.eps), cos, sin)
        k = apply_rotary(rms_norm(k, self.eps), cos, sin)
        if cache is not None:
            # No sin/cos in cache_kwargs: they would describe Llama's rotary layout, not this one,
            # and only sink caches (which re-rotate keys) read them.
            k, v = cache.update(k, v, self.layer_idx, {"cache_position": cache_position})
        # With no past and no padding the fast built-in causal path is exact; with a past, SDPA's
        # is_causal would align the triangle top-left, so the caller always passes a mask then
        # (or None for a single query, which may attend to every cached key).
        is_causal = attention_mask is None and seq > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, is_causal=is_causal)
        out = out.transpose(1, 2).reshape(bsz, seq, self.num_heads * self.head_dim)
        return self.o_proj(out * torch.sigmoid(self.g_proj(x)))


class MiniModelMLP(nn.Module):
    """``v_proj(relu(k_proj(x)) ** 2)``."""

    def __init__(self, config: MiniModelConfig) -> None:
        super().__init__()
        self.k_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.v_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.k_proj._minimodel_init = "uniform"
        self.v_proj._minimodel_init = "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.v_proj(torch.relu(self.k_proj(x)).square())


class MiniModelBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: ``h + att(norm(h))`` then ``h + ffn(norm(h))``."""

    def __init__(self, config: MiniModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.eps = config.rms_norm_eps
        self.att = MiniModelAttention(config, layer_idx)
        self.ffn = MiniModelMLP(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attended = self.att(rms_norm(hidden_states, self.eps), cos, sin, attention_mask, cache, cache_position)
        hidden_states = hidden_states + attended
        return hidden_states + self.ffn(rms_norm(hidden_states, self.eps))


class MiniModelPreTrainedModel(PreTrainedModel):
    """Shared ``transformers`` plumbing: config class, checkpointing and SDPA flags, initialisation."""

    config_class = MiniModelConfig
    base_model_prefix = ""  # the causal LM is flat: its own keys are the published ones
    supports_gradient_checkpointing = True
    _no_split_modules = ["MiniModelBlock"]
    _supports_sdpa = True
    _supports_cache_class = True  # transformers 4.x
    _supports_static_cache = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The author's initialisation: projections feeding the residual stream start at zero, the
        others are U(-0.5/sqrt(fan_in), 0.5/sqrt(fan_in)); the embedding is U(-1e-4, 1e-4)."""
        if isinstance(module, nn.Linear):
            kind = getattr(module, "_minimodel_init", None)
            if kind == "zeros":
                _init.zeros_(module.weight)
            elif kind == "uniform":
                bound = 0.5 / math.sqrt(module.in_features)
                _init.uniform_(module.weight, -bound, bound)
            if kind is not None and module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.uniform_(module.weight, -1e-4, 1e-4)


class MiniModelForCausalLM(MiniModelPreTrainedModel, GenerationMixin):
    """MiniModel decoder with its tied LM head; ``forward`` follows ``LlamaForCausalLM``.

    Module names reproduce the published checkpoint: ``emb``, ``blocks[i].att.{q,k,v,g,o}_proj``,
    ``blocks[i].ffn.{k,v}_proj``. Note for LoRA: ``k_proj``/``v_proj`` name both attention and MLP
    projections, so target modules by full suffix (``att.q_proj``, ``ffn.k_proj`` ...).
    """

    # transformers 5 maps tied parameter -> source; 4.x lists the tied parameters.
    _tied_weights_keys = {"lm_head.weight": "emb.weight"} if _TRANSFORMERS_MAJOR >= 5 else ["lm_head.weight"]

    def __init__(self, config: MiniModelConfig) -> None:
        super().__init__(config)
        self.emb = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(MiniModelBlock(config, i) for i in range(config.num_hidden_layers))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.emb = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """Run the decoder.

        Args:
            input_ids: ``[B, T]`` token ids (exactly one of ``input_ids`` / ``inputs_embeds``).
            attention_mask: ``[B, P + T]`` with 1 = real token, 0 = padding, where ``P`` is the number
                of cached positions; or a ready 4-D mask ``[B, 1, T, P + T]`` (bool: True = attend,
                float: additive). ``None`` = no padding.
            position_ids: ``[B, T]`` rotary positions. If ``None``: derived from a 2-D
                ``attention_mask`` as ``cumsum(mask) - 1`` (so a left-padded row gets the same
                positions as the unpadded prompt), else ``P + arange(T)``.
            past_key_values / cache: a ``transformers`` ``Cache`` (``cache`` is the transformers 5
                name; pass at most one). Updated in place.
            inputs_embeds: ``[B, T, C]`` raw embeddings (the embedding RMSNorm is still applied).
            labels: ``[B, T]`` targets, shifted inside the loss; -100 is ignored.
            use_cache: return a cache (a new ``DynamicCache`` when none is given); defaults to
                ``config.use_cache`` and is forced off under gradient checkpointing in training.
            cache_position: ``[T]`` cache slots of the new tokens, passed to ``cache.update`` in
                ``cache_kwargs``; default ``P + arange(T)``. Rotary positions come from
                ``position_ids``, never from here.
            logits_to_keep: ``0`` = logits for all positions; ``n > 0`` = only the last ``n``; a 1-D
                tensor = those sequence indices.
            output_hidden_states: also return the normalised embedding output and every block output.
            output_attentions: unsupported (SDPA never materialises the weights); True raises.
            kwargs: passed to the loss (e.g. ``num_items_in_batch``).

        Returns:
            ``CausalLMOutputWithPast`` with ``loss`` (if ``labels``), ``logits`` (float dtype of the
            model), the cache and optional ``hidden_states``.
        """
        if output_attentions:
            raise ValueError("MiniModelForCausalLM does not return attention weights (it uses SDPA)")
        if past_key_values is not None and cache is not None and past_key_values is not cache:
            raise ValueError("pass the KV cache as either `cache` or `past_key_values`, not both")
        cache = cache if cache is not None else past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of `input_ids` or `inputs_embeds`")
        if inputs_embeds is None:
            inputs_embeds = self.emb(input_ids)
        bsz, seq = inputs_embeds.shape[:2]

        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            use_cache, cache = False, None  # a recomputed block would write the cache twice
        if cache is not None and not isinstance(cache, Cache):
            raise TypeError(f"the KV cache must be a transformers Cache, got {type(cache).__name__}")
        if use_cache and cache is None:
            cache = _new_dynamic_cache(self.config)
        past = cache.get_seq_length() if cache is not None else 0

        if position_ids is None:
            position_ids = _default_position_ids(attention_mask, bsz, seq, past, inputs_embeds.device)
        if cache_position is None:
            # Slots in the cache (not rotary positions, which may differ per row under left padding).
            cache_position = torch.arange(past, past + seq, device=inputs_embeds.device)
        mask = _attention_mask(attention_mask, bsz, seq, past, inputs_embeds.device)
        cos, sin = rotary_cos_sin(position_ids.expand(bsz, -1), self.config.rotary_dim, self.config.rope_theta)

        eps = self.config.rms_norm_eps
        hidden = rms_norm(inputs_embeds, eps)
        all_hidden: list[torch.Tensor] | None = [hidden] if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden, cos, sin, attention_mask=mask, cache=cache, cache_position=cache_position)
            if all_hidden is not None:
                all_hidden.append(hidden)
        hidden = rms_norm(hidden, eps)

        if isinstance(logits_to_keep, int):
            kept = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        else:
            kept = hidden[:, logits_to_keep]
        logits = self.lm_head(kept)

        loss = None
        if labels is not None:
            if logits.size(1) != labels.size(1):
                raise ValueError("`labels` need logits for every position: call with logits_to_keep=0")
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            **{_OUTPUT_CACHE_FIELD: cache if use_cache else None},
        )
        return output if return_dict is not False else output.to_tuple()


def _new_dynamic_cache(config: MiniModelConfig) -> DynamicCache:
    try:
        return DynamicCache(config=config)
    except TypeError:  # transformers 4.x before the `config` argument
        return DynamicCache()


def _default_position_ids(
    attention_mask: torch.Tensor | None, bsz: int, seq: int, past: int, device: torch.device
) -> torch.Tensor:
    if attention_mask is not None and attention_mask.dim() == 2:
        positions = attention_mask.long().cumsum(-1) - 1
        return positions.clamp_min(0)[:, -seq:]
    return (torch.arange(seq, device=device) + past).unsqueeze(0).expand(bsz, -1)


def _attention_mask(
    attention_mask: torch.Tensor | None, bsz: int, seq: int, past: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean ``[B, 1, T, P+T]`` mask for SDPA, or ``None`` when plain causal attention is exact."""
    total = past + seq
    if attention_mask is not None and attention_mask.dim() == 4:
        if attention_mask.shape[-2:] != (seq, total):
            raise ValueError(
                f"4-D attention_mask must end in (query, key) = ({seq}, {total}), got {tuple(attention_mask.shape)}"
            )
        return attention_mask
    if attention_mask is not None:
        if attention_mask.dim() != 2 or attention_mask.shape != (bsz, total):
            raise ValueError(
                f"attention_mask must have shape [batch, cached + new tokens] = [{bsz}, {total}], "
                f"got {tuple(attention_mask.shape)}"
            )
        if bool(attention_mask.all()):
            attention_mask = None
    if attention_mask is None and (past == 0 or seq == 1):
        return None
    key_pos = torch.arange(total, device=device)
    query_pos = torch.arange(past, total, device=device)
    allowed = key_pos[None, :] <= query_pos[:, None]  # [T, S]
    mask = allowed[None, None].expand(bsz, 1, seq, total)
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, None, :]
        # A padding query would see no key at all (SDPA then yields NaN, which leaks through the
        # zero-weighted values of later layers); let every query see itself.
        mask = mask | (key_pos[None, :] == query_pos[:, None])[None, None]
    return mask


# ---------------------------------------------------------------------------------------------
# Auto-class registration


def register_minimodel() -> None:
    """Register ``minimodel`` with ``AutoConfig`` and ``AutoModelForCausalLM``; safe to call repeatedly."""
    AutoConfig.register(MiniModelConfig.model_type, MiniModelConfig, exist_ok=True)
    AutoModelForCausalLM.register(MiniModelConfig, MiniModelForCausalLM, exist_ok=True)


register_minimodel()

"""Tests of the MiniModel-200M port (tiny configs, CPU, seconds)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

from scaling.models.minimodel import (
    MiniModelConfig,
    MiniModelForCausalLM,
    MiniModelWeightsError,
    apply_rotary,
    load_minimodel_pretrained,
    load_minimodel_weights,
    load_published_minimodel,
    minimodel_config_from_state_dict,
    register_minimodel,
    rotary_cos_sin,
)
from scaling.models.minimodel.network import _attention_mask

TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    head_dim=16,
)


def tiny_model(seed: int = 0, scramble: bool = True, **overrides) -> MiniModelForCausalLM:
    """A tiny model; ``scramble`` replaces the author's init (zeroed output projections, which make
    every block an identity at step 0) by random weights, so attention and MLP actually matter."""
    torch.manual_seed(seed)
    model = MiniModelForCausalLM(MiniModelConfig(**{**TINY, **overrides}))
    if scramble:
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0.0, 0.3)
    return model.eval()


def published_keys(layers: int) -> set[str]:
    """The parameter names of the published checkpoint, spelled out independently of the model."""
    keys = {"emb.weight"}
    for i in range(layers):
        keys |= {f"blocks.{i}.att.{p}_proj.weight" for p in "qkvgo"}
        keys |= {f"blocks.{i}.ffn.{p}_proj.weight" for p in "kv"}
    return keys


def published_state(model: MiniModelForCausalLM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k != "lm_head.weight"}


# --- shapes, loss, training -------------------------------------------------------------------


def test_forward_shapes_and_outputs():
    model = tiny_model()
    ids = torch.randint(0, 128, (3, 9))
    out = model(ids, output_hidden_states=True)
    assert out.logits.shape == (3, 9, 128)
    assert len(out.hidden_states) == TINY["num_hidden_layers"] + 1
    assert all(h.shape == (3, 9, 64) for h in out.hidden_states)
    last = model(ids, logits_to_keep=1).logits
    assert last.shape == (3, 1, 128)
    torch.testing.assert_close(last[:, 0], out.logits[:, -1])
    assert torch.isfinite(out.logits).all()


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = tiny_model()
    ids = torch.randint(0, 128, (2, 8))
    labels = ids.clone()
    labels[0, :4] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 128), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_loss_decreases_on_a_repeated_sequence():
    model = tiny_model(scramble=False).train()  # the author's init must be trainable as is
    ids = torch.arange(16).repeat(2, 2)  # [2, 32]: 0..15 0..15
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing_enable.*:FutureWarning")  # renamed in transformers 5
def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.randint(0, 128, (2, 10))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(seed=3).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert all(block.gradient_checkpointing for block in model.blocks)
        model(ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)


# --- the published model's own numerics (reference from the upstream first model file) --------

def reference_dir() -> Path:
    """``../shared/reference/minimodel_v1`` beside the repository, or beside ``$EDGEJSON_DIR`` (a
    worktree elsewhere), or ``$SCALING_REFERENCE_DIR``. Read in place, never copied."""
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo.parent / "shared" / "reference"]
    if os.environ.get("EDGEJSON_DIR"):
        candidates.append(Path(os.environ["EDGEJSON_DIR"]).expanduser().parent / "reference")
    if os.environ.get("SCALING_REFERENCE_DIR"):
        candidates.insert(0, Path(os.environ["SCALING_REFERENCE_DIR"]).expanduser())
    for folder in candidates:
        if (folder / "minimodel_v1" / "tiny_logits.safetensors").is_file():
            return folder / "minimodel_v1"
    # Not a skip: this is the test that the port computes what the published model computes.
    pytest.fail(f"MiniModel reference logits not found in {[str(c) for c in candidates]} (see ../shared/README.md)")


@pytest.fixture(scope="module")
def v1_reference() -> dict:
    """What ``fast_self_attn_model.py`` (the file that trained MiniModel-200M-Base) computes on tiny
    random weights with the real key names and the real 64-wide heads (``../shared/reference``)."""
    folder = reference_dir()
    data = load_file(str(folder / "tiny_logits.safetensors"))
    config = json.loads((folder / "tiny_config.json").read_text())
    weights = {k.removeprefix("weights."): v for k, v in data.items() if k.startswith("weights.")}
    return {"weights": weights, "input_ids": data["input_ids"], "logits": data["logits"], "config": config}


def v1_model(ref: dict) -> MiniModelForCausalLM:
    cfg = ref["config"]
    config = MiniModelConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
        head_dim=cfg["head_dim"], rope_theta=float(cfg["rope_base"]),
    )
    assert config.rotary_dim // 2 == cfg["rotary_frequencies"]  # 16 rotating pairs, as published
    with torch.device("meta"):
        model = MiniModelForCausalLM(config)
    return load_minimodel_weights(model, ref["weights"]).eval()


def test_reference_state_dict_has_the_published_key_names_and_shapes(v1_reference):
    weights, cfg = v1_reference["weights"], v1_reference["config"]
    assert set(weights) == published_keys(cfg["num_hidden_layers"])
    width, mlp = cfg["hidden_size"], cfg["intermediate_size"]
    assert weights["emb.weight"].shape == (cfg["vocab_size"], width)
    for i in range(cfg["num_hidden_layers"]):
        for p in "qkvgo":
            assert weights[f"blocks.{i}.att.{p}_proj.weight"].shape == (width, width)
        assert weights[f"blocks.{i}.ffn.k_proj.weight"].shape == (mlp, width)
        assert weights[f"blocks.{i}.ffn.v_proj.weight"].shape == (width, mlp)


def test_port_reproduces_the_first_model_file_at_every_position(v1_reference):
    model = v1_model(v1_reference)
    with torch.no_grad():
        logits = model(v1_reference["input_ids"]).logits
    want = v1_reference["logits"]
    assert logits.dtype == torch.float32 and logits.shape == want.shape == (2, 48, 96)
    per_position = (logits - want).abs().amax(dim=(0, 2))
    assert per_position.max() < 1e-4, per_position


def adjacent_pair_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The later "MiniModel 2.0 (MoE)" layout: pairs (2i, 2i+1) over the first 2 * R/2 dims, same
    angles and sign convention; the layout this port used before and must no longer match."""
    rotary_dim = 2 * cos.size(-1)
    cos, sin = cos[:, None], sin[:, None]
    pairs = x[..., :rotary_dim].float().unflatten(-1, (rotary_dim // 2, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((x0 * cos + x1 * sin, x1 * cos - x0 * sin), dim=-1).flatten(-2)
    return torch.cat((rotated.to(x.dtype), x[..., rotary_dim:]), dim=-1)


def test_adjacent_pair_layout_does_not_reproduce_the_reference(v1_reference, monkeypatch):
    # If the reference could not tell the two layouts apart, the test above would prove nothing.
    import scaling.models.minimodel.network as mm  # where the attention looks apply_rotary up

    model = v1_model(v1_reference)
    monkeypatch.setattr(mm, "apply_rotary", adjacent_pair_rotary)
    with torch.no_grad():
        logits = model(v1_reference["input_ids"]).logits
    per_position = (logits - v1_reference["logits"]).abs().amax(dim=(0, 2))
    assert per_position[0] < 1e-4  # position 0 does not rotate: both layouts agree there
    assert (per_position[1:] > 0.1).all(), per_position  # and nowhere after it
    assert per_position.max() > 5.0


def first_file_logits(state: dict[str, torch.Tensor], ids: torch.Tensor, heads: int, eps: float) -> torch.Tensor:
    """An independent transcription of ``fast_self_attn_model.py``'s forward pass, for head widths
    other than the reference's: a cos/sin table over N/2 entries (N/4 frequencies, then zeros),
    halves ``x1, x2`` rotated as ``(x1 cos + x2 sin, -x1 sin + x2 cos)``, then plain tensor algebra."""
    bsz, seq = ids.shape
    head_dim = state["blocks.0.att.q_proj.weight"].shape[0] // heads
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})

    def norm(x):
        return torch.rms_norm(x, (x.size(-1),), eps=eps)

    freq = (1 / 1024) ** torch.linspace(0, 1, steps=head_dim // 4)
    freq = torch.cat([freq, freq.new_zeros(head_dim // 4)])
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), freq)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]

    def rotary(x):  # [B, T, H, N]
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)

    x = norm(F.embedding(ids, state["emb.weight"]))
    for i in range(layers):
        w = {k.split(f"blocks.{i}.", 1)[1]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        h = norm(x)
        q, k, v = (F.linear(h, w[f"att.{n}_proj.weight"]).view(bsz, seq, heads, head_dim) for n in "qkv")
        q, k = rotary(norm(q)), rotary(norm(k))
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        a = a.transpose(1, 2).reshape(bsz, seq, heads * head_dim)
        x = x + F.linear(a * torch.sigmoid(F.linear(h, w["att.g_proj.weight"])), w["att.o_proj.weight"])
        h = norm(x)
        x = x + F.linear(torch.relu(F.linear(h, w["ffn.k_proj.weight"])).square(), w["ffn.v_proj.weight"])
    return F.linear(norm(x), state["emb.weight"])


def test_forward_matches_a_transcription_of_the_first_file_for_other_head_widths():
    model = tiny_model(seed=4)  # head_dim 16: 4 rotating pairs (0,8) .. (3,11)
    ids = torch.randint(0, 128, (2, 11))
    with torch.no_grad():
        ours = model(ids).logits
        theirs = first_file_logits(published_state(model), ids, heads=4, eps=model.config.rms_norm_eps)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


# --- rotary, norms, tying ---------------------------------------------------------------------


def test_rotary_pairs_dim_i_with_i_plus_half_for_the_first_quarter_only():
    head_dim, rotary_dim, theta = 16, 8, 1024.0
    x = torch.randn(1, 2, 3, head_dim)  # [B, H, T, N]
    positions = torch.tensor([[0, 5, 37]])
    cos, sin = rotary_cos_sin(positions, rotary_dim, theta)
    assert cos.shape == (1, 3, rotary_dim // 2)
    y = apply_rotary(x, cos, sin)
    half, pairs = head_dim // 2, rotary_dim // 2
    # dims with zero frequency in the original pass through: 4..7 and 12..15
    assert torch.equal(y[..., pairs:half], x[..., pairs:half])
    assert torch.equal(y[..., half + pairs :], x[..., half + pairs :])
    # position 0 is the identity
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])
    # explicit reference: pair (i, i + N/2) turns by p * theta**(-i / (R/2 - 1)),
    # y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos
    for t, p in enumerate([0, 5, 37]):
        for i in range(pairs):
            angle = p * theta ** (-i / (pairs - 1))
            x1, x2 = x[..., t, i], x[..., t, i + half]
            torch.testing.assert_close(y[..., t, i], x1 * math.cos(angle) + x2 * math.sin(angle))
            torch.testing.assert_close(y[..., t, i + half], -x1 * math.sin(angle) + x2 * math.cos(angle))
    # slowest pair turns by exactly 1/theta per position
    torch.testing.assert_close(cos[0, 1, -1], torch.tensor(math.cos(5 / theta)))


def test_rotary_scores_depend_only_on_relative_position():
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> torch.Tensor:
        cq, sq = rotary_cos_sin(torch.tensor([[m]]), 8, 1024.0)
        ck, sk = rotary_cos_sin(torch.tensor([[n]]), 8, 1024.0)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    torch.testing.assert_close(score(7, 3), score(104, 100))
    assert not torch.allclose(score(7, 3), score(3, 7))


def test_embeddings_are_tied_and_stay_tied():
    model = tiny_model().train()
    assert model.lm_head.weight is model.emb.weight
    ids = torch.randint(0, 128, (1, 6))
    model(ids, labels=ids).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert model.lm_head.weight is model.emb.weight
    assert "lm_head.weight" not in dict(model.named_parameters())  # one shared parameter
    model.resize_token_embeddings(160)
    assert model.config.vocab_size == 160
    assert model.lm_head.weight is model.emb.weight
    assert model(ids).logits.shape[-1] == 160


def test_full_size_parameter_count_on_meta_device():
    config = MiniModelConfig()
    shape = (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.head_dim)
    assert shape == (24, 768, 12, 64)
    assert (config.vocab_size, config.intermediate_size, config.max_position_embeddings) == (32768, 3072, 2048)
    assert config.rotary_dim == 32 and config.rope_theta == 1024.0 and config.tie_word_embeddings
    with torch.device("meta"):
        model = MiniModelForCausalLM(config)
    assert all(p.is_meta for p in model.parameters())
    n = sum(p.numel() for p in model.parameters())
    per_layer = 5 * 768 * 768 + 2 * 768 * 3072  # q, k, v, g, o + MLP in/out
    assert n == 32768 * 768 + 24 * per_layer
    assert 205e6 < n < 213e6  # "~209M"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="num_attention_heads"):
        MiniModelConfig(hidden_size=64, num_attention_heads=5)
    with pytest.raises(ValueError, match="partial_rotary_factor"):
        MiniModelConfig(head_dim=16, partial_rotary_factor=0.3125)  # 5 rotating dims
    with pytest.raises(ValueError, match="num_hidden_layers"):
        MiniModelConfig(num_hidden_layers=0)


# --- persistence and published weights --------------------------------------------------------


def test_save_pretrained_round_trip_through_auto_classes(tmp_path):
    model = tiny_model(seed=1)
    ids = torch.randint(0, 128, (2, 7))
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "minimodel"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, MiniModelForCausalLM)
    assert loaded.lm_head.weight is loaded.emb.weight
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


def test_registration_is_idempotent():
    register_minimodel()
    register_minimodel()
    assert isinstance(AutoConfig.for_model("minimodel"), MiniModelConfig)


def test_published_state_dict_loads_directly(tmp_path):
    source = tiny_model(seed=1)
    state = published_state(source)
    assert set(state) == published_keys(TINY["num_hidden_layers"])
    path = tmp_path / "model.safetensors"
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, str(path))  # published dtype

    target = tiny_model(seed=2)
    assert load_minimodel_weights(target, path) is target
    assert target.lm_head.weight is target.emb.weight
    assert target.emb.weight.dtype == torch.float32
    ids = torch.randint(0, 128, (2, 7))
    reference = source.to(torch.bfloat16).float()  # the same bf16-rounded weights
    with torch.no_grad():
        torch.testing.assert_close(target(ids).logits, reference(ids).logits)

    inferred = minimodel_config_from_state_dict(path, head_dim=16)  # heads cannot be read from shapes
    for field, value in TINY.items():
        assert getattr(inferred, field) == value, field
    built = load_published_minimodel(tmp_path, head_dim=16)  # a folder holding model.safetensors
    assert not any(p.is_meta for p in built.parameters())
    with torch.no_grad():
        torch.testing.assert_close(built(ids).logits, target(ids).logits)


def test_missing_key_is_a_clear_error_and_loads_nothing(tmp_path):
    state = published_state(tiny_model(seed=1))
    del state["blocks.1.att.g_proj.weight"]
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    target = tiny_model(seed=2)
    before = target.emb.weight.clone()
    with pytest.raises(MiniModelWeightsError) as err:
        load_minimodel_weights(target, path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys (1): blocks.1.att.g_proj.weight" in message
    assert "unexpected" not in message
    assert torch.equal(target.emb.weight, before)


def test_unexpected_and_misshapen_keys_are_reported_with_a_hint():
    state = published_state(tiny_model(seed=1, mlp_bias=True))
    with pytest.raises(MiniModelWeightsError) as err:
        load_minimodel_weights(tiny_model(), state)
    message = str(err.value)
    assert "<state dict>" in message
    assert "unexpected keys (4): blocks.0.ffn.k_proj.bias" in message
    assert "mlp_bias=True" in message

    state = published_state(tiny_model(seed=1, intermediate_size=96))
    expected = r"blocks\.0\.ffn\.k_proj\.weight: checkpoint \(96, 64\) vs model \(128, 64\)"
    with pytest.raises(MiniModelWeightsError, match=expected):
        load_minimodel_weights(tiny_model(), state)


def test_untied_head_in_checkpoint_is_rejected():
    state = published_state(tiny_model(seed=1))
    state["lm_head.weight"] = torch.randn_like(state["emb.weight"])
    with pytest.raises(MiniModelWeightsError, match="lm_head.weight"):
        load_minimodel_weights(tiny_model(), state)
    state["lm_head.weight"] = state["emb.weight"].clone()  # a stored copy of the tied head is fine
    load_minimodel_weights(tiny_model(), state)


def test_pretrained_loader_reads_special_tokens_from_tokenizer_json(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    save_file(published_state(tiny_model(seed=1)), str(tmp_path / "model.safetensors"))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3}
    Tokenizer(WordLevel(vocab, unk_token="<unk>")).save(str(tmp_path / "tokenizer.json"))
    model = load_minimodel_pretrained(tmp_path, dtype=torch.float64, head_dim=16)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (1, 2, None)
    assert model.emb.weight.dtype == torch.float64 and not model.training

    model.save_pretrained(tmp_path / "hf")
    again = load_minimodel_pretrained(tmp_path / "hf")
    assert again.config.bos_token_id == 1
    assert torch.equal(again.emb.weight, model.emb.weight.float())


# --- generation -------------------------------------------------------------------------------


def greedy_without_cache(model: MiniModelForCausalLM, prompt: list[int], steps: int) -> list[int]:
    ids = torch.tensor([prompt])
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


def generate(model, input_ids, attention_mask, steps):
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=steps,
            min_new_tokens=steps,
            do_sample=False,
            use_cache=True,
            pad_token_id=0,
            eos_token_id=None,
        )
    return out[:, input_ids.shape[1] :].tolist()


def test_generate_with_cache_matches_full_recompute_and_left_padding():
    model = tiny_model(seed=5).double()  # float64: no argmax near-ties between code paths
    steps = 6
    long_prompt, short_prompt = [5, 17, 99, 3, 42], [64, 8, 120]
    expected = [greedy_without_cache(model, p, steps) for p in (long_prompt, short_prompt)]
    assert len(set(expected[0] + expected[1])) > 2  # a degenerate model would prove nothing

    for prompt, want in zip((long_prompt, short_prompt), expected):
        ids = torch.tensor([prompt])
        assert generate(model, ids, torch.ones_like(ids), steps) == [want]

    pad = len(long_prompt) - len(short_prompt)
    batch = torch.tensor([long_prompt, [0] * pad + short_prompt])
    mask = torch.tensor([[1] * len(long_prompt), [0] * pad + [1] * len(short_prompt)])
    assert generate(model, batch, mask, steps) == expected


def test_left_padded_forward_matches_unpadded_forward():
    model = tiny_model(seed=6)
    prompt = torch.tensor([[9, 8, 7, 6]])
    padded = torch.tensor([[0, 0, 9, 8, 7, 6]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        alone = model(prompt).logits
        both = model(padded, attention_mask=mask).logits
    assert torch.isfinite(both).all()
    torch.testing.assert_close(both[:, 2:], alone)


def test_cache_prefill_in_chunks_matches_single_pass():
    model = tiny_model(seed=7)
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :5], use_cache=True)
        second = model(ids[:, 5:7], cache=first.cache, use_cache=True)
        third = model(ids[:, 7:], past_key_values=second.cache, use_cache=True)  # the transformers 4 name
    assert third.cache.get_seq_length() == 9
    torch.testing.assert_close(torch.cat([first.logits, second.logits, third.logits], dim=1), full)


def test_padding_mask_never_leaves_a_query_without_keys():
    # A query row with no visible key makes some SDPA kernels return NaN, which then leaks into
    # later layers through zero-weighted values; pad queries must at least see themselves.
    padding = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    for past, seq in ((0, 5), (3, 2), (4, 1)):
        mask = _attention_mask(padding, 2, seq, past, torch.device("cpu"))
        assert mask.shape == (2, 1, seq, 5)
        assert mask.any(dim=-1).all()
        for q in range(seq):
            pos = past + q
            # real keys: causal and unpadded; a pad query additionally sees only itself
            want = [(k <= pos and bool(padding[0, k])) or k == pos for k in range(5)]
            assert mask[0, 0, q].tolist() == want
    assert _attention_mask(torch.ones(2, 5, dtype=torch.long), 2, 5, 0, torch.device("cpu")) is None


def test_continuous_batching_engine_runs_minimodel_like_generate():
    """scaling.evaluate's default engine edits the KV cache (drops finished rows, merges new
    prompts in): MiniModel's cache must take that and give what model.generate gives."""
    from scaling.decode import DecodeConfig, generate_batched
    from scaling.models import train_bpe_tokenizer

    texts = [f"order {i}: {i * 7} apples and {i % 5} pears, shipped to {'Oslo' if i % 2 else 'Lima'}" for i in range(40)]
    tok = train_bpe_tokenizer(texts, vocab_size=300)
    model = tiny_model(seed=3, vocab_size=len(tok)).double()
    prompts = [t[: 10 + 9 * i] for i, t in enumerate(texts[:7])]
    base = dict(progress=False, batch_size=3, stop_at_json_end=False, dtype="float64")
    # Make a token the model writes mid-answer the EOS, so rows stop at different steps and
    # rows leave and join the running batch.
    firsts: dict[int, set[int]] = {}
    for prompt in prompts:
        ids = torch.tensor([tok(prompt, add_special_tokens=False).input_ids])
        for pos, t in enumerate(generate(model, ids, torch.ones_like(ids), 48)[0]):
            firsts.setdefault(t, set()).add(pos)
    stop_token = max(firsts, key=lambda t: len(firsts[t]))
    tok.eos_token = tok.convert_ids_to_tokens(stop_token)
    cont, stats = generate_batched(model, tok, prompts, 48, DecodeConfig(**base))
    fixed, _ = generate_batched(model, tok, prompts, 48, DecodeConfig(**base, engine="hf"))
    assert [g.text for g in cont] == [g.text for g in fixed]
    assert [g.n_tokens for g in cont] == [g.n_tokens for g in fixed]
    assert len({g.n_tokens for g in cont}) >= 2, [g.n_tokens for g in cont]
    assert stats.batches > 3


# --- decoding past the cache, on the reference weights (64-wide heads) ------------------------


def cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]


def test_token_by_token_decoding_with_cache_gives_the_reference_logits(v1_reference):
    model = v1_model(v1_reference)
    ids, want = v1_reference["input_ids"], v1_reference["logits"]
    cache = None
    steps = []
    with torch.no_grad():
        for t in range(ids.shape[1]):
            kwargs = {"past_key_values": cache} if cache is not None else {}
            out = model(ids[:, t : t + 1], use_cache=True, **kwargs)
            cache = cache_of(out)
            steps.append(out.logits[:, -1])
    assert cache.get_seq_length() == ids.shape[1]
    got = torch.stack(steps, dim=1)
    assert (got - want).abs().max() < 1e-4, (got - want).abs().amax(dim=(0, 2))


def test_left_padded_batch_decoding_as_the_engine_calls_it_gives_the_reference_logits(v1_reference):
    """Prefill left-padded prompts of different lengths with explicit position ids, the padding mask
    and ``logits_to_keep=1``, then feed one token per row per step with the mask grown by one column,
    as ``scaling.evaluate``'s continuous engine does: every logit must equal the full forward's."""
    model = v1_model(v1_reference)
    ids, want = v1_reference["input_ids"], v1_reference["logits"]
    prompt_lens, total = [17, 6], 30  # row 1 is left-padded by 11 in the prefill
    pad = 0
    width = max(prompt_lens)
    input_ids = torch.full((2, width), pad, dtype=torch.long)
    mask = torch.zeros((2, width), dtype=torch.long)
    for row, n in enumerate(prompt_lens):
        input_ids[row, width - n :] = ids[row, :n]
        mask[row, width - n :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
        assert out.logits.shape == (2, 1, 96)
        for row, n in enumerate(prompt_lens):
            assert (out.logits[row, -1] - want[row, n - 1]).abs().max() < 1e-4
        cache = cache_of(out)
        positions = list(prompt_lens)
        for _ in range(total - max(prompt_lens)):
            tokens = torch.stack([ids[row, positions[row]] for row in range(2)])[:, None]
            mask = torch.cat([mask, mask.new_ones((2, 1))], dim=1)
            step_pos = torch.tensor(positions)[:, None]
            out = model(input_ids=tokens, attention_mask=mask, position_ids=step_pos, use_cache=True, past_key_values=cache)
            cache = cache_of(out)
            for row in range(2):
                diff = (out.logits[row, -1] - want[row, positions[row]]).abs().max()
                assert diff < 1e-4, (row, positions[row], float(diff))
                positions[row] += 1
    assert torch.isfinite(out.logits).all()


class RecordingCache(DynamicCache):
    """A real DynamicCache that also records how the model calls ``update`` (a custom Cache
    subclass, as a decode engine may pass one)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, tuple[int, ...], dict]] = []

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None, *args, **kwargs):
        self.calls.append((layer_idx, tuple(key_states.shape), dict(cache_kwargs or {})))
        return super().update(key_states, value_states, layer_idx, cache_kwargs, *args, **kwargs)


def test_attention_goes_through_the_cache_api_so_a_cache_subclass_works(v1_reference):
    model = v1_model(v1_reference)
    ids, want = v1_reference["input_ids"], v1_reference["logits"]
    try:
        cache = RecordingCache(config=model.config)
    except TypeError:  # transformers 4.x
        cache = RecordingCache()
    with torch.no_grad():
        first = model(ids[:, :40], use_cache=True, past_key_values=cache)
        second = model(ids[:, 40:], use_cache=True, past_key_values=cache)
    assert cache_of(first) is cache and cache_of(second) is cache
    got = torch.cat([first.logits, second.logits], dim=1)
    assert (got - want).abs().max() < 1e-4
    heads, head_dim = model.config.num_attention_heads, model.config.head_dim
    assert [c[0] for c in cache.calls] == [0, 1, 0, 1]
    assert cache.calls[0][1] == (2, heads, 40, head_dim) and cache.calls[2][1] == (2, heads, 8, head_dim)
    assert torch.equal(cache.calls[2][2]["cache_position"], torch.arange(40, 48))

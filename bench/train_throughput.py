"""Training throughput: our SFT data pipeline vs the published study's, same model, same data.

Both sides are plain PyTorch loops with the same model (two copies of one initialisation),
the same optimiser (AdamW as ``scaling.finetune.SFTModule.configure_optimizers`` builds it,
gradient clipping at 1.0 as ``conf/trainer/cpu.yaml``) and the same examples (a fixed,
stratified slice of the EdgeJSON v3 train split). Only the data pipeline differs:

- ``ours``: ``scaling.data.sft.SFTDataset`` (prompt + target + EOS, ``max_length`` 4096) ->
  ``LengthGroupedBatchSampler`` (with ``max_batch_tokens``) -> ``SFTCollator`` (pad to the
  longest in the batch); loss on the answer and its EOS only;
- ``published``: the HF ``Trainer`` recipe of the published study: prompt + target tokenised
  with ``padding="max_length", max_length=1024, truncation=True``; ``labels = input_ids``
  with -100 where the token is the pad token (pad = EOS, so EOS is never learned); loss
  on every other token, prompt included; batches in a seeded random order.

Steps of the two sides are interleaved (published, ours, ours, published, ...) so a change
in background load hits both alike. Throughput is counted in NON-PAD tokens per second
(tokens of real text a step trains on); padded positions are work, not data.

Model FLOPs per processed position (PaLM appendix B convention, training = 3 x forward):
``6 * N_nonemb + 6 * V * d + 12 * L * d * T`` with N_nonemb the non-embedding parameters,
V * d the (tied) output projection, L layers, d = heads x head_dim and T the sequence length
the attention actually spans (the padded width: the score matrix is computed for pads too).
"Executed" FLOPs count every position of the padded batch, "useful" only non-pad tokens
with T = their own example's length. Achieved GFLOP/s are compared with fp32 matmul
GFLOP/s measured in the same run (before and after training).

    nice -n 10 env HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python bench/train_throughput.py \\
        --model smol135 --source random --layers 4 --n 16 --batch-size 4 --seed 0 --out /tmp/bench/train.json
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import resource
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_harness import build_bench_model, start_bench, default_data_root, load_model_spec, stratified_slice  # noqa: E402
from matmul_rate import measure_matmul, emit_result  # noqa: E402

from scaling.data.prompts import PromptFormat, format_prompt, format_target  # noqa: E402
from scaling.data.sft import IGNORE_INDEX, LengthGroupedBatchSampler, SFTCollator, SFTDataset  # noqa: E402
from scaling.finetune import OptimConfig  # noqa: E402
from scaling.models import count_parameters  # noqa: E402
from scaling.jobs.config import FinetuneConfig  # noqa: E402
from scaling.paths import CONF_DIR  # noqa: E402

PUBLISHED_MAX_LENGTH = 1024


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW with the parameter groups of ``SFTModule.configure_optimizers``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "emb" not in name.lower() else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas, eps=optim.eps)


def flops_per_step(batch: dict, n_nonemb: int, vocab: int, d_model: int, d_attn: int, n_layers: int) -> tuple[float, float]:
    """(executed, useful) model FLOPs of one training step on ``batch`` (see module doc)."""
    ids = batch["input_ids"]
    b, width = ids.shape
    dense = 6.0 * n_nonemb + 6.0 * vocab * d_model
    executed = b * width * (dense + 12.0 * n_layers * d_attn * width)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    useful = sum(n * (dense + 12.0 * n_layers * d_attn * n) for n in lengths)
    return executed, useful


class Side:
    """One pipeline: a model copy, its optimiser, its batches, and what its steps measured."""

    def __init__(self, name: str, model, optim: OptimConfig, batches: list, make_batch, autocast: bool = False) -> None:
        self.name = name
        self.model = model
        self.opt = make_optimizer(model, optim)
        self.batches = batches
        self.make_batch = make_batch  # indices -> tensors; timed, it is part of the pipeline
        self.autocast = autocast
        self.steps: list[dict] = []

    def step(self, k: int, dims: tuple) -> None:
        idx = self.batches[k % len(self.batches)]
        load = [round(x, 2) for x in os.getloadavg()]
        c0, t0 = time.process_time(), time.perf_counter()
        batch = self.make_batch(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        executed, useful = flops_per_step(batch, *dims)
        self.steps.append({
            "step": k, "batch": len(idx), "width": int(batch["input_ids"].shape[1]),
            "positions": int(batch["input_ids"].numel()),
            "non_pad_tokens": int(batch["attention_mask"].sum()),
            "loss_tokens": int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()),
            "loss": round(float(loss), 4), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "executed_flops": executed, "useful_flops": useful, "loadavg": load,
        })

    def summary(self) -> dict:
        s = self.steps
        wall = sum(x["wall_s"] for x in s)
        cpu = sum(x["cpu_s"] for x in s)
        tok = sum(x["non_pad_tokens"] for x in s)
        pos = sum(x["positions"] for x in s)
        ex = sum(x["executed_flops"] for x in s)
        us = sum(x["useful_flops"] for x in s)
        return {
            "variant": self.name, "autocast_bf16": self.autocast, "steps": len(s),
            "examples": sum(x["batch"] for x in s), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "positions": pos, "non_pad_tokens": tok, "pad_fraction": round(1 - tok / pos, 4),
            "loss_tokens": sum(x["loss_tokens"] for x in s),
            "non_pad_tokens_per_s": round(tok / wall, 2), "non_pad_tokens_per_cpu_s": round(tok / cpu, 2),
            "positions_per_s": round(pos / wall, 2),
            "executed_gflops_per_s": round(ex / wall / 1e9, 2), "useful_gflops_per_s": round(us / wall / 1e9, 2),
            "executed_gflops_per_cpu_s": round(ex / cpu / 1e9, 2), "useful_gflops_per_cpu_s": round(us / cpu / 1e9, 2),
            "mean_loss": round(sum(x["loss"] for x in s) / len(s), 4), "per_step": s,
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smol135", help="conf/model/<name>.yaml")
    p.add_argument("--source", default=None, choices=["hub", "gguf", "random", "local"], help="override model.source")
    p.add_argument("--layers", type=int, default=None, help="keep only this many transformer layers")
    p.add_argument("--n", type=int, default=16, help="training examples (stratified by tier)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=None,
                   help="optimiser steps per side (default: one pass over the slice each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=default_data_root())
    data_prompt = yaml.safe_load((CONF_DIR / "data" / "edgejson_v3.yaml").read_text())["prompt"]
    p.add_argument("--template", default=data_prompt["template"], choices=["plain", "chat"])
    p.add_argument("--schema", default=data_prompt["schema"], choices=["none", "fields", "full"])
    # The recipe's keys: FinetuneConfig's defaults, with what conf/finetune/full.yaml changes.
    finetune = {**asdict(FinetuneConfig()), **yaml.safe_load((CONF_DIR / "finetune" / "full.yaml").read_text())}
    p.add_argument("--max-length", type=int, default=finetune["max_length"], help="ours (conf/finetune/full.yaml)")
    p.add_argument("--max-batch-tokens", type=int, default=finetune["max_batch_tokens"], help="ours")
    p.add_argument("--published-max-length", type=int, default=PUBLISHED_MAX_LENGTH)
    p.add_argument("--bf16-variant", action="store_true", help="also time ours under torch.autocast(bfloat16)")
    p.add_argument("--matmul-sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-available-mb", type=float, default=800,
                   help="exit when the machine's MemAvailable drops below this (0: off)")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def matmul_now(sizes) -> list[dict]:
    return [measure_matmul(n, torch.float32, repeats=5, budget_s=10.0) for n in sizes]


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, data = start_bench(args)
    records = stratified_slice(data.train, args.n, args.seed)
    spec = load_model_spec(args.model, args.source, args.layers)
    tokenizer, model = build_bench_model(spec, args.layers, seed=args.seed)
    model.train()
    counts = count_parameters(model)
    cfg = model.config
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    vocab = model.get_output_embeddings().weight.shape[0]
    dims = (counts.non_embedding, vocab, cfg.hidden_size, d_attn, cfg.num_hidden_layers)
    fmt = PromptFormat(template=args.template, schema=args.schema)

    # ours: tokenised once, up front (as scaling.train does)
    t0 = time.perf_counter()
    ours_set = SFTDataset(records, data.schemas, tokenizer, fmt, args.max_length)
    sampler = LengthGroupedBatchSampler(ours_set.lengths, args.batch_size, seed=args.seed,
                                        max_tokens=args.max_batch_tokens)
    collate = SFTCollator(tokenizer.pad_token_id)
    ours_prep = time.perf_counter() - t0
    ours_batches = list(sampler)

    # published: whole slice tokenised up front, padded to max_length (datasets.map in HF)
    t0 = time.perf_counter()
    texts = [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt, tokenizer)
             + format_target(r.expected_output, fmt) for r in records]
    enc = tokenizer(texts, padding="max_length", max_length=args.published_max_length, truncation=True,
                    return_tensors="pt")
    pub_labels = enc["input_ids"].clone()
    pub_labels[enc["input_ids"] == tokenizer.pad_token_id] = IGNORE_INDEX
    pub_prep = time.perf_counter() - t0
    order = list(range(len(records)))
    random.Random(args.seed).shuffle(order)  # Trainer's RandomSampler
    pub_batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    full_lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]

    def pub_batch(idx):
        sel = torch.tensor(idx)
        return {"input_ids": enc["input_ids"][sel], "attention_mask": enc["attention_mask"][sel],
                "labels": pub_labels[sel]}

    def ours_batch(idx):
        return collate([ours_set[i] for i in idx])

    optim = OptimConfig.from_config(yaml.safe_load((CONF_DIR / "finetune" / "full.yaml").read_text())["optim"])
    sides = [Side("published", copy.deepcopy(model), optim, pub_batches, pub_batch),
             Side("ours", copy.deepcopy(model) if args.bf16_variant else model, optim, ours_batches, ours_batch)]
    if args.bf16_variant:
        sides.append(Side("ours_bf16_autocast", model, optim, ours_batches, ours_batch, autocast=True))

    # Warm-up: one small forward/backward per copy (kernel choice, allocator), not timed.
    warm = collate([ours_set[min(range(len(ours_set)), key=lambda i: ours_set.lengths[i])]])
    for side in sides:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=side.autocast):
            side.model(**warm).loss.backward()
        side.model.zero_grad(set_to_none=True)

    mm_before = matmul_now(args.matmul_sizes)
    n_steps = {s.name: (args.steps or len(s.batches)) for s in sides}
    print(f"slice: {len(records)} train records; model {spec.key} ({spec.source}, {cfg.num_hidden_layers} layers, "
          f"{counts.total:,} params, {counts.non_embedding:,} non-embedding); steps {n_steps}; "
          f"matmul fp32 {[m['gflops_median'] for m in mm_before]} GFLOP/s", file=sys.stderr, flush=True)
    t_all = time.perf_counter()
    for k in range(max(n_steps.values())):
        for side in (sides if k % 2 == 0 else sides[::-1]):
            if k < n_steps[side.name]:
                side.step(k, dims)
                last = side.steps[-1]
                print(f"  {side.name:>18} step {k}: {last['batch']}x{last['width']:5d} "
                      f"{last['non_pad_tokens']:5d} tok  {last['wall_s']:7.1f}s  loss {last['loss']:.3f}  "
                      f"load {last['loadavg'][0]}", file=sys.stderr, flush=True)
    total_s = time.perf_counter() - t_all
    mm_after = matmul_now(args.matmul_sizes)

    summaries = {s.name: s.summary() for s in sides}
    mm_rate = max(statistics.median([m["gflops_median"] for m in mm_before + mm_after if m["n"] == n])
                  for n in args.matmul_sizes)
    mm_cpu_rate = max(statistics.median([m["gflops_per_cpu_s"] for m in mm_before + mm_after if m["n"] == n])
                      for n in args.matmul_sizes)
    for s in summaries.values():
        s["executed_over_matmul"] = round(s["executed_gflops_per_s"] / mm_rate, 3)
        s["useful_over_matmul"] = round(s["useful_gflops_per_s"] / mm_rate, 3)
        s["executed_over_matmul_cpu"] = round(s["executed_gflops_per_cpu_s"] / mm_cpu_rate, 3)
    pub, ours = summaries["published"], summaries["ours"]
    ratios = {
        "ours_over_published_non_pad_tokens_per_s": round(ours["non_pad_tokens_per_s"] / pub["non_pad_tokens_per_s"], 2),
        "ours_over_published_non_pad_tokens_per_cpu_s": round(
            ours["non_pad_tokens_per_cpu_s"] / pub["non_pad_tokens_per_cpu_s"], 2),
        "published_over_ours_wall_per_example": round(
            (pub["wall_s"] / pub["examples"]) / (ours["wall_s"] / ours["examples"]), 2),
    }
    if "ours_bf16_autocast" in summaries:
        bf = summaries["ours_bf16_autocast"]
        ratios["bf16_over_fp32_ours_non_pad_tokens_per_s"] = round(bf["non_pad_tokens_per_s"] / ours["non_pad_tokens_per_s"], 2)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "benchmark": "train_throughput",
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"key": spec.key, "source": spec.source, "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size,
                  "vocab": vocab, "params": counts.as_dict()},
        "flops_formula": "per position: 6*N_nonemb + 6*V*d + 12*L*d_attn*T (T = padded width for executed, "
                         "own length for useful)",
        "slice": {"n": len(records), "tiers": {t: sum(r.tier == t for r in records) for t in ("simple", "medium", "complex")},
                  "text_tokens_untruncated": sum(full_lengths),
                  "published_truncated_examples": sum(n > args.published_max_length for n in full_lengths),
                  "ours_truncated_examples": ours_set.n_truncated,
                  "ours_tokens": ours_set.n_tokens, "ours_target_tokens": ours_set.n_target_tokens},
        "prep_s": {"ours": round(ours_prep, 3), "published": round(pub_prep, 3)},
        "matmul_fp32": {"before": mm_before, "after": mm_after, "reference_gflops": mm_rate,
                        "reference_gflops_per_cpu_s": mm_cpu_rate},
        "total_wall_s": round(total_s, 1),
        "variants": summaries,
        "ratios": ratios,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

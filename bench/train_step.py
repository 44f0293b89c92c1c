"""Where a training step's time goes at 135M, and what each cheaper path buys: one process,
the same batches, variants interleaved step by step.

Each variant is a copy of one model (one initialisation) with its own AdamW, trained on the
same fixed batches of EdgeJSON v3 train (the reference recipe's prompt and batching:
``data.prompt.schema=fields``, batch 8, ``max_batch_tokens`` 8192, length-grouped with seed 0)
through :class:`scaling.finetune.SFTModule`'s own loss and optimiser, under bf16 autocast as
Lightning's ``bf16-mixed`` runs it (fp32 master weights, bf16 matmuls), gradients clipped at
1.0 as ``conf/trainer/cpu.yaml`` says. Steps are interleaved (variant A step 1, B step 1, ...,
A step 2, ...) so background load falls on every variant alike. Per step: forward + loss,
backward, optimiser (clip, step, zero) and collation times; the loss, so the curves can be
compared on the same batches. The bf16 matmul rate of this CPU is measured in the same
process before and after.

Variants (``--variants``, comma separated):

- ``before``: the path of every run until now: gradient checkpointing on, the model called on
  the whole batch (padding mask, logits and loss at every position), single-tensor AdamW;
- ``no_ckpt``: without gradient checkpointing;
- ``causal``: + no padding mask for right-padded rows (:func:`scaling.finetune.causal_inputs`:
  attention's ``is_causal`` path);
- ``targets``: + the output projection and loss at target positions only;
- ``fused``: + fused AdamW (the new default: ``finetune.gradient_checkpointing=false``,
  ``finetune.logits_at=targets``, ``finetune.optim.fused`` auto);
- ``lora``: the ``fused`` path training LoRA adapters instead of every weight (``finetune=lora``'s
  settings from ``conf/finetune/lora.yaml``: r 16, alpha 32, every linear layer, its learning
  rate 3e-4): no weight gradients for the frozen base, a tiny optimizer step;
- ``compiled``: + ``torch.compile`` of the model (dynamic shapes); its compile time is reported
  apart and its first step is left out of the rates.

Model FLOPs (PaLM convention, training = 3 x forward): per non-pad token ``6 * N_nonemb +
12 * L * d_attn * T / 2`` (causal attention over its own example of length T) and
``6 * V * d`` for the output projection at each token that carries loss: the work training on
these examples needs, whatever a variant executes. GFLOP/s = model FLOPs / wall time (for ``lora`` too: the work full fine-tuning needs, so its share of the matmul rate reads as "full-fine-tune equivalent").

    HF_HUB_OFFLINE=1 nice -n 5 .venv/bin/python bench/train_step.py --model smol135_gguf --steps 6 \\
        --out /tmp/bench/train_step.json
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_harness import build_bench_model, default_data_root, load_model_spec  # noqa: E402
from matmul_rate import emit_result, machine_info, measure_matmul, start_memory_guard  # noqa: E402

from scaling.cpu import cpu_record  # noqa: E402
from scaling.data import load_dataset  # noqa: E402
from scaling.data.prompts import PromptFormat  # noqa: E402
from scaling.data.sft import IGNORE_INDEX, LengthGroupedBatchSampler, SFTCollator, SFTDataset  # noqa: E402
from scaling.finetune import OptimConfig, SFTModule, make_adamw  # noqa: E402
from scaling.models import count_parameters  # noqa: E402
from scaling.models.lora import lora_wrap  # noqa: E402
from scaling.paths import CONF_DIR  # noqa: E402

VARIANTS = {
    "before": dict(checkpointing=True, path="model", logits_at="all", fused=False, compiled=False),
    "no_ckpt": dict(checkpointing=False, path="model", logits_at="all", fused=False, compiled=False),
    "causal": dict(checkpointing=False, path="module", logits_at="all", fused=False, compiled=False),
    "targets": dict(checkpointing=False, path="module", logits_at="targets", fused=False, compiled=False),
    "fused": dict(checkpointing=False, path="module", logits_at="targets", fused=True, compiled=False),
    "ckpt_fused": dict(checkpointing=True, path="module", logits_at="targets", fused=True, compiled=False),
    "compiled": dict(checkpointing=False, path="module", logits_at="targets", fused=True, compiled=True),
    "lora": dict(checkpointing=False, path="module", logits_at="targets", fused=True, compiled=False, lora=True),
}


def fixed_batches(tokenizer, n_batches: int, batch_size: int, max_tokens: int, seed: int, data_root: Path) -> list[dict]:
    """``n_batches`` of the batches an epoch of the reference recipe draws (seed ``seed``),
    spread evenly over the epoch's batches sorted by size, so short simple-tier batches and
    long complex-tier ones weigh as they do in a whole epoch."""
    data = load_dataset(data_root, "v3")
    fmt = PromptFormat(template="plain", schema="fields", compact_json=True)
    ds = SFTDataset(list(data.train), data.schemas, tokenizer, fmt, 4096)
    sampler = LengthGroupedBatchSampler(ds.lengths, batch_size, seed=seed, max_tokens=max_tokens)
    sampler.set_epoch(0)
    collate = SFTCollator(tokenizer.pad_token_id)
    epoch = sorted(sampler, key=lambda idx: (len(idx) * max(ds.lengths[i] for i in idx), idx))
    picks = sorted({round((k + 0.5) * len(epoch) / n_batches - 0.5) for k in range(n_batches)})
    order = random.Random(seed).sample(picks, len(picks))  # not sorted by size: load drifts
    out = []
    for p in order:
        t0 = time.perf_counter()
        batch = collate([ds[i] for i in epoch[p]])
        batch["_collate_s"] = time.perf_counter() - t0
        out.append(batch)
    return out


def model_flops(batch: dict, n_nonemb: int, vocab: int, d_model: int, d_attn: int, n_layers: int) -> float:
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    tokens = sum(lengths)
    targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    attention = sum(12.0 * n_layers * d_attn * n * n / 2 for n in lengths)
    return 6.0 * n_nonemb * tokens + attention + 6.0 * vocab * d_model * targets


class Variant:
    def __init__(self, name: str, base: torch.nn.Module, lr: float, **opts) -> None:
        self.name, self.opts = name, opts
        model = copy.deepcopy(base)
        if opts.get("lora"):
            finetune = yaml.safe_load((CONF_DIR / "finetune" / "lora.yaml").read_text())
            model = lora_wrap(model, finetune["lora"])
            lr = float(finetune["optim"]["lr"])
        self.module = SFTModule(model, OptimConfig(lr=lr, fused=opts["fused"]), opts["checkpointing"],
                                logits_at=opts["logits_at"])
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "emb" not in n.lower() else no_decay).append(p)
        self.opt = make_adamw([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                              self.module.optim)
        self.compile_s = None
        if opts["compiled"]:
            self.module.model = torch.compile(self.module.model, dynamic=True)
        self.steps: list[dict] = []

    def step(self, batch: dict) -> dict:
        tensors = {k: v for k, v in batch.items() if not k.startswith("_")}
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            # "model": the training step as it was (SFTModule called the model on the batch)
            loss = self.module.model(**tensors).loss if self.opts["path"] == "model" else self.module.loss(tensors)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.module.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        rec = {"forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2, "wall_s": t3 - t0,
               "cpu_s": time.process_time() - c0, "loss": float(loss)}
        self.steps.append(rec)
        return rec


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smol135_gguf", help="a conf/model name (default the real 135M weights)")
    ap.add_argument("--source", default=None, help="override model.source (random: same architecture, random init)")
    ap.add_argument("--layers", type=int, default=None, help="keep only the first N blocks (smaller, quicker runs)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variants", default="before,no_ckpt,causal,targets,fused")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--min-available-mb", type=float, default=1500)
    ap.add_argument("--profile", default=None,
                    help="after the timed steps, profile one step of this variant on the largest batch (torch.profiler)")
    ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start_memory_guard(args.min_available_mb)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: expected {', '.join(VARIANTS)}")
    matmul_before = [measure_matmul(n, torch.bfloat16) for n in (1024, 2048)]
    spec = load_model_spec(args.model, args.source, args.layers)
    tokenizer, base = build_bench_model(spec, args.layers, seed=args.seed)
    base.train()
    counts = count_parameters(base)
    cfg = base.config
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    batches = fixed_batches(tokenizer, args.steps, args.batch_size, args.max_batch_tokens, args.seed,
                            args.data_root or default_data_root())
    flops = [model_flops(b, counts.non_embedding, cfg.vocab_size, cfg.hidden_size, d_attn, cfg.num_hidden_layers)
             for b in batches]
    variants = [Variant(n, base, args.lr, **VARIANTS[n]) for n in names]
    del base
    for i, batch in enumerate(batches):
        for v in variants:
            rec = v.step(batch)
            print(f"step {i}: {v.name:10s} {rec['wall_s']:7.2f} s (fwd {rec['forward_s']:.2f}, bwd "
                  f"{rec['backward_s']:.2f}, opt {rec['optimizer_s']:.2f}) loss {rec['loss']:.4f}", flush=True)
    profile = None
    if args.profile:
        v = next((v for v in variants if v.name == args.profile), None)
        if v is None:
            raise SystemExit(f"--profile {args.profile}: not among the variants run")
        largest = max(batches, key=lambda b: b["input_ids"].numel())
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            v.step(largest)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
        print(table)
        profile = {"variant": v.name, "batch_shape": list(largest["input_ids"].shape),
                   "top_self_cpu": [{"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count}
                                    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:30]]}
    matmul_after = [measure_matmul(n, torch.bfloat16) for n in (1024, 2048)]
    matmul = max(m["gflops_median"] for m in matmul_before + matmul_after)
    matmul_cpu = max(m["gflops_per_cpu_s"] or 0 for m in matmul_before + matmul_after)
    tokens = [int(b["attention_mask"].sum()) for b in batches]
    base_losses = variants[0].steps
    summary = {}
    for v in variants:
        skip = 1 if v.opts["compiled"] else 0  # the first compiled step includes compiling
        steps = v.steps[skip:]
        wall = sum(s["wall_s"] for s in steps)
        cpu = sum(s["cpu_s"] for s in steps)
        n_tok = sum(tokens[skip:])
        f = sum(flops[skip:])
        summary[v.name] = {
            **v.opts,
            "tokens_per_s": round(n_tok / wall, 1),
            "tokens_per_cpu_s": round(n_tok / cpu, 1),
            "model_gflops_per_s": round(f / wall / 1e9, 1),
            "share_of_bf16_matmul": round(f / wall / 1e9 / matmul, 3),
            "share_of_bf16_matmul_per_cpu_s": round(f / cpu / 1e9 / matmul_cpu, 3) if matmul_cpu else None,
            "forward_s": round(sum(s["forward_s"] for s in steps), 2),
            "backward_s": round(sum(s["backward_s"] for s in steps), 2),
            "optimizer_s": round(sum(s["optimizer_s"] for s in steps), 2),
            "wall_s": round(wall, 2),
            "first_step_s": round(v.steps[0]["wall_s"], 2),
            "losses": [round(s["loss"], 5) for s in v.steps],
            "max_loss_diff_vs_first": round(max(abs(a["loss"] - b["loss"]) for a, b in zip(v.steps, base_losses)), 5),
        }
    first = variants[0].name
    for name, s in summary.items():
        s["speedup_vs_" + first] = round(s["tokens_per_s"] / summary[first]["tokens_per_s"], 2)
    result = {
        "bench": "train_step",
        "machine": machine_info(torch.get_num_threads()),
        "cpu": cpu_record(),
        "model": args.model, "source": spec.source, "params": counts.total, "non_embedding": counts.non_embedding,
        "steps": args.steps, "batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens,
        "tokens_per_step": tokens,
        "target_tokens_per_step": [int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches],
        "batch_shapes": [list(b["input_ids"].shape) for b in batches],
        "collate_s": round(sum(b["_collate_s"] for b in batches), 3),
        "bf16_matmul_gflops": matmul, "bf16_matmul_gflops_per_cpu_s": matmul_cpu,
        "matmul": matmul_before + matmul_after,
        "variants": summary,
        "profile": profile,
        "peak_rss_mb": round(__import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss / 1024, 1),
        "median_step_s": {v.name: round(statistics.median(s["wall_s"] for s in v.steps), 2) for v in variants},
    }
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

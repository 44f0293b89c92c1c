"""Cost of one greedy decode step against the number of rows decoded together.

Why it matters: the evaluation harness's speed comes from decoding many rows per forward
pass. On a GPU a step costs about the same for 1 or 64 rows; on a CPU it does not, and
``conf/decode/greedy.yaml``'s ``batch_size`` is chosen from this curve. For each batch size
the script prefills ``--context`` random tokens per row, then times ``--steps`` single-token
steps with the KV cache (median of ``--repeats``) and reports ms per step and per token,
and the per-token speed-up over one row, all in one process.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python bench/decode_step.py \\
        --model smol135 --batch-sizes 1 2 4 8 16 32 64 --out /tmp/bench/decode_step.json
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_rate import machine_info, emit_result  # noqa: E402

from scaling.models import ModelSpec, build_model, count_parameters  # noqa: E402
from scaling.paths import CONF_DIR  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smol135", help="conf/model/<name>.yaml (random weights of that architecture)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--context", type=int, default=400, help="prompt tokens per row before the timed steps")
    p.add_argument("--steps", type=int, default=10, help="timed decode steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


@torch.inference_mode()
def step_ms(model, batch: int, context: int, steps: int, seed: int = 0) -> float:
    """Milliseconds per decode step of ``batch`` rows, after a prefill of ``context`` tokens each."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, context), generator=gen)
    mask = torch.ones_like(ids)
    out = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
    cache = out["cache"] if "cache" in out else out["past_key_values"]
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    pos = torch.full((batch, 1), context, dtype=torch.long)
    t0 = time.perf_counter()
    for _ in range(steps):
        mask = torch.cat([mask, mask.new_ones((batch, 1))], dim=1)
        out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        pos = pos + 1
    return (time.perf_counter() - t0) / steps * 1000


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load((CONF_DIR / "model" / f"{args.model}.yaml").read_text())
    cfg.pop("_target_", None)
    cfg["source"] = "random"
    model = build_model(ModelSpec(**cfg), seed=0).eval()
    step_ms(model, 1, 16, 2)  # warm-up
    rows = []
    for b in args.batch_sizes:
        times = [step_ms(model, b, args.context, args.steps, seed=r) for r in range(args.repeats)]
        ms = statistics.median(times)
        rows.append({"batch": b, "ms_per_step": round(ms, 2), "ms_per_token": round(ms / b, 2), "runs_ms": [round(t, 2) for t in times]})
        print(f"batch {b:3d}: {ms:7.1f} ms/step  {ms / b:6.2f} ms/token", file=sys.stderr, flush=True)
    one = next((r["ms_per_token"] for r in rows if r["batch"] == 1), None)
    for r in rows:
        r["per_token_speedup_vs_1"] = round(one / r["ms_per_token"], 2) if one else None
    result = {"benchmark": "decode_step", "machine": machine_info(args.threads), "args": {k: str(v) for k, v in vars(args).items()},
              "params": dataclasses.asdict(count_parameters(model)), "rows": rows}
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

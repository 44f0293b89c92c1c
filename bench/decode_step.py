"""Cost of one greedy decode step against rows decoded together and context length.

Why it matters: the evaluation harness's speed comes from decoding many rows per forward
pass, and on a CPU a step's cost grows with rows and with the context each row attends to.
This is the *step-cost curve* an engine is judged against: the model's own forward with a
preallocated KV cache (:class:`scaling.decode.kv_cache.SlotKVCache`), no engine around it.
For each (rows, context) the script fills ``context`` cache columns per row with random keys
and values (a step's cost does not depend on them; a real prefill of 32 x 3,000 tokens would
take minutes per point), then times ``--steps`` single-token steps (median of ``--repeats``),
in each ``--dtypes``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decode_step.py --model smol135 \\
        --rows 1 4 8 16 32 --contexts 400 1500 3000 --dtypes float32 bfloat16 --out /tmp/bench/decode_step.json
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
from matmul_rate import emit_result, machine_info  # noqa: E402

from scaling.decode.kv_cache import SlotKVCache  # noqa: E402
from scaling.hardware import DTYPES  # noqa: E402
from scaling.models import ModelSpec, build_model, count_parameters  # noqa: E402
from scaling.paths import CONF_DIR  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smol135", help="conf/model/<name>.yaml (random weights of that architecture)")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    p.add_argument("--contexts", type=int, nargs="+", default=[400, 1500, 3000],
                   help="cached tokens per row before the timed steps")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    p.add_argument("--steps", type=int, default=8, help="timed decode steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


@torch.inference_mode()
def step_ms(model, rows: int, context: int, steps: int, seed: int = 0) -> float:
    """Milliseconds per decode step of ``rows`` rows at ``context`` cached tokens each, through
    the slot cache the continuous engine uses (so the curve and the engine share the kernels)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    cache = SlotKVCache(model.config.num_hidden_layers, rows, context + steps + 1)
    # A step's cost does not depend on what the cache holds: allocate it with a 1-token prefill
    # and fill the context with random keys and values instead of prefilling `context` tokens.
    cache.set_prefill(0)
    model(input_ids=torch.zeros((rows, 1), dtype=torch.long, device=device),
          attention_mask=SlotKVCache.prefill_mask([1] * rows, 1, device),
          position_ids=torch.zeros((rows, 1), dtype=torch.long, device=device), cache=cache, use_cache=True,
          logits_to_keep=1)
    for layer in cache.layers:
        layer.keys.normal_(generator=gen)
        layer.values.normal_(generator=gen)
    nxt = torch.randint(0, model.config.vocab_size, (rows, 1), generator=gen).to(device)
    start = torch.zeros(rows, dtype=torch.long, device=device)
    t0 = time.perf_counter()
    for s in range(steps):
        cols = torch.full((rows,), context + s, dtype=torch.long, device=device)
        cache.set_decode(cols, context + s + 1)
        out = model(input_ids=nxt, attention_mask=SlotKVCache.decode_mask(start, cols, context + s + 1),
                    position_ids=cols[:, None], cache=cache, use_cache=True)
        nxt = out.logits[:, -1].float().argmax(-1, keepdim=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1000


def random_model(name: str, dtype: torch.dtype):
    cfg = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())
    cfg.pop("_target_", None)
    cfg["source"] = "random"
    return build_model(ModelSpec(**cfg), seed=0).eval().to(dtype)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    points = []
    params = None
    for dtype_name in args.dtypes:
        model = random_model(args.model, DTYPES[dtype_name])
        params = dataclasses.asdict(count_parameters(model))
        step_ms(model, 1, 16, 2)  # warm-up
        for context in args.contexts:
            for rows in args.rows:
                times = [step_ms(model, rows, context, args.steps, seed=r) for r in range(args.repeats)]
                ms = statistics.median(times)
                points.append({"dtype": dtype_name, "rows": rows, "context": context, "ms_per_step": round(ms, 2),
                               "ms_per_token": round(ms / rows, 2), "runs_ms": [round(t, 2) for t in times]})
                print(f"{dtype_name:>8} ctx {context:5d} rows {rows:3d}: {ms:7.1f} ms/step  {ms / rows:6.2f} ms/token",
                      file=sys.stderr, flush=True)
    base = {(p["rows"], p["context"]): p["ms_per_step"] for p in points if p["dtype"] == "float32"}
    for p in points:
        fp32 = base.get((p["rows"], p["context"]))
        p["speedup_vs_fp32"] = round(fp32 / p["ms_per_step"], 2) if fp32 else None
    result = {"benchmark": "decode_step", "machine": machine_info(args.threads),
              "args": {k: str(v) for k, v in vars(args).items()}, "params": params, "points": points}
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

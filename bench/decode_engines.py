"""Decode engines side by side on the same weights, slice and grammar, in one process.

Variants (``--variants``):

- ``old_continuous``: the continuous engine as it was before ``scaling.decode`` (DynamicCache
  grown by concatenation, rows merged into it, bracket-counting stop, 64-token loop period,
  fp32), loaded from git at ``--old-rev`` so the baseline is exactly the code that ran;
- ``continuous_fp32`` / ``continuous_bf16``: the new engine (slot KV cache) in each precision;
- ``continuous_bf16_masked``: the same, always attending over the widest row's columns with a
  mask (``decode.row_attention_waste=null``): what row-by-row attention buys;
- ``continuous_bf16_oldstops``: the new engine in bf16 with the old stop settings (no prompt
  caps, 64-token loop period, 4 repeats): what the engine alone buys, without the stop rules;
- ``hf_bf16``: fixed batches through ``model.generate`` (the reference), bf16;
- ``llamacpp``: the same weights as a GGUF (``--gguf``) through llama.cpp, one stream, its
  JSON-schema grammar (``scaling.deploy``): the field's CPU anchor.

For every engine variant the measured ms per decode step is set against the step-cost curve
(``bench/decode_step.py``'s ``step_ms``: the model's own forward with the slot cache) at the
run's mean rows and mean context, timed in the same process: ``curve_ms / engine_ms`` is the
share of a step that is model compute.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decode_engines.py --weights outputs/trained/<hash>/model.safetensors \\
        --n-per-tier 8 --out /tmp/bench/decode_engines.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_step import step_ms  # noqa: E402
from eval_harness import build_bench_model, start_bench, default_data_root, load_model_spec  # noqa: E402
from matmul_rate import emit_result  # noqa: E402

from scaling.data.prompts import PromptFormat, format_prompt, format_target  # noqa: E402
from scaling.decode import DecodeConfig, answer_prompt_ratio, derive_max_new_tokens  # noqa: E402
from scaling.evaluate import evaluate_records  # noqa: E402
from scaling.paths import REPO_ROOT  # noqa: E402

VARIANTS = ("old_continuous", "continuous_fp32", "continuous_bf16", "continuous_bf16_masked", "continuous_bf16_oldstops",
            "hf_bf16", "llamacpp")
OLD_STOPS = dict(prompt_cap=False, loop_max_period=64, loop_min_repeats=4)
EXTRA = {"oldstops": OLD_STOPS, "masked": dict(row_attention_waste=None)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smol135_gguf", help="conf/model/<name>.yaml")
    p.add_argument("--weights", type=Path, default=None, help="fine-tuned model.safetensors (the train cache)")
    p.add_argument("--source", default=None, choices=["hub", "gguf", "random", "local"], help="override model.source")
    p.add_argument("--layers", type=int, default=None, help="keep only this many transformer layers (smoke tests)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override the run cap (smoke tests)")
    p.add_argument("--gguf", type=Path, nargs="+", default=[],
                   help="the same weights as GGUF files: one llamacpp variant each (llamacpp_<quant>)")
    p.add_argument("--data-root", type=Path, default=default_data_root())
    p.add_argument("--n-per-tier", type=int, default=8, help="test records per tier (first ids by schema round robin)")
    p.add_argument("--template", default="plain")
    p.add_argument("--schema", default="fields")
    p.add_argument("--mode", default="constrained", choices=["greedy", "constrained"])
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=True, help="decode.grammar_strict")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS[:-1]), choices=VARIANTS)
    p.add_argument("--old-rev", default="24ff6b7", help="git revision whose src/scaling/evaluate.py is the baseline")
    p.add_argument("--curve-steps", type=int, default=6, help="decode steps timed per step-cost point")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-available-mb", type=float, default=800)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def old_evaluate_module(rev: str) -> types.ModuleType:
    """``src/scaling/evaluate.py`` at ``rev``, as a module (it imports only parts that still exist)."""
    source = subprocess.check_output(["git", "show", f"{rev}:src/scaling/evaluate.py"], cwd=REPO_ROOT, text=True)
    module = types.ModuleType(f"evaluate_at_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"<{rev}:src/scaling/evaluate.py>", "exec"), module.__dict__)
    return module


def tier_slice(records, per_tier: int) -> list:
    """``per_tier`` test records of each tier, schemas round robin, ids sorted: the same slice
    every run, with the complex tier's long answers in it."""
    chosen = []
    for tier in ("simple", "medium", "complex"):
        by_schema: dict[str, list] = {}
        for r in sorted((r for r in records if r.tier == tier), key=lambda r: r.id):
            by_schema.setdefault(r.schema_id, []).append(r)
        taken = []
        while len(taken) < per_tier and any(by_schema.values()):
            for sid in sorted(by_schema):
                if by_schema[sid] and len(taken) < per_tier:
                    taken.append(by_schema[sid].pop(0))
        chosen += taken
    return chosen


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, data = start_bench(args)
    records = tier_slice(data.test, args.n_per_tier)
    spec = load_model_spec(args.model, args.source, args.layers)
    tokenizer, model = build_bench_model(spec, args.layers)
    if args.weights:
        from scaling.jobs.cache import load_weights

        model = load_weights(model, args.weights)
    model.eval().to(args.device)
    fmt = PromptFormat(template=args.template, schema=args.schema)
    # As scaling.train does: the run cap from every target, row caps from the training records.
    max_new = args.max_new_tokens or derive_max_new_tokens(tokenizer, [format_target(r.expected_output, fmt)
                                                for r in list(data.train) + list(data.test)], DecodeConfig())
    ratio = answer_prompt_ratio(tokenizer, [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt, tokenizer)
                                            for r in data.train], [format_target(r.expected_output, fmt) for r in data.train])
    print(f"slice: {len(records)} records {[r.tier for r in records]}; max_new_tokens={max_new}, cap ratio {ratio:.3f}",
          file=sys.stderr, flush=True)
    models = {"float32": model, "bfloat16": None}
    results: dict[str, dict] = {}
    outputs: dict[str, list[str]] = {}

    def curve(dtype: str, rows: float, context: float) -> float | None:
        if not rows or not context:
            return None
        if models[dtype] is None:
            import copy

            models[dtype] = copy.deepcopy(model).to(torch.bfloat16)
        return round(step_ms(models[dtype], max(1, round(rows)), max(16, round(context)), args.curve_steps), 2)

    variants = [v for v in args.variants if v != "llamacpp"]
    if "llamacpp" in args.variants:
        variants += [f"llamacpp_{path.stem.rsplit('-', 1)[-1]}" for path in args.gguf]
    gguf_of = {f"llamacpp_{path.stem.rsplit('-', 1)[-1]}": path for path in args.gguf}
    for variant in variants:
        load = [round(x, 2) for x in os.getloadavg()]
        c0 = time.process_time()
        if variant.startswith("llamacpp"):
            from scaling.deploy.llamacpp import LlamaCppConfig, evaluate_gguf

            cfg = DecodeConfig(mode=args.mode, grammar_strict=args.strict, progress=False)
            res = evaluate_gguf(gguf_of[variant], records, data.schemas, fmt, tokenizer, cfg, max_new,
                                config=LlamaCppConfig(threads=args.threads, progress=False), cap_ratio=ratio)
            rows, stats = res.rows, res.stats
        elif variant == "old_continuous":
            old = old_evaluate_module(args.old_rev)
            cfg = old.DecodeConfig(mode=args.mode, grammar_strict=args.strict, progress=False)
            res = old.evaluate_records(model, tokenizer, records, data.schemas, fmt, cfg, max_new_tokens=max_new)
            rows, stats = res.rows, res.stats
        else:
            engine, dtype = variant.split("_")[:2]
            dtype = {"fp32": "float32", "bf16": "bfloat16"}[dtype]
            extra = EXTRA.get(variant.split("_")[-1], {})
            cfg = DecodeConfig(mode=args.mode, grammar_strict=args.strict, progress=False, engine=engine, dtype=dtype,
                               **extra)
            res = evaluate_records(model, tokenizer, records, data.schemas, fmt, cfg, max_new_tokens=max_new,
                                   cap_ratio=ratio)
            rows, stats = res.rows, res.stats
        cpu_s = time.process_time() - c0
        n = len(rows)
        summary = {
            "wall_s": stats["wall_s"], "cpu_s": round(cpu_s, 1), "generated_tokens": stats["generated_tokens"],
            "tokens_per_s": stats["tokens_per_s"], "steps": stats.get("steps"),
            "mean_batch_rows": stats.get("mean_batch_rows"), "mean_context": stats.get("mean_context"),
            "ms_per_step": stats.get("ms_per_step") or (round(1000 * (stats["wall_s"] - stats.get("prefill_s", 0))
                                                              / stats["steps"], 2) if stats.get("steps") else None),
            "prefill_s": stats.get("prefill_s"), "grammar_s": stats.get("grammar_s"),
            "looped": sum(bool(r.get("looped")) for r in rows), "capped": sum(bool(r.get("capped")) for r in rows),
            "max_tokens": max(r["n_tokens"] for r in rows),
            "json_exact": round(sum(r["json_exact"] for r in rows) / n, 4),
            "field_f1": round(sum(r["field_f1"] for r in rows) / n, 4),
            "load_before": load, "stats": stats,
        }
        if variant.startswith("continuous"):
            dtype = {"fp32": "float32", "bf16": "bfloat16"}[variant.split("_")[1]]
            summary["curve_ms_per_step"] = curve(dtype, summary["mean_batch_rows"], summary["mean_context"])
            if summary["curve_ms_per_step"] and summary["ms_per_step"]:
                summary["curve_over_engine"] = round(summary["curve_ms_per_step"] / summary["ms_per_step"], 3)
        outputs[variant] = [r["output"] for r in rows]
        results[variant] = summary
        print(f"{variant:>26}: wall {summary['wall_s']:8.1f}s  {summary['generated_tokens']:6d} tok  "
              f"{summary['tokens_per_s']:6.1f} tok/s  steps {summary['steps']}  rows {summary['mean_batch_rows']}  "
              f"ms/step {summary['ms_per_step']}  curve {summary.get('curve_ms_per_step')}  "
              f"JSONExact {summary['json_exact']:.3f}  load {load}", file=sys.stderr, flush=True)
    first = variants[0]
    for name, summary in results.items():
        summary["identical_to_" + first] = round(
            sum(a == b for a, b in zip(outputs[name], outputs[first])) / len(records), 4)
        summary["speedup_vs_" + first] = round(results[first]["wall_s"] / summary["wall_s"], 2)
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {"benchmark": "decode_engines", "machine": info,
              "args": {k: json.loads(json.dumps(v, default=str)) for k, v in vars(args).items()},
              "slice": [{"id": r.id, "tier": r.tier} for r in records], "max_new_tokens": max_new,
              "cap_ratio": ratio, "variants": results,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

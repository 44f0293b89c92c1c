"""Evaluation harness benchmark: ours vs the published study's, same model, same examples.

Variants, run in one process on one stratified slice of the EdgeJSON v3 test split:

- ``published``: the published study's harness: one example at a time,
  ``model.generate(max_new_tokens=512)`` greedy, stops only at EOS (or the cap);
- ``ours``: ``scaling.evaluate.generate_batched`` as ``scaling.train`` calls it: length-grouped
  left-padded batches, greedy with the KV cache, stop at EOS or once the first JSON value
  has closed, ``max_new_tokens`` derived from the data (train + test targets);
- ``ours_no_json_stop``: the same batches, stopping only at EOS (isolates what the JSON stop
  buys versus what batching buys);
- ``ours_bs1`` (optional): JSON stop, but batch size 1 (the other half of that split);
- ``ours_fixed_batches``: ``engine=hf``, fixed length-grouped batches through
  ``model.generate`` (each batch runs until its longest row stops) instead of continuous
  batching: what the continuous engine buys.

``ours_repeat`` runs ``ours`` again (e.g. after the long baseline), so a change in background
load shows as a spread instead of silently biasing the ratio. Results are written after
every variant, so a run stopped early keeps what it measured. Each variant's
wall time *and* process CPU time are reported: on a shared machine the CPU-time ratio is the
steadier of the two. All outputs are scored with ``scaling.score.score_predictions``.

    nice -n 10 env HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python bench/eval_harness.py \\
        --n 6 --seed 0 --tiers simple medium --out /tmp/bench/eval_harness.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_rate import machine_info, start_memory_guard  # noqa: E402

from scaling.data import load_dataset  # noqa: E402
from scaling.data.prompts import PromptFormat, format_prompt, format_target  # noqa: E402
from scaling.decode import DecodeConfig, derive_max_new_tokens, generate_batched, json_complete  # noqa: E402
from scaling.models import ModelSpec, build_model, build_tokenizer  # noqa: E402
from scaling.paths import CONF_DIR, REPO_ROOT  # noqa: E402
from scaling.score import score_predictions  # noqa: E402

PUBLISHED_MAX_NEW_TOKENS = 512
TIER_SHARES = {"simple": 0.5, "medium": 0.35, "complex": 0.15}
VARIANTS = ("published", "published_no_eos", "ours", "ours_fixed_batches", "ours_no_json_stop", "ours_bs1", "ours_repeat")


def default_data_root() -> Path:
    return Path(os.environ.get("EDGEJSON_DIR", REPO_ROOT.parent / "shared" / "edgejson"))


def tier_counts(n: int, tiers=tuple(TIER_SHARES)) -> dict[str, int]:
    """Quotas: about half simple, 35% medium, 15% complex (renormalised over ``tiers``);
    complex gets at least one once n >= 3."""
    shares = {t: TIER_SHARES[t] for t in tiers}
    total = sum(shares.values())
    counts = {t: round(n * w / total) for t, w in shares.items()}
    if "complex" in counts and n >= 3:
        counts["complex"] = max(1, counts["complex"])
    rest = "medium" if "medium" in counts else next(iter(counts))
    counts[rest] += n - sum(counts.values())  # rounding goes to medium
    return counts


def stratified_slice(records, n: int, seed: int, tiers=tuple(TIER_SHARES)) -> list:
    """A fixed slice of ``n`` records: tier quotas from :func:`tier_counts`, spread over as
    many schemas as the quota allows (round robin over schemas in a seeded order)."""
    rng = random.Random(seed)
    chosen = []
    for tier, k in tier_counts(n, tiers).items():
        by_schema: dict[str, list] = {}
        for r in sorted((r for r in records if r.tier == tier), key=lambda r: r.id):
            by_schema.setdefault(r.schema_id, []).append(r)
        if k > sum(len(v) for v in by_schema.values()):
            raise ValueError(f"only {sum(len(v) for v in by_schema.values())} {tier} records, need {k}")
        schemas = sorted(by_schema)
        rng.shuffle(schemas)
        for group in by_schema.values():
            rng.shuffle(group)
        taken = 0
        while taken < k:
            for sid in schemas:
                if taken < k and by_schema[sid]:
                    chosen.append(by_schema[sid].pop())
                    taken += 1
    return chosen


def start_bench(args: argparse.Namespace):
    """What every bench's ``main()`` does first: the memory guard (``--min-available-mb``), the
    thread count (``--threads``), then the machine's description and the data (``--data-root``)."""
    start_memory_guard(args.min_available_mb)
    torch.set_num_threads(args.threads)
    return machine_info(args.threads), load_dataset(args.data_root)


def load_model_spec(name: str, source: str | None = None, layers: int | None = None) -> ModelSpec:
    """``conf/model/<name>.yaml`` as a ModelSpec; ``source``/``layers`` override the config
    (``source=random`` with ``layers``: the same architecture, fewer layers, no weights)."""
    conf = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())
    conf.pop("_target_", None)
    if source is not None:
        conf["source"] = source
    if layers is not None and conf.get("arch"):
        conf["arch"] = {**conf["arch"], "num_hidden_layers": layers}
    return ModelSpec(**conf)


def build_bench_model(spec: ModelSpec, layers: int | None = None, seed: int = 0):
    """Tokenizer and model; with ``layers`` a pretrained model keeps only its first layers."""
    tokenizer = build_tokenizer(spec)
    model = build_model(spec, tokenizer, seed=seed)
    if layers is not None and model.config.num_hidden_layers > layers:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
    return tokenizer, model


def json_close_index(tokenizer, ids: list[int]) -> int | None:
    """Number of tokens up to and including the one after which the scorer's extraction finds
    the JSON value (where the evaluation's stop rule ends a row)."""
    text = ""
    for k, tok in enumerate(ids):
        piece = tokenizer.decode([tok], skip_special_tokens=True)
        text += piece
        if ("}" in piece or "]" in piece) and json_complete(text):
            return k + 1
    return None


@torch.inference_mode()
def run_published(model, tokenizer, prompts: list[str], max_new_tokens: int = PUBLISHED_MAX_NEW_TOKENS,
                  never_eos: bool = False) -> tuple[list[dict], dict]:
    """The published harness: one prompt at a time, greedy, 512 new tokens, EOS only.

    ``never_eos`` emulates the published *model* as well: it was trained with pad = EOS masked
    out of the loss, so it never emitted EOS and every example ran to the cap. Forcing
    ``min_new_tokens = max_new_tokens`` reproduces that cost on a model that did learn EOS.
    """
    model.eval()
    rows = []
    c0, t0 = time.process_time(), time.perf_counter()
    for p in prompts:
        enc = tokenizer(p, add_special_tokens=False, return_tensors="pt")
        t1 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                             min_new_tokens=max_new_tokens if never_eos else None,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                             temperature=None, top_p=None, top_k=None)
        new = out[0, enc.input_ids.shape[1]:].tolist()
        rows.append({"text": tokenizer.decode(new, skip_special_tokens=True), "n_tokens": len(new),
                     "hit_eos": bool(new) and new[-1] == tokenizer.eos_token_id,
                     "latency_s": round(time.perf_counter() - t1, 3), "ids": new})
        print(f"    published example {len(rows)}/{len(prompts)}: {len(new)} tokens, eos={rows[-1]['hit_eos']}, "
              f"{rows[-1]['latency_s']:.1f}s", file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return rows, {"wall_s": wall, "cpu_s": cpu, "batches": len(prompts), "max_new_tokens": max_new_tokens}


def run_ours(model, tokenizer, prompts: list[str], max_new_tokens: int, cfg: DecodeConfig) -> tuple[list[dict], dict]:
    c0, t0 = time.process_time(), time.perf_counter()
    gens, stats = generate_batched(model, tokenizer, prompts, max_new_tokens, cfg, desc="bench")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = [{"text": g.text, "n_tokens": g.n_tokens, "hit_eos": g.hit_eos} for g in gens]
    d = stats.as_dict()
    return rows, {"wall_s": wall, "cpu_s": cpu, "batches": stats.batches, "max_new_tokens": max_new_tokens,
                  "decode_steps": d["steps"], "mean_batch_rows": d["mean_batch_rows"],
                  "prefill_tokens": d["prefill_tokens"], "prefill_s": d["prefill_s"]}


def summarise(name: str, rows: list[dict], timing: dict, records, schemas, load_before, load_after) -> dict:
    preds = [{"id": r.id, "output": row["text"]} for r, row in zip(records, rows)]
    scored, agg = score_predictions(preds, records, schemas, n_boot=200, seed=0)
    tokens = sum(row["n_tokens"] for row in rows)
    overall = agg["overall"]
    return {
        "variant": name,
        "wall_s": round(timing["wall_s"], 2),
        "cpu_s": round(timing["cpu_s"], 2),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / timing["wall_s"], 2),
        "tokens_per_cpu_s": round(tokens / timing["cpu_s"], 2),
        "batches": timing["batches"],
        "decode_steps": timing.get("decode_steps"),
        "mean_batch_rows": timing.get("mean_batch_rows"),
        "prefill_tokens": timing.get("prefill_tokens"),
        "prefill_s": timing.get("prefill_s"),
        "max_new_tokens": timing["max_new_tokens"],
        "hit_eos": sum(bool(row["hit_eos"]) for row in rows),
        "json_exact": overall["json_exact"],
        "field_f1": overall["field_f1"],
        "status_counts": overall["status_counts"],
        "by_tier": {t: {"n": m["n"], "json_exact": m["json_exact"], "field_f1": m["field_f1"]}
                    for t, m in agg["by_tier"].items()},
        "per_example": [{"id": r.id, "tier": r.tier, "n_tokens": row["n_tokens"], "hit_eos": bool(row["hit_eos"]),
                         "json_exact": bool(s["json_exact"]), "field_f1": round(float(s["field_f1"]), 4)}
                        for r, row, s in zip(records, rows, scored)],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="test examples (stratified by tier, see tier_counts)")
    p.add_argument("--seed", type=int, default=0, help="picks the slice")
    p.add_argument("--tiers", nargs="+", default=list(TIER_SHARES), choices=list(TIER_SHARES),
                   help="tiers in the slice (complex answers run to 1,500+ tokens: minutes per example on CPU)")
    p.add_argument("--model", default="smol135_gguf", help="conf/model/<name>.yaml")
    p.add_argument("--weights", type=Path, default=None,
                   help="a model.safetensors to load into the built model (e.g. outputs/trained/<hash>/, "
                        "the train cache of a fine-tuned run)")
    p.add_argument("--source", default=None, choices=["hub", "gguf", "random", "local"], help="override model.source")
    p.add_argument("--layers", type=int, default=None, help="keep only this many transformer layers (smoke tests)")
    p.add_argument("--data-root", type=Path, default=default_data_root())
    p.add_argument("--template", default="chat", choices=["plain", "chat"])
    p.add_argument("--schema", default="none", choices=["none", "fields", "full"])
    p.add_argument("--batch-size", type=int, default=DecodeConfig.batch_size, help="ours: sequences per batch")
    p.add_argument("--variants", nargs="+", default=["published", "ours", "ours_no_json_stop"], choices=VARIANTS,
                   help="run in this order; ours_repeat runs ours a second time (drift check)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="ours: cap (default: derived from train+test targets, as scaling.train does)")
    p.add_argument("--published-max-new-tokens", type=int, default=PUBLISHED_MAX_NEW_TOKENS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-available-mb", type=float, default=800,
                   help="exit when the machine's MemAvailable drops below this (0: off)")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    info, data = start_bench(args)
    records = stratified_slice(data.test, args.n, args.seed, args.tiers)
    spec = load_model_spec(args.model, args.source, args.layers)
    t0 = time.perf_counter()
    tokenizer, model = build_bench_model(spec, args.layers)
    if args.weights:
        from scaling.jobs.cache import load_weights

        model = load_weights(model, args.weights)
    model.eval()
    load_s = time.perf_counter() - t0
    fmt = PromptFormat(template=args.template, schema=args.schema)
    prompts = [format_prompt(r.prompt, data.schemas[r.schema_id].schema, fmt, tokenizer) for r in records]
    # As scaling.train does: the cap comes from every train and test target, not the slice.
    all_targets = [format_target(r.expected_output, fmt) for r in list(data.train) + list(data.test)]
    base_cfg = DecodeConfig(batch_size=args.batch_size, progress=False)
    max_new = args.max_new_tokens or derive_max_new_tokens(tokenizer, all_targets, base_cfg)
    print(f"slice: {len(records)} test records {[r.tier for r in records]}; model {spec.key} loaded in "
          f"{load_s:.1f}s; ours max_new_tokens={max_new}", file=sys.stderr, flush=True)

    # Warm-up (kernel selection, allocator): otherwise whichever variant runs first pays it.
    with torch.inference_mode():
        enc = tokenizer(prompts[0], add_special_tokens=False, return_tensors="pt")
        model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    order = list(args.variants)
    results: dict[str, list[dict]] = {}
    raw: dict[str, list[dict]] = {}

    def build_result(complete: bool) -> dict:
        def mean(name: str, key: str) -> float:
            runs = results[name]
            return sum(r[key] for r in runs) / len(runs)

        ratios = {}
        for base in (b for b in results if b.startswith("published")):
            for name in results:
                if not name.startswith("published"):
                    ratios[f"{base}_over_{name}_wall"] = round(mean(base, "wall_s") / mean(name, "wall_s"), 2)
                    ratios[f"{base}_over_{name}_cpu"] = round(mean(base, "cpu_s") / mean(name, "cpu_s"), 2)
        # What the JSON stop could save the baseline: tokens it generated after its JSON closed.
        tail = None
        if "published" in raw:
            after = []
            for row in raw["published"]:
                k = json_close_index(tokenizer, row["ids"])
                after.append(row["n_tokens"] - k if k is not None else 0)
            tail = {"tokens_after_json_close": sum(after),
                    "share_of_generated": round(sum(after) / max(1, sum(r["n_tokens"] for r in raw["published"])), 4),
                    "per_example": after}
        info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        return {
            "benchmark": "eval_harness",
            "machine": info,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "model": spec.key,
            "model_source": spec.source,
            "weights": str(args.weights) if args.weights else None,
            "layers": model.config.num_hidden_layers,
            "model_load_s": round(load_s, 1),
            "slice": [{"id": r.id, "tier": r.tier, "schema_id": r.schema_id} for r in records],
            "prompt_format": {"template": fmt.template, "schema": fmt.schema},
            "order": order,
            "variants": results,
            "ratios": ratios,
            "published_tail_after_json": tail,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "complete": complete,
        }

    def write(result: dict) -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    for variant in order:
        name = "ours" if variant == "ours_repeat" else variant
        before = [round(x, 2) for x in os.getloadavg()]
        if name in ("published", "published_no_eos"):
            rows, timing = run_published(model, tokenizer, prompts, args.published_max_new_tokens,
                                         never_eos=name == "published_no_eos")
        else:
            cfg = DecodeConfig(batch_size=1 if name == "ours_bs1" else args.batch_size,
                               stop_at_json_end=name != "ours_no_json_stop", progress=False,
                               engine="hf" if name == "ours_fixed_batches" else "continuous")
            rows, timing = run_ours(model, tokenizer, prompts, max_new, cfg)
        summary = summarise(name, rows, timing, records, data.schemas, before, [round(x, 2) for x in os.getloadavg()])
        results.setdefault(name, []).append(summary)
        raw.setdefault(name, rows)
        print(f"{name:>18}: wall {summary['wall_s']:8.1f}s  cpu {summary['cpu_s']:8.1f}s  "
              f"{summary['generated_tokens']:5d} tok  {summary['tokens_per_s']:6.2f} tok/s  "
              f"json_exact {summary['json_exact']:.3f}  field_f1 {summary['field_f1']:.3f}  "
              f"load {before}", file=sys.stderr, flush=True)
        write(build_result(complete=False))  # a killed run still leaves what it measured

    result = build_result(complete=True)
    print(json.dumps(result))
    write(result)
    return result


if __name__ == "__main__":
    main()

"""What packing could buy: the padding in an epoch of the reference recipe's batches.

Packing several examples into one row (attention kept within each example) removes padded
positions and nothing else: the model still runs every real token, and each packed row's
attention covers its own examples only. So the most packing can save is the share of
computed positions that are padding. This counts it, for every batch an epoch draws with the
reference recipe's batching (``data.prompt.schema=fields``, batch 8, ``max_batch_tokens``
8192, length-grouped in mega-chunks of 50 batches, seeds 0-2), on EdgeJSON v3 train (629)
and on the 200% set (v3 + half of ``v3_extra/train.jsonl``).

Per epoch: real tokens, computed positions (batch x longest row, summed), padding share,
tokens carrying loss. Tokenisation only: no model is built beyond its tokenizer, so this runs
in seconds on any machine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/padding.py --out /tmp/bench/padding.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_harness import default_data_root, load_model_spec  # noqa: E402

from scaling.data import load_dataset  # noqa: E402
from scaling.data.io import scan_records  # noqa: E402
from scaling.data.prompts import PromptFormat  # noqa: E402
from scaling.data.sft import LengthGroupedBatchSampler, SFTDataset, stratified_fraction  # noqa: E402
from scaling.models import build_tokenizer  # noqa: E402


def epoch_padding(ds: SFTDataset, batch_size: int, max_tokens: int, seed: int) -> dict:
    sampler = LengthGroupedBatchSampler(ds.lengths, batch_size, seed=seed, max_tokens=max_tokens)
    sampler.set_epoch(0)
    batches = sampler.batches()
    real = sum(ds.lengths[i] for b in batches for i in b)
    computed = sum(len(b) * max(ds.lengths[i] for i in b) for b in batches)
    return {"seed": seed, "batches": len(batches), "real_tokens": real, "computed_positions": computed,
            "padding_share": round(1 - real / computed, 4)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smol135_gguf", help="a conf/model name (its tokenizer is used)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    root = args.data_root or default_data_root()
    tokenizer = build_tokenizer(load_model_spec(args.model))
    data = load_dataset(root, "v3")
    extra = stratified_fraction(scan_records(root / "v3_extra" / "train.jsonl", data.schemas).records, 0.5, seed=0)
    fmt = PromptFormat(template="plain", schema="fields", compact_json=True)
    out = {"model": args.model, "batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens, "sets": {}}
    for name, records in (("v3 train (629)", list(data.train)), ("200% (v3 + v3_extra 50%)", list(data.train) + extra)):
        ds = SFTDataset(records, data.schemas, tokenizer, fmt, 4096)
        rows = [epoch_padding(ds, args.batch_size, args.max_batch_tokens, s) for s in (0, 1, 2)]
        out["sets"][name] = {"examples": len(ds), "loss_tokens": ds.n_target_tokens, "epochs": rows}
        shares = ", ".join(f"{r['padding_share']:.1%}" for r in rows)
        print(f"{name}: {len(ds)} examples, {rows[0]['real_tokens']:,} tokens, {rows[0]['batches']} "
              f"batches; padding share of computed positions (seeds 0-2): {shares}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()

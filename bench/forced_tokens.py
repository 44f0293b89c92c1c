"""How many answer tokens the schema grammar alone decides, replayed on answers the model gave.

The evaluation of the 158 + 120 complex examples takes ~27 minutes on 2 cores (issue 24's goal: 10),
and the batched engine spends one decode step per generated token. Under the strict grammar with
compact separators many tokens have no alternative: after a key's value closes, the next key's
name, its quotes and the colon are often the only text the schema allows. A decoder can append
such tokens without asking the model for them ("jump-forward" decoding, as in SGLang's compressed
FSM), computing their keys and values in one multi-token forward instead of one step each.

This replays every committed answer token by token through the run's own xgrammar grammar (the
answer's text tokenized again; no model runs) and counts, per answer, the tokens at which the
grammar allowed exactly one token (forced), and the characters of the jump-forward strings the
matcher reports (text the grammar fixes whatever the tokenization). Split by whether the answer
closed (parsed) or never did (looped, capped, syntax error): the never-closing answers hold most of
the complex tokens. No model and no timing: the counts bound what jump-forward decoding can save in
decode steps, not in wall time (each forced run still costs a forward over its tokens).

    python bench/forced_tokens.py [RUN ...] [--model smol135_gguf] [--out FILE.json]

RUN is a run folder (``results.json`` and ``predictions.jsonl``); the default is the two-epoch
reference seeds on the 158 and on complex+'s extra part (``outputs/reference/edgejson_v3_steps``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_harness import load_model_spec  # noqa: E402
from matmul_rate import emit_result, machine_info  # noqa: E402

from scaling.data.io import DataError, load_schemas  # noqa: E402
from scaling.decode.grammar import SchemaGrammars  # noqa: E402
from scaling.models import build_tokenizer  # noqa: E402
from scaling.paths import REPO_ROOT  # noqa: E402
from scaling.results import RunFolder  # noqa: E402

STEPS = REPO_ROOT / "outputs" / "reference" / "edgejson_v3_steps"
DEFAULT_RUNS = [STEPS / f"smol135_gguf-epochs2-s{s}{part}" for s in (0, 1) for part in ("", "-complex_plus")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders (default: the two-epoch reference seeds)")
    p.add_argument("--model", default="smol135_gguf", help="whose tokenizer re-tokenizes the answers")
    p.add_argument("--schemas", type=Path, default=None,
                   help="the EdgeJSON schemas folder (default: $EDGEJSON_DIR/schemas or ../shared/edgejson/schemas)")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def replay(matcher, ids: list[int], bitmask, decoded: list[str]) -> dict:
    """Forced tokens and jump-forward characters of one answer under its grammar."""
    forced = forced_chars = 0
    covered_until = 0  # characters of the answer already inside a jump-forward string
    pos = 0
    for k, tok in enumerate(ids):
        if matcher.is_terminated():
            break
        matcher.fill_next_token_bitmask(bitmask)
        if int(np.unpackbits(bitmask.numpy().view(np.uint8)).sum()) == 1:
            forced += 1
        if pos >= covered_until:
            jump = matcher.find_jump_forward_string()
            if jump:
                forced_chars += len(jump)
                covered_until = pos + len(jump)
        if not matcher.accept_token(tok):
            return {"tokens": k, "forced": forced, "forced_chars": forced_chars, "chars": pos, "rejected": True}
        pos += len(decoded[k])
    return {"tokens": len(ids), "forced": forced, "forced_chars": forced_chars, "chars": pos, "rejected": False}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import xgrammar as xgr

    runs = args.runs or DEFAULT_RUNS
    schemas_dir = args.schemas or Path(os.environ.get("EDGEJSON_DIR") or REPO_ROOT.parent / "shared" / "edgejson") / "schemas"
    try:
        schemas = load_schemas(schemas_dir)
        rows = [{**r, "run": str(run), "strict": bool((RunFolder(run).results_json().get("decode") or {})
                                                        .get("grammar_strict"))}
                for run in runs for r in RunFolder(run).predictions()]
    except DataError as exc:  # a missing folder or file, a bad line: named, no traceback
        raise SystemExit(f"error: {exc}")
    tokenizer = build_tokenizer(load_model_spec(args.model))
    grammars = {strict: SchemaGrammars(tokenizer, len(tokenizer), compact=True, strict=strict) for strict in (False, True)}
    bitmask = xgr.allocate_token_bitmask(1, len(tokenizer))
    t0 = time.perf_counter()
    groups: dict[str, dict] = {}
    rejected = 0
    for row in rows:
        grammar = grammars[row["strict"]].get(row["schema_id"], schemas[row["schema_id"]].schema)
        ids = tokenizer(row["output"], add_special_tokens=False)["input_ids"]
        decoded = [tokenizer.decode([i]) for i in ids]
        res = replay(xgr.GrammarMatcher(grammar), ids, bitmask, decoded)
        rejected += res["rejected"]
        closed = row.get("status") != "syntax_error" and not row.get("looped") and not row.get("capped")
        for key in (f"{row['tier']}, {'closed' if closed else 'never closed'}", "all"):
            g = groups.setdefault(key, {"answers": 0, "tokens": 0, "forced": 0, "chars": 0, "forced_chars": 0})
            g["answers"] += 1
            for k in ("tokens", "forced", "chars", "forced_chars"):
                g[k] += res[k]
    print(f"{len(rows)} answers from {len(runs)} runs; {rejected} re-tokenized answers left the grammar early "
          "(counted up to there)")
    print(f"{'answers':>28} {'n':>5} {'tokens':>9} {'forced':>8} {'share':>6} {'jump chars':>10} {'share':>6}")
    for key in sorted(groups, key=lambda k: (k == "all", k)):
        g = groups[key]
        g["forced_share"] = round(g["forced"] / g["tokens"], 4) if g["tokens"] else None
        g["forced_char_share"] = round(g["forced_chars"] / g["chars"], 4) if g["chars"] else None
        print(f"{key:>28} {g['answers']:>5} {g['tokens']:>9,} {g['forced']:>8,} {g['forced_share']:>6} "
              f"{g['forced_chars']:>10,} {g['forced_char_share']:>6}")
    result = {"benchmark": "forced_tokens", "machine": machine_info(),
              "args": {**vars(args), "runs": [str(r) for r in runs], "out": str(args.out), "schemas": str(schemas_dir)},
              "answers": len(rows), "rejected": rejected, "groups": groups, "replay_s": round(time.perf_counter() - t0, 1)}
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

"""What a stricter loop rule would save, replayed on answers the model already gave.

Evaluation time on complex answers goes mostly to answers that never close: in the 2-epoch
seed-0 run's 120 extra complex answers, 35 stopped as loops and 14 at their length cap, and
they hold 62% of the generated tokens while scoring 0 on every metric. The loop rule
(:class:`scaling.decode.stopping.RowStop`: ``decode.loop_min_tokens``, ``loop_min_repeats``,
``loop_max_period``) decides how soon a looping row gives its slot back.

This replays every committed answer, token by token, through the real ``RowStop`` under each
rule (the answer's text tokenized again; no model runs) and reports, per rule: the tokens the
answers would have generated, as a ratio to the rule of record (the defaults), and every answer
the rule would have stopped as a loop that parsed when it was generated (a false stop: it would
change a score; an answer that never closed scores 0 wherever it stops). Tokenizing a text again
does not always give the ids the model chose, so a replay under the rule of record finds fewer
loops than were recorded (a loop is caught within 8 tokens of where generation stopped): token
counts compare replay with replay. A rule worth making the default saves tokens with no false stop.

    python bench/loop_stop.py [RUN ...] [--rules 256:3 128:3 256:2 128:2] [--out FILE.json]

RUN is a run folder (its ``predictions.jsonl``); the default is every committed run under
``outputs/reference/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_harness import load_model_spec  # noqa: E402
from matmul_rate import emit_result, machine_info  # noqa: E402

from scaling.data.io import DataError  # noqa: E402
from scaling.decode import DecodeConfig  # noqa: E402
from scaling.decode.stopping import RowStop, TokenText  # noqa: E402
from scaling.models import build_tokenizer  # noqa: E402
from scaling.paths import REPO_ROOT  # noqa: E402
from scaling.results import RunFolder  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="run folders (default: every committed reference run)")
    p.add_argument("--rules", nargs="+", default=["256:3", "128:3", "256:2", "128:2", "64:2"],
                   help="MIN_TOKENS:MIN_REPEATS pairs to replay (loop_max_period stays the default)")
    p.add_argument("--model", default="smol135_gguf", help="whose tokenizer re-tokenizes the answers")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def answers(runs: list[Path]) -> list[dict]:
    """Every answer of every run (``predictions.jsonl``: a complex+ run's folder holds the 120 extras)."""
    return [{**r, "run": str(run)} for run in runs for r in RunFolder(run).predictions()]


def replay(ids: list[int], token_text: TokenText, min_tokens: int, repeats: int, max_period: int) -> tuple[int, bool]:
    """Where the rule stops this answer (tokens generated) and whether it stops it as a loop."""
    stop = RowStop(token_text, eos_ids=set(), stop_at_json_end=True, loop_min_tokens=min_tokens,
                   loop_max_period=max_period, loop_min_repeats=repeats)
    for tok in ids:
        if stop.push(tok):
            return stop.n_generated, stop.looped
    return len(ids), False


def main(argv=None) -> dict:
    args = parse_args(argv)
    runs = args.runs or sorted(p.parent for p in (REPO_ROOT / "outputs" / "reference").rglob("predictions.jsonl"))
    try:
        rows = answers(runs)
    except DataError as exc:  # a folder without predictions.jsonl, a bad line: named, no traceback
        raise SystemExit(f"error: {exc}")
    tokenizer = build_tokenizer(load_model_spec(args.model))
    token_text = TokenText(tokenizer)
    defaults = DecodeConfig()
    rules = [tuple(int(x) for x in r.split(":")) for r in args.rules]
    record = (defaults.loop_min_tokens, defaults.loop_min_repeats)
    if record not in rules:
        rules.insert(0, record)
    t0 = time.perf_counter()
    encoded = [tokenizer(r["output"], add_special_tokens=False)["input_ids"] for r in rows]
    results = {f"{m}:{k}": {"tokens": 0, "loops": 0, "false_stops": []} for m, k in rules}
    recorded_tokens = 0
    for row, ids in zip(rows, encoded):
        recorded_tokens += int(row.get("n_tokens") or len(ids))
        # An answer that parsed is the one a rule must never stop: an answer that never closed
        # (a loop, cut at its cap, a syntax error) scores 0 on every metric wherever it stops.
        closed = row.get("status") != "syntax_error" and not row.get("looped") and not row.get("capped")
        for m, k in rules:
            n, looped = replay(ids, token_text, m, k, defaults.loop_max_period)
            res = results[f"{m}:{k}"]
            res["tokens"] += n
            res["loops"] += looped
            if looped and closed:
                res["false_stops"].append({"run": row["run"], "id": row["id"], "status": row.get("status"),
                                           "json_exact": row.get("json_exact"), "at": n, "of": len(ids)})
    base_tokens = results[f"{record[0]}:{record[1]}"]["tokens"]
    print(f"{len(rows)} answers from {len(runs)} runs; {recorded_tokens:,} tokens as recorded, "
          f"{base_tokens:,} replayed under the rule of record {record[0]}:{record[1]}")
    print(f"{'rule (min tokens:repeats)':>26} {'tokens':>10} {'ratio':>6} {'loops':>6} {'false stops':>12}")
    for name, res in results.items():
        res["ratio"] = round(res["tokens"] / base_tokens, 4) if base_tokens else None
        print(f"{name:>26} {res['tokens']:>10,} {res['ratio']:>6} {res['loops']:>6} {len(res['false_stops']):>12}")
    result = {"benchmark": "loop_stop", "machine": machine_info(), "args": {**vars(args), "runs": [str(r) for r in runs], "out": str(args.out)},
              "answers": len(rows), "recorded_tokens": recorded_tokens, "rule_of_record": f"{record[0]}:{record[1]}",
              "loop_max_period": defaults.loop_max_period, "rules": results,
              "replay_s": round(time.perf_counter() - t0, 1)}
    emit_result(result, args.out)
    return result


if __name__ == "__main__":
    main()

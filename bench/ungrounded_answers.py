"""How many answers hold a value that is not in their prompt (what ``decode.grounded`` forbids).

For each run folder (a job's or a committed reference run's ``predictions.jsonl`` and
``results.json``), the prompts are read from the test file the run recorded (``data.files``,
or ``--test`` to point elsewhere: the data is never committed), and every answer that parses is
checked with :func:`scaling.decode.grounded.ungrounded_values`. Prints a table and one JSON line.

    python bench/ungrounded_answers.py RUN [RUN ...] [--test FILE.jsonl] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaling.decode.grounded import ungrounded_values
from scaling.metrics import extract_json
from scaling.results import RunFolder, read_jsonl


def _prompts(run: Path, test: str | None) -> dict[str, str]:
    data = RunFolder(run).results().data
    files = list(data.files) if data is not None else []
    path = Path(test) if test else Path(files[1])
    return {r["id"]: r["prompt"] for r in read_jsonl(path)}


def count(run: Path, test: str | None = None) -> dict:
    prompts = _prompts(run, test)
    out = {"run": str(run), "parsed": 0, "parsed_ungrounded": 0, "wrong_parsed": 0, "wrong_parsed_ungrounded": 0,
           "by_tier": {}}
    for row in RunFolder(run).predictions():
        answer = extract_json(row["output"]).value if row.get("status") in ("ok", "schema_error") else None
        if not isinstance(answer, (dict, list)):
            continue
        bad = bool(ungrounded_values(answer, prompts[row["id"]]))
        wrong = not row.get("json_exact")
        tier = out["by_tier"].setdefault(row.get("tier", "?"), {"wrong_parsed": 0, "wrong_parsed_ungrounded": 0})
        out["parsed"] += 1
        out["parsed_ungrounded"] += bad
        out["wrong_parsed"] += wrong
        out["wrong_parsed_ungrounded"] += wrong and bad
        tier["wrong_parsed"] += wrong
        tier["wrong_parsed_ungrounded"] += wrong and bad
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--test", help="the test file (default: the one the run recorded)")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    results = [count(Path(r), args.test) for r in args.runs]
    print("| run | answers that parse | ... with a value not in the prompt | wrong answers that parse | ... with such a value |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['run']} | {r['parsed']} | {r['parsed_ungrounded']} | {r['wrong_parsed']} | {r['wrong_parsed_ungrounded']} |")
    line = json.dumps({"command": "python bench/ungrounded_answers.py " + " ".join(sys.argv[1:] if argv is None else argv),
                       "runs": results})
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a run's answers go wrong: per-schema scores, failure statuses and leaf-level errors.

    python -m scaling.failures outputs/reference/edgejson_v3/smol135_gguf-full-greedy [RUN_DIR ...]

A run folder holds ``results.json`` and ``predictions.jsonl`` (a job folder, or one exported
with :func:`scaling.results.export_reference`). The test records (prompts and reference
answers) are read from the data files ``results.json`` names, or from ``--data DIR``.

The leaf table answers "is the tier limited by copying or by computing?". Every leaf of a
reference answer (:func:`scaling.metrics.flatten`) is classed by whether its value can be
copied from the prompt (:func:`appears_in_prompt`) and scored as ``correct`` (the answer
has that path with an equal value), ``wrong`` (the path with another value) or ``missing``
(no such path, or no parsable answer at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from scaling.data.io import TIERS
from scaling.metrics import extract_json, flatten, json_exact

OUTCOMES = ("correct", "wrong", "missing")


def _number_forms(x: float | int) -> set[str]:
    """Ways a number is written in a prompt: 1234.5 as 1234.5, 1234.50, 1,234.50 ..."""
    forms = {json.dumps(x), str(x)}
    if isinstance(x, float) and x.is_integer():
        forms.add(str(int(x)))
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer()):
        forms.add(f"{int(x):,}")
    else:
        forms |= {f"{x:.2f}", f"{x:,.2f}", f"{x:,}"}
    return forms


def appears_in_prompt(value: Any, prompt: str) -> bool:
    """Whether a leaf ``value`` can be copied from ``prompt``: a non-empty string found
    verbatim, or a number in one of its usual written forms. Booleans, nulls and empty
    containers count as not copyable: the model has to decide them."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return False
    if isinstance(value, str):
        return bool(value) and value in prompt
    if isinstance(value, (int, float)):
        return any(form in prompt for form in _number_forms(value))
    return False


@dataclass(frozen=True)
class Leaf:
    """One leaf of a reference answer and what the model did with it."""

    path: str
    copyable: bool
    outcome: str        # correct | wrong | missing
    position: float     # its place in the reference answer, 0 (first leaf) to 1 (last)


def leaf_outcomes(expected: Any, answer: Any, prompt: str) -> list[Leaf]:
    """Score every leaf of ``expected`` against ``answer`` (the parsed model output, or
    None when nothing parsed)."""
    exp = flatten(expected)
    got = flatten(answer) if isinstance(answer, (dict, list)) else {}
    n = len(exp)
    out = []
    for i, (path, value) in enumerate(exp.items()):
        if path not in got:
            outcome = "missing"
        else:
            outcome = "correct" if json_exact(got[path], value) else "wrong"
        out.append(Leaf(path, appears_in_prompt(value, prompt), outcome, i / (n - 1) if n > 1 else 0.0))
    return out


@dataclass(frozen=True)
class LeafSummary:
    """Leaf outcomes counted by tier, copyability and position (first vs second half)."""

    counts: Mapping[tuple[str, str, str], int]   # (tier, "copyable"|"not copyable", outcome) -> n
    by_half: Mapping[tuple[str, str, str], int]  # (tier, "first half"|"second half", outcome) -> n

    def rate(self, table: str, tier: str, group: str) -> tuple[float, int]:
        """(share correct, number of leaves) of one row."""
        counts = self.counts if table == "copy" else self.by_half
        total = sum(counts.get((tier, group, o), 0) for o in OUTCOMES)
        return (counts.get((tier, group, "correct"), 0) / total if total else float("nan")), total


def summarise_leaves(rows: Iterable[tuple[str, list[Leaf]]]) -> LeafSummary:
    """``rows``: (tier, leaves of one example)."""
    counts: Counter = Counter()
    by_half: Counter = Counter()
    for tier, leaves in rows:
        for leaf in leaves:
            counts[(tier, "copyable" if leaf.copyable else "not copyable", leaf.outcome)] += 1
            by_half[(tier, "first half" if leaf.position < 0.5 else "second half", leaf.outcome)] += 1
    return LeafSummary(dict(counts), dict(by_half))


# ------------------------------------------------------------------------------- a run


class FailuresError(ValueError):
    """A run folder or data file that cannot be read; names the file (and line)."""


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; :class:`FailuresError` naming the file (and line) otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FailuresError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise FailuresError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FailuresError(f"{path}:{n}: invalid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise FailuresError(f"{path}:{n}: expected a JSON object")
        rows.append(row)
    return rows


def _test_file(results: Mapping[str, Any], data_dir: Path | None, run: Path) -> Path:
    data = results.get("data") or {}
    if data_dir is not None:
        return data_dir / str(data.get("version", "v3")) / "test.jsonl"
    for name in data.get("files") or {}:
        if name.endswith("test.jsonl"):
            path = Path(name)
            return path if path.is_absolute() else Path.cwd() / path
    raise FailuresError(f"{run / 'results.json'}: field data.files names no test.jsonl; pass --data")


@dataclass(frozen=True)
class RunFailures:
    """What :func:`analyse_run` finds in one run."""

    name: str
    n: int
    statuses: Mapping[str, Mapping[str, int]]          # tier -> status -> n
    by_schema: Sequence[tuple[str, str, int, float, float, float]]  # schema, tier, n, exact, F1, compliance
    leaves: LeafSummary
    examples: Sequence[tuple[str, str, str]]           # (id, status, output tail) of failures, complex first


def analyse_run(run: str | Path, data_dir: str | Path | None = None, n_examples: int = 3) -> RunFailures:
    run = Path(run)
    if not run.is_dir():
        raise FailuresError(f"{run}: {'not a run folder' if run.exists() else 'no such folder'} "
                            "(expected a folder with results.json and predictions.jsonl)")
    try:
        results = json.loads(_read_text(run / "results.json"))
    except json.JSONDecodeError as e:
        raise FailuresError(f"{run / 'results.json'}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(results, dict):
        raise FailuresError(f"{run / 'results.json'}: expected a JSON object")
    preds = _read_jsonl(run / "predictions.jsonl")
    test_path = _test_file(results, Path(data_dir) if data_dir else None, run)
    records = {r["id"]: r for r in _read_jsonl(test_path)}
    statuses: dict[str, Counter] = defaultdict(Counter)
    per_schema: dict[tuple[str, str], list[dict]] = defaultdict(list)
    leaf_rows = []
    for n, row in enumerate(preds, start=1):
        for field in ("id", "tier", "status", "output"):
            if field not in row:
                raise FailuresError(f"{run / 'predictions.jsonl'}:{n}: field {field!r} missing")
        rec = records.get(row["id"])
        if rec is None:
            raise FailuresError(f"{run / 'predictions.jsonl'}:{n}: field 'id': {row['id']!r} is not in {test_path}")
        tier = row["tier"]
        statuses[tier][row["status"]] += 1
        per_schema[(row.get("schema_id") or rec["schema_id"], tier)].append(row)
        extraction = extract_json(row["output"] or "")
        answer = extraction.value if extraction.ok else None
        leaf_rows.append((tier, leaf_outcomes(rec["expected_output"], answer, rec["prompt"])))
    order = {t: i for i, t in enumerate(TIERS)}
    by_schema = []
    for (sid, tier), rows in sorted(per_schema.items(), key=lambda kv: (order.get(kv[0][1], 9), kv[0][0])):
        k = len(rows)
        by_schema.append((sid, tier, k, sum(bool(r.get("json_exact")) for r in rows) / k,
                          sum(float(r.get("field_f1") or 0.0) for r in rows) / k,
                          sum(bool(r.get("schema_compliance")) for r in rows) / k))
    failures = sorted((r for r in preds if not r.get("json_exact")), key=lambda r: (-order.get(r["tier"], -1), r["id"]))
    examples = [(r["id"], r["status"], (r["output"] or "")[-160:]) for r in failures[:n_examples]]
    return RunFailures(name=run.name, n=len(preds), statuses={t: dict(c) for t, c in statuses.items()},
                       by_schema=by_schema, leaves=summarise_leaves(leaf_rows), examples=examples)


def format_markdown(runs: Sequence[RunFailures]) -> str:
    lines = []
    for r in runs:
        lines += [f"### {r.name} ({r.n} examples)", "", "Statuses by tier:", ""]
        for tier in TIERS:
            if tier in r.statuses:
                lines.append(f"- {tier}: " + ", ".join(f"{s} {k}" for s, k in sorted(r.statuses[tier].items())))
        lines += ["", "| schema | tier | n | JSONExact % | Field F1 | compliance % |", "|---|---|---|---|---|---|"]
        for sid, tier, k, ex, f1, comp in r.by_schema:
            lines.append(f"| {sid} | {tier} | {k} | {100 * ex:.0f} | {f1:.3f} | {100 * comp:.0f} |")
        lines += ["", "Reference-answer leaves the answer gets right (share correct, leaves):", "",
                  "| tier | copyable from the prompt | not copyable | first half of the answer | second half |",
                  "|---|---|---|---|---|"]
        for tier in TIERS:
            cells = []
            for table, group in (("copy", "copyable"), ("copy", "not copyable"), ("half", "first half"),
                                 ("half", "second half")):
                rate, total = r.leaves.rate(table, tier, group)
                cells.append(f"{100 * rate:.1f}% ({total})" if total else "—")
            if any(c != "—" for c in cells):
                lines.append(f"| {tier} | " + " | ".join(cells) + " |")
        lines += ["", "Failed answers, last 160 characters:", ""]
        lines += [f"- `{i}` ({s}): `{json.dumps(t)[1:-1]}`" for i, s, t in r.examples]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.failures", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with results.json and predictions.jsonl")
    ap.add_argument("--data", type=Path, default=None,
                    help="dataset root (holds <version>/test.jsonl); default: the file results.json names")
    ap.add_argument("--examples", type=int, default=3, help="failed answers to show per run")
    args = ap.parse_args(argv)
    try:
        runs = [analyse_run(run, args.data, args.examples) for run in args.runs]
    except FailuresError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

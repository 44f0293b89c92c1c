"""What the prompt determines, beside every score: the ceiling and the kind of every answer.

    python -m scaling.ceiling TEST.jsonl [--schemas DIR] [--reader OUT.jsonl] [--json]

Each EdgeJSON prompt is read back (:mod:`scaling.data.readings`): how many answers render to
it, the most probable one, and the record's **ceiling**, the best exact match any reader of the
prompt can expect (0 where the gold contradicts the prompt). :func:`score_rows` adds to each
scored answer what its prompt allows and what kind of answer it is (:data:`ANSWER_KINDS`):

``exact``
    JSONExact;
``gold_contradicts``
    not exact, and the record's gold contradicts its prompt: no reader can give it;
``unparsed``
    no JSON value came out (``cause``: ``loop``, ``cap``, ``eos``, or ``loop_or_cap`` when the
    run did not record which of the two stopped it);
``other_reading``
    renders to the prompt, but is not the gold: the prompt allowed it (a list split otherwise);
``inconsistent``
    parsed, but no reading of the prompt: which of the gold's lists lost or gained items,
    how many leaves differ, and where the answer first leaves the prompt;
``unread``
    parsed and wrong, on a prompt that is not the template (nothing to compare it with).

:func:`summarise` puts, per group (overall, tier, schema), the ceiling with a 95% bootstrap
interval, the share of JSONExact it is (with an interval drawn on the same resamples) and the
answers by kind; :func:`scaling.score.score_predictions` adds it to every aggregate, so
``results.json`` carries it. ``--reader`` writes the most probable reading of every prompt as
a predictions file for :mod:`scaling.score`: the reference line no model is mixed with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from scaling.data import DataError, Record, SchemaInfo, load_schemas, read_records
from scaling.data.io import TIERS
from scaling.data.readings import PROMPT_KINDS, RecordReading, read_record
from scaling.metrics import JSON_NOT_FOUND, SYNTAX_ERROR, flatten, json_exact
from scaling.results import write_jsonl
from scaling.stats import bootstrap_indices, quantile_interval, wilson_interval

__all__ = ["ANSWER_KINDS", "UNPARSED_CAUSES", "read_test", "answer_kind", "list_lengths", "score_rows", "summarise",
           "add_summaries", "reader_predictions", "ceiling_table", "main"]

ANSWER_KINDS = ("exact", "gold_contradicts", "unparsed", "other_reading", "inconsistent", "unread")
UNPARSED_CAUSES = ("loop", "cap", "eos", "loop_or_cap")

#: Leaf paths an inconsistent answer's detail names (the count is always complete).
_SHOW_LEAVES = 5


def read_test(records: Iterable[Record], schemas: Mapping[str, SchemaInfo]) -> dict[str, RecordReading]:
    """Every record's prompt read back, by id."""
    return {r.id: read_record(r, schemas[r.schema_id].schema) for r in records}


def list_lengths(gold: Any, answer: Any, path: str = "") -> list[dict]:
    """The gold's lists beside the answer's: ``{"path", "gold", "answer"}`` for every list of the
    gold, nested ones too; ``answer`` is the answer's length at the same path, None where the
    answer has no list there (a list inside an item the answer lost counts as lost too)."""
    out: list[dict] = []
    if isinstance(gold, dict):
        for k, v in gold.items():
            sub = answer.get(k) if isinstance(answer, dict) else None
            out += list_lengths(v, sub, f"{path}.{k}" if path else k)
    elif isinstance(gold, list):
        has = isinstance(answer, list)
        out.append({"path": path, "gold": len(gold), "answer": len(answer) if has else None})
        for i, g in enumerate(gold):
            out += list_lengths(g, answer[i] if has and i < len(answer) else None, f"{path}[{i}]")
    return out


def _leaf_differences(gold: Any, answer: Any) -> list[str]:
    exp, got = flatten(gold), flatten(answer)
    wrong = [p for p, v in exp.items() if p not in got or not json_exact(got[p], v)]
    return wrong + [p for p in got if p not in exp]


def answer_kind(reading: RecordReading, parsed: Any, exact: bool, status: str,
                flags: Mapping[str, Any] | None = None) -> tuple[str, dict | None]:
    """(kind, detail) of one answer (see the module doc). ``parsed``: the extracted value (None
    when nothing parsed); ``flags``: the run's per-answer ``looped`` / ``capped`` / ``hit_eos``
    where recorded."""
    flags = flags or {}
    if exact:
        return "exact", None
    if reading.check.kind == "contradicts":
        return "gold_contradicts", {"line": reading.check.line, "message": reading.check.message}
    if status in (JSON_NOT_FOUND, SYNTAX_ERROR) or parsed is None:
        if flags.get("looped"):
            cause = "loop"
        elif flags.get("capped"):
            cause = "cap"
        elif flags.get("hit_eos"):
            cause = "eos"
        else:
            cause = "loop_or_cap"
        return "unparsed", {"cause": cause}
    if reading.check.kind == "not_template":
        return "unread", None
    posterior, why = reading.readings.explain(parsed)
    if posterior > 0:
        return "other_reading", {"posterior": posterior, "gold_posterior": reading.gold_posterior}
    lists = list_lengths(reading.gold, parsed)
    leaves = _leaf_differences(reading.gold, parsed)
    return "inconsistent", {
        "why": why,
        "lists": len(lists),
        "lost": [x for x in lists if x["answer"] is None or x["answer"] < x["gold"]],
        "gained": [x for x in lists if x["answer"] is not None and x["answer"] > x["gold"]],
        "leaves_differ": len(leaves), "leaves": leaves[:_SHOW_LEAVES],
    }


def score_rows(rows: Sequence[dict], readings: Mapping[str, RecordReading],
               flags: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add to each scored row (``id``, ``status``, ``parsed``, ``json_exact``) what its prompt
    allows and what kind its answer is: ``prompt_check`` (:data:`~scaling.data.readings.PROMPT_KINDS`),
    ``readings`` (answers that render to the prompt), ``ceiling``, ``reader_exact``,
    ``answer_kind`` and ``answer_detail``. ``flags``: per id, the run's stop flags."""
    flags = flags or {}
    for row in rows:
        r = readings[row["id"]]
        kind, detail = answer_kind(r, row.get("parsed"), bool(row.get("json_exact")), row.get("status", ""),
                                   flags.get(row["id"]))
        template = r.check.kind != "not_template"
        row.update(prompt_check=r.check.kind, readings=_json_count(r.readings.count) if template else None,
                   ceiling=r.ceiling,
                   reader_exact=r.reader_exact if template else None, answer_kind=kind, answer_detail=detail)


def _json_count(n: int) -> int | float:
    """A count as JSON carries it safely: exact up to 2**53, a float beyond (a complex prompt
    can have 1e20 readings, more than many JSON readers' integers hold)."""
    return n if n < 2 ** 53 else float(n)


# ----------------------------------------------------------------------------------- aggregates


def _quantiles(values: np.ndarray, alpha: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = quantile_interval(values, alpha)
    return [float(lo), float(hi)]


def _share_interval(exact: float, n: int, expected: float, level: float) -> list[float]:
    """JSONExact's Wilson interval over the ``n`` template records, divided by their expected
    ceiling: the ceiling of these prompts is computed from them, not sampled, so the share's
    width is JSONExact's, and like JSONExact's interval it stays open at 0 of n right (a
    percentile bootstrap of a ratio collapses to [0, 0] there)."""
    lo, hi = wilson_interval(exact * n, n, level)
    return [lo / expected, hi / expected]


def _group(rows: Sequence[Mapping[str, Any]], n_boot: int, seed: int, alpha: float) -> dict:
    """The ceiling and answer-kind block of one group of scored rows."""
    n = len(rows)
    template = np.array([r.get("ceiling") is not None for r in rows])
    ceiling = np.array([float(r["ceiling"]) if r.get("ceiling") is not None else 0.0 for r in rows])
    reader = np.array([float(bool(r.get("reader_exact"))) for r in rows])
    exact = np.array([float(bool(r.get("json_exact"))) for r in rows])
    # The resamples of scaling.metrics.aggregate (same seed, same n): the share's interval
    # pairs each resample's JSONExact with its own ceiling.
    idx = bootstrap_indices(n, n_boot, seed)
    w = template[idx].astype(float)
    m = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        boot_ceiling = (ceiling[idx] * w).sum(axis=1) / m
        boot_reader = (reader[idx] * w).sum(axis=1) / m
    k = int(template.sum())
    expected = float(ceiling[template].mean()) if k else None
    exact_t = float(exact[template].mean()) if k else None
    prompts = Counter(r.get("prompt_check") for r in rows)
    kinds = Counter(r.get("answer_kind") for r in rows)
    causes = Counter((r.get("answer_detail") or {}).get("cause") for r in rows if r.get("answer_kind") == "unparsed")
    inconsistent = [r["answer_detail"] for r in rows if r.get("answer_kind") == "inconsistent" and r.get("answer_detail")]
    return {
        "ceiling": {
            "n": k,
            "expected": expected, "ci": _quantiles(boot_ceiling, alpha) if k else None,
            "reader_exact": float(reader[template].mean()) if k else None,
            "reader_ci": _quantiles(boot_reader, alpha) if k else None,
            "determined": sum(1 for r in rows if r.get("readings") == 1 and r.get("prompt_check") != "contradicts"),
            "prompts": {p: prompts[p] for p in PROMPT_KINDS},
            "json_exact_of_ceiling": exact_t / expected if k and expected else None,
            "share_ci": _share_interval(exact_t, k, expected, 1 - alpha) if k and expected else None,
        },
        "answers": {
            "kinds": {a: kinds[a] for a in ANSWER_KINDS},
            "unparsed": {c: causes[c] for c in UNPARSED_CAUSES if causes[c]},
            "lists": {"compared": sum(d["lists"] for d in inconsistent),
                      "wrong_length": sum(len(d["lost"]) + len(d["gained"]) for d in inconsistent),
                      "answers_lose_or_add_items": sum(bool(d["lost"] or d["gained"]) for d in inconsistent)},
        },
    }


def summarise(rows: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``{"overall": B, "by_tier": {tier: B}, "by_schema": {schema: B}}`` over rows that carry
    :func:`score_rows`' fields, with ``B = {"ceiling": {...}, "answers": {...}}``:

    ``ceiling``: ``n`` (records whose prompt is the template), ``expected`` (mean ceiling) and
    ``ci``, ``reader_exact`` (the most probable reading is the gold) and ``reader_ci``,
    ``determined`` (one reading, the gold), ``prompts`` (records per prompt kind),
    ``json_exact_of_ceiling`` (JSONExact over those records / ``expected``) and ``share_ci``;
    ``ci`` and ``reader_ci`` are percentile bootstraps with :func:`scaling.metrics.aggregate`'s
    resamples; ``share_ci`` is JSONExact's Wilson interval over the ceiling (:func:`_share_interval`).
    ``answers``: ``kinds`` (answers per :data:`ANSWER_KINDS`), ``unparsed`` (per cause), and
    ``lists`` over the inconsistent answers (the gold's lists compared, those of the wrong
    length, answers with at least one)."""
    # Rows keep their order inside a group, so the resamples are the aggregate's; only the
    # groups are sorted (tiers in TIERS order, schemas by tier then id).
    order = {t: i for i, t in enumerate(TIERS)}
    rank = {r["schema_id"]: (order.get(r["tier"], len(order)), r["tier"], r["schema_id"]) for r in rows}
    by_tier: dict[str, list] = {}
    by_schema: dict[str, list] = {}
    for r in rows:
        by_tier.setdefault(r["tier"], []).append(r)
        by_schema.setdefault(r["schema_id"], []).append(r)
    return {"overall": _group(rows, n_boot, seed, alpha),
            "by_tier": {t: _group(by_tier[t], n_boot, seed, alpha)
                        for t in sorted(by_tier, key=lambda t: (order.get(t, len(order)), t))},
            "by_schema": {s: _group(by_schema[s], n_boot, seed, alpha) for s in sorted(by_schema, key=rank.get)}}


def add_summaries(aggregate: dict, rows: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0) -> dict:
    """Put :func:`summarise`'s blocks into a :func:`scaling.metrics.aggregate` result, beside
    each group's metrics (``M["ceiling"]``, ``M["answers"]``)."""
    blocks = summarise(rows, n_boot, seed)
    aggregate["overall"].update(blocks["overall"])
    for level in ("by_tier", "by_schema"):
        for key, m in aggregate[level].items():
            m.update(blocks[level][key])
    return aggregate


# ------------------------------------------------------------------------------- the reader, CLI


def reader_predictions(readings: Mapping[str, RecordReading]) -> list[dict]:
    """The most probable reading of every prompt as predictions (``id``, ``output``); an
    unreadable prompt gets an empty output (scored as no JSON)."""
    return [{"id": rid, "output": "" if r.readings.best is None else json.dumps(r.readings.best, ensure_ascii=False)}
            for rid, r in readings.items()]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def ceiling_table(readings: Mapping[str, RecordReading], by_schema: bool = True) -> str:
    """Markdown: per tier (and schema) the records, how their golds stand to their prompts, the
    records one answer fits, the reader's exact matches and the expected ceiling."""
    rows = list(readings.values())
    head = ["group", "n", "gold contradicts the prompt", "key order / number format only", "not the template",
            "only one answer fits", "most probable reading = gold", "expected ceiling %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(name: str, rs: list[RecordReading]) -> str:
        kinds = Counter(r.check.kind for r in rs)
        read = [r for r in rs if r.ceiling is not None]
        reader = sum(r.reader_exact for r in rs)
        ceiling = sum(r.ceiling for r in read) / len(read) if read else None
        return (f"| {name} | {len(rs)} | {kinds['contradicts']} | {kinds['order_or_format']} | {kinds['not_template']} "
                f"| {sum(r.determined for r in rs)} | {reader} ({_pct(reader / len(read) if read else None)}%) "
                f"| {_pct(ceiling)} |")

    order = {t: i for i, t in enumerate(TIERS)}
    tiers = sorted({r.tier for r in rows}, key=lambda t: order.get(t, 9))
    lines += [line(t, [r for r in rows if r.tier == t]) for t in tiers] + [line("all", rows)]
    if by_schema:
        lines += ["", "| schema | " + " | ".join(head[1:]) + " |", "|" + "---|" * len(head)]
        schemas = sorted({(order.get(r.tier, 9), r.schema_id) for r in rows})
        lines += [line(s, [r for r in rows if r.schema_id == s]) for _, s in schemas]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.ceiling", description=__doc__.splitlines()[0])
    ap.add_argument("data", help="test JSONL file (EdgeJSON record format)")
    ap.add_argument("--schemas", help="schemas directory; default: ../schemas next to the data file's folder")
    ap.add_argument("--reader", metavar="OUT", help="write the most probable reading of every prompt here "
                                                    "(JSONL with id and output, for python -m scaling.score)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per record instead of the tables")
    args = ap.parse_args(argv)
    schemas_dir = Path(args.schemas) if args.schemas else Path(args.data).resolve().parent.parent / "schemas"
    try:
        schemas = load_schemas(schemas_dir)
        readings = read_test(read_records(args.data, schemas), schemas)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.reader:
        write_jsonl(Path(args.reader), reader_predictions(readings))
    if args.json:
        for r in readings.values():
            print(json.dumps({"id": r.id, "schema_id": r.schema_id, "tier": r.tier, "prompt_check": r.check.kind,
                              "message": r.check.message, "line": r.check.line, "readings": _json_count(r.readings.count),
                              "determined": r.determined, "gold_posterior": r.gold_posterior, "ceiling": r.ceiling,
                              "reader_exact": r.reader_exact,
                              "lists": [vars(x) for x in r.readings.lists if x.count > 1]}))
        return 0
    print(f"{len(readings)} records of {args.data}: what the prompt determines")
    print()
    print(ceiling_table(readings), end="")
    odd = [r for r in readings.values() if r.check.kind != "renders"]
    if odd:
        print()
        print("Records whose gold is not the template's rendering of the prompt:")
        for r in odd:
            print(f"- {r.id} ({r.check.kind}): {r.check.message}")
    if args.reader:
        print(f"wrote {args.reader}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

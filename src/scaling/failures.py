"""Where a run's answers go wrong: per-schema scores, failure statuses and leaf-level errors.

    python -m scaling.failures outputs/reference/edgejson_v3/smol135_gguf-full-greedy [RUN_DIR ...] [--json]
    python -m scaling.failures RUN_DIR RUN_DIR ... --table complex      # one Markdown row per run

A run folder holds ``results.json`` and ``predictions.jsonl`` (a job folder, or one exported
with :func:`scaling.results.export_reference`). The test records (prompts and reference
answers) are read from the data files ``results.json`` names (a relative name is looked up
from the current folder, then under ``$EDGEJSON_DIR``), or from ``--data DIR``; a file whose
sha256 is not the one ``results.json`` recorded is refused.

What the prompt determines (:mod:`scaling.ceiling`): with the schemas beside the test file
(``<root>/schemas``, or ``data.schemas_dir``), each tier's ceiling (the best JSONExact any reader
of its prompts can expect), JSONExact as a share of it, and every answer sorted by kind: exact,
the gold contradicts the prompt, unparsed (loop or length cap), another reading of the prompt,
or inconsistent with it (and how many of the gold's lists it gives the wrong length).

The leaf table answers "is the tier limited by copying or by computing?". Every leaf of a
reference answer (:func:`scaling.metrics.flatten`) is classed by whether its value can be
copied from the prompt (:func:`appears_in_prompt`) and scored as ``correct`` (the answer
has that path with an equal value), ``wrong`` (the path with another value) or ``missing``
(no such path, or no parsable answer at all).

Each share of leaves right comes with a 95% bootstrap interval over *answers*: a replicate
redraws the tier's examples with replacement and takes the share over all leaves of the
drawn answers. Leaves of one answer are not independent (one dropped array item shifts
every later one), so resampling leaves would give intervals far too narrow. JSONExact per
tier, a proportion of answers, has a Wilson interval (:mod:`scaling.stats`).

A run carrying complex+ (:mod:`scaling.complex_plus`) gets the tier ``complex+`` after the others:
its statuses, JSONExact, leaves (from ``complex_plus.jsonl`` and the records its parts recorded,
drawn on their own) and what its prompts determine; ``--table complex+`` compares runs on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from scaling.ceiling import ANSWER_KINDS, answer_kind, read_test, summarise
from scaling.complex_plus import COMPLEX_PLUS_TIER, has_complex_plus, read_pooled, tier_block
from scaling.data import DataError, load_schemas, read_records
from scaling.data.io import TIERS
from scaling.data.locate import find_recorded_file
from scaling.errors import LocatedError
from scaling.metrics import extract_json, flatten, json_exact, metric_interval
from scaling.stats import ratio_interval, stratified_weights, wilson_interval
from scaling.results import RunFolder, fraction_label, model_key, read_jsonl, sha256_file, train_data, train_fraction

OUTCOMES = ("correct", "wrong", "missing")

#: The leaf groups a share is reported for: (table, group) as :meth:`LeafSummary.rate` takes them.
GROUPS = (("all", "all leaves"), ("copy", "copyable"), ("copy", "not copyable"), ("half", "first half"),
          ("half", "second half"))

#: Bootstrap defaults, those of :func:`scaling.metrics.aggregate` (results.json's intervals).
N_BOOT = 1000
SEED = 0


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


def _group(table: str, leaf: Leaf) -> str:
    if table == "copy":
        return "copyable" if leaf.copyable else "not copyable"
    if table == "half":
        return "first half" if leaf.position < 0.5 else "second half"
    return "all leaves"


@dataclass(frozen=True)
class LeafSummary:
    """Leaf outcomes counted by tier, copyability and position (first vs second half), and
    the bootstrap interval of each share of leaves right."""

    counts: Mapping[tuple[str, str, str], int]   # (tier, "copyable"|"not copyable", outcome) -> n
    by_half: Mapping[tuple[str, str, str], int]  # (tier, "first half"|"second half", outcome) -> n
    intervals: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    """(tier, group) -> 95% interval of the share right, over answers (groups: :data:`GROUPS`)."""
    n_answers: Mapping[str, int] = field(default_factory=dict)
    """tier -> answers (examples) the shares are over."""
    n_boot: int = N_BOOT
    seed: int = SEED

    def rate(self, table: str, tier: str, group: str) -> tuple[float, int]:
        """(share correct, number of leaves) of one row; ``table="all"`` for every leaf of the tier."""
        if table == "all":
            keys = [(tier, g, o) for g in ("copyable", "not copyable") for o in OUTCOMES]
            total = sum(self.counts.get(k, 0) for k in keys)
            right = sum(self.counts.get((tier, g, "correct"), 0) for g in ("copyable", "not copyable"))
            return (right / total if total else float("nan")), total
        counts = self.counts if table == "copy" else self.by_half
        total = sum(counts.get((tier, group, o), 0) for o in OUTCOMES)
        return (counts.get((tier, group, "correct"), 0) / total if total else float("nan")), total

    def ci(self, tier: str, group: str) -> tuple[float, float] | None:
        """The 95% interval of a share right (None: no leaves in that group)."""
        return self.intervals.get((tier, group))


def leaf_share_intervals(rows: Sequence[tuple[str, Sequence[Leaf]]], n_boot: int = N_BOOT, seed: int = SEED,
                         level: float = 0.95) -> dict[tuple[str, str], tuple[float, float]]:
    """Percentile bootstrap intervals of the share of leaves right, per (tier, group).

    ``rows``: (tier, leaves of one answer). The resampled unit is the answer: each replicate
    draws every tier's answers with replacement (:func:`scaling.stats.stratified_weights`,
    so a tier keeps its count) and its share is right leaves / leaves over the drawn answers,
    a ratio of sums (not :func:`scaling.stats.bootstrap_ci`'s mean of per-example values,
    which would weigh a 5-leaf answer like a 90-leaf one). One draw serves every group, so
    the groups of a tier are resampled jointly. A replicate that drew no leaf of a group
    (rare groups, e.g. not copyable) is left out of that group's interval. Where every
    answer has the same share (no leaf right anywhere, say) the bootstrap collapses to a
    point; the interval is then Wilson's bound with the answers as the units
    (:func:`scaling.stats.ratio_interval`). Deterministic for a given ``seed``."""
    if not rows:
        return {}
    tiers = [tier for tier, _ in rows]
    weights = stratified_weights(tiers, n_boot, np.random.default_rng(seed))
    out = {}
    for tier in dict.fromkeys(tiers):
        idx = np.flatnonzero(np.asarray(tiers) == tier)
        w = weights[:, idx]
        for table, group in GROUPS:
            right = np.zeros(len(idx))
            total = np.zeros(len(idx))
            for j, i in enumerate(idx):
                for leaf in rows[i][1]:
                    if _group(table, leaf) == group:
                        total[j] += 1
                        right[j] += leaf.outcome == "correct"
            if not total.sum():
                continue
            out[(tier, group)] = ratio_interval(w, right, total, level)
    return out


def summarise_leaves(rows: Iterable[tuple[str, list[Leaf]]], n_boot: int = N_BOOT, seed: int = SEED) -> LeafSummary:
    """``rows``: (tier, leaves of one example)."""
    rows = list(rows)
    counts: Counter = Counter()
    by_half: Counter = Counter()
    for tier, leaves in rows:
        for leaf in leaves:
            counts[(tier, _group("copy", leaf), leaf.outcome)] += 1
            by_half[(tier, _group("half", leaf), leaf.outcome)] += 1
    return LeafSummary(dict(counts), dict(by_half), leaf_share_intervals(rows, n_boot, seed),
                       dict(Counter(tier for tier, _ in rows)), n_boot, seed)


# ------------------------------------------------------------------------------- a run


class FailuresError(LocatedError, ValueError):
    """A run folder or data file that cannot be read; names the file (and line, and field)."""


def _test_file(results: Mapping[str, Any], data_dir: Path | None, run: Path) -> Path:
    """The test records a run was scored on: ``--data``'s ``<version>/test.jsonl``, else the
    test file ``data.files`` names (relative names from the current folder, then under
    ``$EDGEJSON_DIR`` in place of ``data.root``: committed runs name ``../shared/edgejson/...``
    as seen from the checkout they ran in). Checked against the sha256 recorded there."""
    where = run / "results.json"
    data = results.get("data") or {}
    files = {str(k): v for k, v in (data.get("files") or {}).items()}
    cfg_data = (results.get("config") or {}).get("data") or {}
    named = [k for k in files if k == cfg_data.get("test_file")] or [k for k in files if k.endswith("test.jsonl")]
    name = named[0] if named else None
    if data_dir is None:
        if name is None:
            raise FailuresError("field data.files names no test.jsonl; pass --data", where)
        return find_recorded_file(name, data.get("root") or cfg_data.get("root"), files.get(name),
                                  f"{where}: field data.files", error=FailuresError, what="test file",
                                  how="the run was scored on another file")
    path = data_dir / str(data.get("version", "v3")) / "test.jsonl"
    if not path.is_file():
        raise FailuresError(f"no such file (--data {data_dir} holds <version>/test.jsonl; "
                            f"{where} says version {data.get('version', 'v3')!r})", path)
    recorded = files.get(name) if name else None
    if isinstance(recorded, str) and len(recorded) == 64 and (actual := sha256_file(path)) != recorded:
        raise FailuresError(f"sha256 {actual[:12]} is not the {recorded[:12]} {where} recorded "
                            f"for {name}: the run was scored on another file", path)
    return path


def _tier_exact(results: Mapping[str, Any],
                preds: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, tuple[float, float], str]]:
    """tier -> (JSONExact, 95% Wilson interval, where the share came from): results.json's
    ``metrics.by_tier`` when it has the tier, else the predictions' ``json_exact``."""
    by_tier = ((results.get("metrics") or {}).get("by_tier")) or {}
    values: dict[str, list[float]] = defaultdict(list)
    for row in preds:
        values[row["tier"]].append(float(bool(row.get("json_exact"))))
    out = {}
    for tier, vals in values.items():
        m = by_tier.get(tier) or {}
        ci = metric_interval(m, "json_exact")
        if ci is not None and isinstance(m.get("json_exact"), (int, float)):
            out[tier] = (float(m["json_exact"]), ci, "results.json")
        else:
            out[tier] = (sum(vals) / len(vals), wilson_interval(sum(vals), len(vals)), "predictions")
    return out


@dataclass(frozen=True)
class RunInfo:
    """What a run was, as the comparison table labels it (from results.json)."""

    model: str
    """:func:`scaling.results.model_key`: ``model.key``, with ``_d<k>`` for a depth rung, ``_g<k>`` for a
    grown one."""
    blocks: str
    """Blocks kept of the model's, ``"8/30"``, or blocks added, ``"30+8"`` (``"all"`` when results.json
    has neither ``model.depth`` nor ``model.grow``)."""
    seed: int | None
    train: str
    """Training data and share of its records (``"v3, 100%"``); ``"—"`` for a job not fine-tuned."""


def _run_info(results: Mapping[str, Any]) -> RunInfo:
    model = results.get("model") or {}
    depth = model.get("depth")
    blocks = "all"
    if isinstance(depth, dict) and isinstance(depth.get("kept"), list):
        blocks = f"{len(depth['kept'])}/{depth.get('n_blocks', '?')}"
    grow = model.get("grow")
    if isinstance(grow, dict) and isinstance(grow.get("add"), int):
        blocks = f"{grow.get('n_blocks', '?')}+{grow['add']}"
    config = results.get("config") or {}
    method = (results.get("finetune") or {}).get("method") or (config.get("finetune") or {}).get("method")
    fraction = (results.get("data") or {}).get("train_fraction")
    fraction = float(fraction) if isinstance(fraction, (int, float)) and not isinstance(fraction, bool) \
        else train_fraction(config)
    train = "—" if method in (None, "none") else f"{train_data(config)}, {fraction_label(fraction)}"
    seed = results.get("seed")
    return RunInfo(model=model_key(model), blocks=blocks, seed=seed if isinstance(seed, int) else None, train=train)


@dataclass(frozen=True)
class RunFailures:
    """What :func:`analyse_run` finds in one run."""

    name: str
    n: int
    statuses: Mapping[str, Mapping[str, int]]          # tier -> status -> n
    by_schema: Sequence[tuple[str, str, int, float, float, float]]  # schema, tier, n, exact, F1, compliance
    leaves: LeafSummary
    examples: Sequence[tuple[str, str, str]]           # (id, status, output tail) of failures, complex first
    info: RunInfo = RunInfo("?", "all", None, "—")
    exact: Mapping[str, tuple[float, tuple[float, float], str]] = field(default_factory=dict)
    """tier -> (JSONExact, 95% interval, ``"results.json"`` | ``"predictions"``)."""
    prompt: Mapping[str, Any] | None = None
    """:func:`scaling.ceiling.summarise` of the answers (``overall``, ``by_tier``, ``by_schema``:
    ``ceiling`` and ``answers``); None when no schemas were found (``prompt_note`` says why)."""
    prompt_note: str = ""
    kinds: Mapping[str, str] = field(default_factory=dict)
    """id -> the answer's kind (:data:`scaling.ceiling.ANSWER_KINDS`)."""


def _schemas_dir(results: Mapping[str, Any], test_path: Path) -> Path:
    """The schemas a run's test file goes with: ``data.schemas_dir`` when the config names one
    that exists, else ``schemas/`` beside the test file's folder (EdgeJSON's layout)."""
    named = ((results.get("config") or {}).get("data") or {}).get("schemas_dir")
    if named and Path(named).is_dir():
        return Path(named)
    return test_path.resolve().parent.parent / "schemas"


def _prompt_analysis(results: Mapping[str, Any], test_path: Path, preds: Sequence[Mapping[str, Any]],
                     n_boot: int, seed: int) -> tuple[dict | None, str, dict[str, str]]:
    """(summary, note, kind per id): each answer's kind and each tier's ceiling, from the test
    records read under their schemas; (None, why, {}) when the schemas are not there."""
    folder = _schemas_dir(results, test_path)
    if not folder.is_dir():
        return None, f"no schemas at {folder}: the ceiling and the answers' kinds are left out", {}
    try:
        schemas = load_schemas(folder)
        readings = read_test(read_records(test_path, schemas), schemas)
    except DataError as e:
        return None, f"the ceiling and the answers' kinds are left out: {e}", {}
    rows, kinds = [], {}
    for p in preds:
        reading = readings.get(p["id"])
        if reading is None:
            continue
        ex = extract_json(p["output"] or "")
        kind, detail = answer_kind(reading, ex.value if ex.ok else None, bool(p.get("json_exact")),
                                   p.get("status", ""), p)
        rows.append({"tier": p["tier"], "schema_id": p.get("schema_id") or reading.schema_id,
                     "json_exact": bool(p.get("json_exact")), "prompt_check": reading.check.kind,
                     "readings": reading.readings.count, "ceiling": reading.ceiling,
                     "reader_exact": reading.reader_exact, "answer_kind": kind, "answer_detail": detail})
        kinds[p["id"]] = kind
    if not rows:
        return None, "no prediction's id is in the test file", {}
    return summarise(rows, n_boot, seed), "", kinds


def analyse_run(run: str | Path, data_dir: str | Path | None = None, n_examples: int = 3, n_boot: int = N_BOOT,
                seed: int = SEED) -> RunFailures:
    run = Path(run)
    if not run.is_dir():
        raise FailuresError(f"{'not a run folder' if run.exists() else 'no such folder'} "
                            "(expected a folder with results.json and predictions.jsonl)", run)
    folder = RunFolder(run)
    results = folder.results_json(FailuresError)
    preds = folder.predictions(FailuresError, empty="no predictions")
    test_path = _test_file(results, Path(data_dir) if data_dir else None, run)
    records = {r["id"]: r for r in read_jsonl(test_path, FailuresError)}
    statuses: dict[str, Counter] = defaultdict(Counter)
    per_schema: dict[tuple[str, str], list[dict]] = defaultdict(list)
    leaf_rows = []
    for row in preds:
        n = row["line"]
        for name in ("tier", "status", "output"):
            if name not in row:
                raise FailuresError(f"field {name!r} missing", run / "predictions.jsonl", n)
        rec = records.get(row["id"])
        if rec is None:
            raise FailuresError(f"{row['id']!r} is not in {test_path}", run / "predictions.jsonl", n, "id")
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
    prompt, note, kinds = _prompt_analysis(results, test_path, preds, n_boot, seed)
    leaves, exact = summarise_leaves(leaf_rows, n_boot, seed), _tier_exact(results, preds)
    if has_complex_plus(run, results):
        leaves = _add_complex_plus(run, results, data_dir, n_boot, seed, statuses, leaves, exact, prompt)
    return RunFailures(name=run.name, n=len(preds), statuses={t: dict(c) for t, c in statuses.items()},
                       by_schema=by_schema, leaves=leaves, examples=examples, info=_run_info(results), exact=exact,
                       prompt=prompt, prompt_note=note, kinds=kinds)


def _add_complex_plus(run: Path, results: Mapping[str, Any], data_dir, n_boot: int, seed: int,
                      statuses: dict[str, Counter], leaves: LeafSummary, exact: dict, prompt: dict | None) -> LeafSummary:
    """Add the tier complex+ to a run's statuses, JSONExact, prompt analysis (from its
    ``metrics.complex_plus``) and leaves (its 145 answers, drawn apart so the other tiers' draws
    stay as they were); the leaves with it are returned."""
    try:
        answers, records = read_pooled(run, results, data_dir)
    except DataError as e:
        raise FailuresError(e.message, e.file, e.line, e.field) from None
    rows = []
    for a in answers:
        statuses[COMPLEX_PLUS_TIER][a["status"]] += 1
        extraction = extract_json(a["output"] or "")
        rec = records[a["id"]]
        rows.append((COMPLEX_PLUS_TIER, leaf_outcomes(rec.expected_output, extraction.value if extraction.ok else None,
                                                      rec.prompt)))
    pooled = summarise_leaves(rows, n_boot, seed)
    block = tier_block(results["metrics"], COMPLEX_PLUS_TIER)
    exact[COMPLEX_PLUS_TIER] = (float(block["json_exact"]), metric_interval(block, "json_exact"), "results.json")
    if prompt is not None and isinstance(block.get("ceiling"), Mapping):
        prompt["by_tier"][COMPLEX_PLUS_TIER] = {"ceiling": block["ceiling"], "answers": block["answers"]}
    return LeafSummary({**leaves.counts, **pooled.counts}, {**leaves.by_half, **pooled.by_half},
                       {**leaves.intervals, **pooled.intervals}, {**leaves.n_answers, **pooled.n_answers},
                       leaves.n_boot, leaves.seed)


def _tiers(r: RunFailures) -> tuple[str, ...]:
    """The tiers a run reports, complex+ last where it carries it."""
    return TIERS + ((COMPLEX_PLUS_TIER,) if COMPLEX_PLUS_TIER in r.statuses else ())


# ------------------------------------------------------------------------------ output


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _share_cell(leaves: LeafSummary, tier: str, table: str, group: str, count: bool = True) -> str:
    """``"48.0 [40.2, 55.9] (600)"``: percent right, its interval, leaves (``"—"``: none)."""
    rate, total = leaves.rate(table, tier, group)
    if not total:
        return "—"
    ci = leaves.ci(tier, group)
    cell = _pct(rate) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")
    return cell + (f" ({total:,})" if count else "")


def format_markdown(runs: Sequence[RunFailures]) -> str:
    lines = []
    for r in runs:
        lines += [f"### {r.name} ({r.n} examples)", "", "Statuses by tier:", ""]
        for tier in _tiers(r):
            if tier in r.statuses:
                lines.append(f"- {tier}: " + ", ".join(f"{s} {k}" for s, k in sorted(r.statuses[tier].items())))
        lines += ["", "| schema | tier | n | JSONExact % | Field F1 | compliance % |", "|---|---|---|---|---|---|"]
        for sid, tier, k, ex, f1, comp in r.by_schema:
            lines.append(f"| {sid} | {tier} | {k} | {100 * ex:.0f} | {f1:.3f} | {100 * comp:.0f} |")
        lines += ["", "Reference-answer leaves the answer gets right: % right [95% interval] (leaves). The "
                  f"intervals redraw the tier's answers, not single leaves ({r.leaves.n_boot} draws, "
                  f"seed {r.leaves.seed}).", "",
                  "| tier | answers | all leaves | copyable from the prompt | not copyable | first half of the answer "
                  "| second half |",
                  "|---|---|---|---|---|---|---|"]
        for tier in _tiers(r):
            cells = [_share_cell(r.leaves, tier, table, group) for table, group in GROUPS]
            if any(c != "—" for c in cells):
                lines.append(f"| {tier} | {r.leaves.n_answers.get(tier, 0)} | " + " | ".join(cells) + " |")
        lines += ["", *prompt_lines(r)]
        lines += ["", "Failed answers, last 160 characters:", ""]
        lines += [f"- `{i}` ({s}{', ' + r.kinds[i].replace('_', ' ') if i in r.kinds else ''}): "
                  f"`{json.dumps(t)[1:-1]}`" for i, s, t in r.examples]
        lines.append("")
    return "\n".join(lines)


def _ci_pct(v: float | None, ci: Sequence[float] | None) -> str:
    if v is None:
        return "—"
    return _pct(v) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")


#: The answers' kinds as the tables head them.
KIND_LABELS = {"exact": "exact", "gold_contradicts": "gold contradicts the prompt", "unparsed": "unparsed",
               "other_reading": "another reading of the prompt", "inconsistent": "inconsistent with the prompt",
               "unread": "prompt not the template"}


def prompt_lines(r: RunFailures) -> list[str]:
    """What the prompt determines, per tier: the ceiling, JSONExact as a share of it, and the
    answers by kind (Markdown)."""
    if r.prompt is None:
        return [f"What the prompt determines: {r.prompt_note}"]
    lines = ["What the prompt determines: the ceiling is the best JSONExact any reader of the prompts can expect "
             "(95% bootstrap intervals over answers); answers by kind; lists: the gold's lists an inconsistent "
             "answer gives the wrong length, of those compared.", "",
             "| tier | answers | JSONExact % | ceiling % | JSONExact / ceiling % | "
             + " | ".join(KIND_LABELS[k] for k in ANSWER_KINDS) + " | lists of the wrong length |",
             "|" + "---|" * (6 + len(ANSWER_KINDS))]
    groups = [(t, m) for t, m in r.prompt["by_tier"].items()] + [("all", r.prompt["overall"])]
    for tier, m in groups:
        c, a = m["ceiling"], m["answers"]
        n = sum(a["kinds"].values())
        exact = a["kinds"]["exact"] / n if n else None
        unparsed = a["kinds"]["unparsed"]
        causes = ", ".join(f"{k} {v}" for k, v in a["unparsed"].items())
        cells = [str(a["kinds"][k]) for k in ANSWER_KINDS]
        cells[ANSWER_KINDS.index("unparsed")] = f"{unparsed}" + (f" ({causes})" if causes else "")
        lines.append(f"| {tier} | {n} | {_ci_pct(exact, None)} | {_ci_pct(c['expected'], c['ci'])} | "
                     f"{_ci_pct(c['json_exact_of_ceiling'], c['share_ci'])} | " + " | ".join(cells)
                     + f" | {a['lists']['wrong_length']} of {a['lists']['compared']} |")
    return lines


def _share_doc(leaves: LeafSummary, tier: str, table: str, group: str) -> dict | None:
    rate, total = leaves.rate(table, tier, group)
    if not total:
        return None
    ci = leaves.ci(tier, group)
    return {"share": rate, "ci": list(ci) if ci else None, "leaves": total}


def run_document(r: RunFailures) -> dict:
    """One run as ``--json`` writes it (shares as fractions in [0, 1])."""
    leaves = {}
    for tier in _tiers(r):
        if tier not in r.leaves.n_answers:
            continue
        groups = {group: _share_doc(r.leaves, tier, table, group) for table, group in GROUPS}
        outcomes = {o: sum(r.leaves.counts.get((tier, g, o), 0) for g in ("copyable", "not copyable"))
                    for o in OUTCOMES}
        leaves[tier] = {"answers": r.leaves.n_answers[tier], "outcomes": outcomes,
                        "share_right": {g: d for g, d in groups.items() if d is not None}}
    order = {t: i for i, t in enumerate(TIERS)}
    tiers = sorted(set(r.statuses) | set(r.exact), key=lambda t: (order.get(t, len(order)), t))
    return {
        "name": r.name, "n": r.n, "model": r.info.model, "blocks": r.info.blocks, "seed": r.info.seed,
        "train": r.info.train, "statuses": {t: r.statuses[t] for t in tiers if t in r.statuses},
        "json_exact": {t: {"value": r.exact[t][0], "ci": list(r.exact[t][1]), "ci_from": r.exact[t][2]}
                       for t in tiers if t in r.exact},
        "by_schema": [{"schema_id": sid, "tier": tier, "n": k, "json_exact": ex, "field_f1": f1,
                       "schema_compliance": comp} for sid, tier, k, ex, f1, comp in r.by_schema],
        "leaves": leaves,
        "bootstrap": {"unit": "answer", "n_boot": r.leaves.n_boot, "seed": r.leaves.seed, "level": 0.95},
        "failed_examples": [{"id": i, "status": s, "kind": r.kinds.get(i), "output_tail": t} for i, s, t in r.examples],
        "prompt": r.prompt, "prompt_note": r.prompt_note or None,
    }


#: The leaf groups the comparison table shows, in column order.
TABLE_GROUPS = (("all", "all leaves"), ("half", "first half"), ("half", "second half"))


def table_rows(runs: Sequence[RunFailures], tier: str) -> list[dict]:
    """One row per run for :func:`format_table` and ``--table --json``."""
    rows = []
    for r in runs:
        exact = r.exact.get(tier)
        rows.append({
            "run": r.name, "model": r.info.model, "blocks": r.info.blocks, "seed": r.info.seed,
            "train": r.info.train, "tier": tier, "answers": r.leaves.n_answers.get(tier, 0),
            "leaves": r.leaves.rate("all", tier, "all leaves")[1],
            "json_exact": None if exact is None else {"value": exact[0], "ci": list(exact[1]), "ci_from": exact[2]},
            "share_right": {group: _share_doc(r.leaves, tier, table, group) for table, group in TABLE_GROUPS},
            "prompt": (r.prompt or {}).get("by_tier", {}).get(tier),
        })
    return rows


def format_table(runs: Sequence[RunFailures], tier: str) -> str:
    """A Markdown table, one row per run: JSONExact and leaves right (all, first half and
    second half of each reference answer) of one tier, with 95% intervals."""
    head = ["run", "model", "blocks", "seed", "train", "answers (leaves)", "JSONExact %", "leaves right %",
            "first half %", "second half %", "ceiling %", "JSONExact / ceiling %",
            "wrong: unparsed / inconsistent / other reading / gold contradicts"]
    lines = [f"{tier} tier: JSONExact (95% Wilson intervals) and the share of reference-answer leaves right (95% "
             "bootstrap intervals over answers).", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sources = set()
    for r, row in zip(runs, table_rows(runs, tier)):
        ex = row["json_exact"]
        if ex is not None:
            sources.add(ex["ci_from"])
        cells = [row["run"], row["model"], row["blocks"], "?" if row["seed"] is None else str(row["seed"]),
                 row["train"], f"{row['answers']} ({row['leaves']:,})",
                 "—" if ex is None else f"{_pct(ex['value'])} [{_pct(ex['ci'][0])}, {_pct(ex['ci'][1])}]"]
        cells += [_share_cell(r.leaves, tier, table, group, count=False) for table, group in TABLE_GROUPS]
        p = row["prompt"]
        if p is None:
            cells += ["—", "—", "—"]
        else:
            c, k = p["ceiling"], p["answers"]["kinds"]
            cells += [_ci_pct(c["expected"], c["ci"]), _ci_pct(c["json_exact_of_ceiling"], c["share_ci"]),
                      " / ".join(str(k[x]) for x in ("unparsed", "inconsistent", "other_reading", "gold_contradicts"))]
        lines.append("| " + " | ".join(cells) + " |")
    boot = runs[0].leaves if runs else LeafSummary({}, {})
    lines += ["", f"Leaf intervals: {boot.n_boot} draws of the tier's answers, seed {boot.seed} (Wilson's bound, "
              "answers as units, where every answer has the same share). JSONExact: the share "
              + ("results.json records" if sources <= {"results.json"} else
                 "results.json records, else predictions.jsonl's") + ", Wilson intervals."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.failures", description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders with results.json and predictions.jsonl")
    ap.add_argument("--data", type=Path, default=None,
                    help="dataset root (holds <version>/test.jsonl); default: the file results.json names")
    ap.add_argument("--examples", type=int, default=3, help="failed answers to show per run")
    ap.add_argument("--table", nargs="?", const="complex", default=None, choices=(*TIERS, COMPLEX_PLUS_TIER),
                    metavar="TIER",
                    help="one Markdown row per run for TIER (default complex): JSONExact and leaves right "
                         "(all, first half, second half) with intervals")
    ap.add_argument("--json", action="store_true", help="write JSON instead of Markdown")
    ap.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap draws (default {N_BOOT})")
    ap.add_argument("--seed", type=int, default=SEED, help=f"bootstrap seed (default {SEED})")
    args = ap.parse_args(argv)
    if args.n_boot < 1:
        ap.error(f"--n-boot {args.n_boot}: expected at least 1")
    try:
        runs = [analyse_run(run, args.data, args.examples, args.n_boot, args.seed) for run in args.runs]
    except FailuresError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.table and args.json:
        print(json.dumps({"tier": args.table, "bootstrap": {"unit": "answer", "n_boot": args.n_boot,
                                                            "seed": args.seed, "level": 0.95},
                          "rows": table_rows(runs, args.table)}, indent=2))
    elif args.table:
        print(format_table(runs, args.table), end="")
    elif args.json:
        print(json.dumps([run_document(r) for r in runs], indent=2))
    else:
        print(format_markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

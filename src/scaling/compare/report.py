"""A comparison of runs, written as ``report.md``, ``tables.tex``, ``deltas.pdf|png`` and
``compare.json`` (every number) under ``outputs/compare/<name>/``.

Scores are shown in percent and deltas in points (Field F1 too, as the study reports it),
each delta with its paired-bootstrap interval (:mod:`scaling.compare.deltas`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling.compare.datacheck import (
    VersionCheck,
    VersionDiff,
    check_version,
    common_stats,
    diff_to_json,
    diff_versions,
    field_changes,
    pooled,
)
from scaling.compare.datacheck import to_json as check_to_json
from scaling.compare.deltas import OTHERS, Delta, GroupComparison, PairComparison, compare_runs
from scaling.compare.runs import METRIC_NAMES, METRICS, Alignment, CompareError, Run, align, complex_plus_ids, load_run
from scaling.complex_plus import COMPLEX_PLUS_TIER, tier_block
from scaling.data import CHECKS
from scaling.fit.tables import Table
from scaling.results import atomic_write_json, atomic_write_text
from scaling.stats import OVERALL, proportion_interval

FIGURE = "deltas"
FORMATS = ("pdf", "png")


@dataclass(frozen=True)
class Comparison:
    """Everything a comparison computed."""

    name: str
    command: str
    runs: Sequence[Run]
    alignment: Alignment
    pairs: Sequence[PairComparison]
    groups: Mapping[str, Sequence[str]]
    checks: Sequence[VersionCheck]
    diffs: Sequence[VersionDiff]
    n_boot: int
    seed: int
    level: float
    intersect: bool


# ----------------------------------------------------------------------------- build


def parse_group(text: str) -> tuple[str, list[str]]:
    """``NAME=schema,schema,...`` of ``--group``."""
    name, sep, members = text.partition("=")
    name = name.strip()
    schemas = [s.strip() for s in members.split(",") if s.strip()]
    if not sep or not name or not schemas:
        raise CompareError(f"--group {text!r}: expected NAME=SCHEMA[,SCHEMA...] (e.g. affected=invoice,order_details)")
    if name in (OVERALL, OTHERS):
        raise CompareError(f"--group {text!r}: {name!r} is reserved (the schemas no group lists are {OTHERS!r})")
    return name, schemas


def check_groups(groups: Mapping[str, Sequence[str]], schemas: Sequence[str], tiers: Sequence[str]) -> None:
    """Every schema a group names is among the compared examples and in one group only."""
    present = set(schemas)
    owner: dict[str, str] = {}
    for name, members in groups.items():
        if name in {*tiers, COMPLEX_PLUS_TIER}:
            raise CompareError(f"--group {name}: a tier has that name; choose another")
        for s in members:
            if s not in present:
                raise CompareError(f"--group {name}: schema {s!r} has no example in the compared runs "
                                   f"(they have: {', '.join(sorted(present))})")
            if s in owner:
                raise CompareError(f"--group {name}: schema {s!r} is already in group {owner[s]!r}")
            owner[s] = name


def build(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None, *, name: str | None = None,
          groups: Mapping[str, Sequence[str]] | None = None, intersect: bool = False, all_pairs: bool = False,
          data_checks: Sequence[tuple[str, str | Path]] = (), schemas_dir: str | Path | None = None,
          n_boot: int = 10000, seed: int = 0, level: float = 0.95, command: str = "") -> Comparison:
    """Read the runs, pair their examples and compare: the first run against each other one
    (and, with ``all_pairs``, every later run against every earlier one)."""
    if len(run_dirs) < 2:
        raise CompareError("give at least two run folders: the baseline first, then the runs to compare with it")
    if labels is not None and len(labels) != len(run_dirs):
        raise CompareError(f"--labels names {len(labels)} runs but {len(run_dirs)} run folders were given")
    if n_boot < 1:
        raise CompareError(f"--n-boot {n_boot}: expected a whole number >= 1")
    if not 0 < level < 1:
        raise CompareError(f"--ci {level}: expected a level between 0 and 1 (e.g. 0.95)")
    runs = [load_run(p, labels[k] if labels else None) for k, p in enumerate(run_dirs)]
    seen: dict[str, Path] = {}
    for r in runs:
        if r.label in seen:
            raise CompareError(f"two runs are named {r.label!r} ({seen[r.label]} and {r.path}): name them with --labels")
        seen[r.label] = r.path
    alignment = align(runs, intersect)
    groups = dict(groups or {})
    check_groups(groups, alignment.schemas, alignment.tiers)
    if all_pairs:
        pairs = [(i, j) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    else:
        pairs = [(0, j) for j in range(1, len(runs))]
    compared = compare_runs(runs, alignment, pairs, groups, n_boot=n_boot, seed=seed, level=level, intersect=intersect)
    checks, labels_seen = [], set()
    for label, path in data_checks:
        if label in labels_seen:
            raise CompareError(f"--data-check {label}: given twice")
        labels_seen.add(label)
        checks.append(check_version(label, path, schemas_dir))
    diffs = [diff_versions(checks[0], c) for c in checks[1:]]
    name = name or "_vs_".join(r.label for r in runs)
    if not name or "/" in name or name in (".", ".."):
        raise CompareError(f"--name {name!r}: expected a folder name")
    return Comparison(name, command, runs, alignment, compared, groups, checks, diffs, n_boot, seed, level, intersect)


# ---------------------------------------------------------------------------- format


def pct(v: float) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def pct_ci(v: float, n: int, level: float = 0.95) -> str:
    """``45.6 [38.0, 53.2]``: a proportion in percent with its Wilson interval on ``n`` examples."""
    if v is None or not math.isfinite(v) or not n:
        return "-"
    lo, hi = proportion_interval(v, n, level)
    return f"{pct(v)} [{pct(lo)}, {pct(hi)}]"


def pts(d: float, ci: Sequence[float] | None = None) -> str:
    """``+3.2 [-1.9, +8.2]``: a delta and its interval in points."""
    if d is None or not math.isfinite(d):
        return "-"
    s = f"{100 * d:+.1f}"
    if ci is not None and all(math.isfinite(c) for c in ci):
        s += f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return s.replace("+0.0", "0.0").replace("-0.0", "0.0")


#: Marks a delta whose interval is Newcombe's (the paired bootstrap collapsed on a 0/1 metric).
NEWCOMBE_MARK = "†"


def delta_cell(d: Delta) -> str:
    """A delta with its interval (``†``: Newcombe's, see :data:`NEWCOMBE_MARK`), or ``(all equal)``
    where Field F1 differs by the same amount on every example and no interval is given."""
    if d.method == "none":
        return f"{pts(d.delta)} (all equal)"
    return pts(d.delta, d.ci) + (f" {NEWCOMBE_MARK}" if d.method == "newcombe" else "")


def pval(p: float) -> str:
    return "1" if p >= 0.9995 else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def trained_on(run: Run, checks: Sequence[VersionCheck]) -> str:
    """The run's training file, named by the ``--data-check`` version whose file it is."""
    if run.train is None:
        return "- (not trained)"
    for c in checks:
        for f, sha in c.sha256.items():
            if sha == run.train.sha256:
                return f"{c.label} {Path(f).name} ({run.train.short})"
    return f"{run.train.path} ({run.train.short})"


def scored_on(run: Run, checks: Sequence[VersionCheck]) -> str:
    for c in checks:
        for f, sha in c.sha256.items():
            if sha == run.scored.sha256:
                return f"{run.split}: {c.label} {Path(f).name} ({run.scored.short})"
    return f"{run.split}: {run.scored.path} ({run.scored.short})"


def runs_table(cmp: Comparison) -> Table:
    header = ("run", "model", "fine-tune", "decoder", "prompt", "trained on (sha256)", "scored on (sha256)", "n",
              "JSONExact %", "Field F1", "compliance %")
    rows = []
    ids = cmp.alignment.ids
    for r in cmp.runs:
        d = r.describe()
        means = {m: sum(r.examples[i].value(m) for i in ids) / len(ids) for m in METRICS}
        rows.append((r.label, d["model"], d["finetune"], d["decode"], d["prompt"], trained_on(r, cmp.checks),
                     scored_on(r, cmp.checks), str(len(ids)), pct_ci(means["json_exact"], len(ids), cmp.level),
                     f"{100 * means['field_f1']:.1f}", pct_ci(means["schema_compliance"], len(ids), cmp.level)))
    return Table(f"compare-{cmp.name}-runs", f"Runs compared ({cmp.name}); scores on the {len(ids)} examples every run "
                                             f"scored (%, {round(100 * cmp.level)}% Wilson intervals; Field F1 x 100).",
                 header, tuple(rows))


def _prompt_blocks(run: Run) -> list[tuple[str, Mapping[str, Any]]]:
    """(group, metrics block) of a run's overall and tiers, where results.json carries the ceiling."""
    m = run.results.get("metrics") or {}
    blocks = [("overall", m.get("overall") or {})] + list((m.get("by_tier") or {}).items())
    if run.complex_plus is not None:
        blocks.append((COMPLEX_PLUS_TIER, tier_block(m, COMPLEX_PLUS_TIER)))
    return [(g, b) for g, b in blocks if isinstance((b or {}).get("ceiling"), Mapping)]


def complex_plus_note(cmp: Comparison) -> list[str]:
    """What the complex+ rows are, or why there are none, where any run carries complex+ (else nothing)."""
    have = [r for r in cmp.runs if r.complex_plus is not None]
    if not have:
        return []
    ids = complex_plus_ids(cmp.runs, cmp.intersect)
    if ids is not None:
        return [(f"**{COMPLEX_PLUS_TIER}** (n = {len(ids)}): the complex examples of the test split together with the "
                 "extra complex test records (`v3_extra/test_complex.jsonl`), paired by id from each run's "
                 "`complex_plus.jsonl` (scaling.complex_plus), with a bootstrap of their own; the other rows stay on "
                 f"the {len(cmp.alignment.ids)} shared examples."), ""]
    bare = [r.label for r in cmp.runs if r.complex_plus is None]
    why = (f"{', '.join(bare)} carr{'ies' if len(bare) == 1 else 'y'} none (python -m scaling.complex_plus)" if bare
           else "the runs' complex+ examples differ (compare them on the shared ones with --intersect)")
    return [f"No {COMPLEX_PLUS_TIER} row: {why}.", ""]


def ceiling_table(cmp: Comparison) -> Table | None:
    """Each run against what its prompts determine (:mod:`scaling.ceiling`, from results.json):
    per tier, JSONExact, the ceiling and the share of it, and the wrong answers by kind. None
    when no run carries the ceiling."""
    header = ("run", "examples", "n", "JSONExact %", "ceiling % [95% CI]", "JSONExact / ceiling % [95% CI]",
              "wrong: unparsed / inconsistent with the prompt / another reading / gold contradicts the prompt",
              "inconsistent answers that lose or add list items")
    rows = []
    for r in cmp.runs:
        for group, b in _prompt_blocks(r):
            c, a = b["ceiling"], b.get("answers") or {}
            k = a.get("kinds") or {}

            def cell(v, ci):
                return "-" if v is None else pct(v) + (f" [{pct(ci[0])}, {pct(ci[1])}]" if ci else "")

            rows.append((r.label, group, str(b.get("n", "-")), pct(float(b.get("json_exact", math.nan))),
                         cell(c.get("expected"), c.get("ci")), cell(c.get("json_exact_of_ceiling"), c.get("share_ci")),
                         " / ".join(str(k.get(x, 0)) for x in ("unparsed", "inconsistent", "other_reading",
                                                               "gold_contradicts")),
                         f"{(a.get('lists') or {}).get('answers_lose_or_add_items', 0)} of {k.get('inconsistent', 0)}"))
    if not rows:
        return None
    return Table(f"compare-{cmp.name}-ceiling", "Each run against what its prompts determine: the ceiling is the best "
                                                "JSONExact any reader of the prompts can expect (on all the run's "
                                                "examples, from its results.json); the wrong answers by kind.",
                 header, tuple(rows))


def _group_title(row: GroupComparison) -> str:
    return {"overall": "overall", "tier": row.group}.get(row.kind, row.group)


def summary_table(cmp: Comparison, pair: PairComparison, tag: str) -> Table:
    a, b = pair.a, pair.b
    level = round(100 * cmp.level)
    header = ("examples", "n", f"JSONExact % {a} → {b}", f"JSONExact delta [{level}% CI]",
              f"Field F1 delta [{level}% CI]", f"compliance delta [{level}% CI]",
              f"right only in {a} / only in {b}", "McNemar p")
    rows = []
    for row in pair.by_kind("overall", "tier", "group"):
        m = row.metrics
        label = _group_title(row) if row.kind != "group" else f"group {row.group}"
        rows.append((label, str(row.n), _a_to_b(m["json_exact"], row.n, cmp.level),
                     *(delta_cell(m[k]) for k in METRICS),
                     f"{row.mcnemar.lost} / {row.mcnemar.gained}", pval(row.mcnemar.p)))
    return Table(f"compare-{cmp.name}-{tag}", f"{b} against {a}: JSONExact of each ({level}% Wilson intervals) and deltas "
                                   f"({b} minus {a}) in points with {level}% paired-bootstrap intervals over the shared "
                                   f"examples ({NEWCOMBE_MARK}: Newcombe's, where the bootstrap collapses); exact "
                                   "McNemar test on JSONExact.", header, tuple(rows))


def schema_table(cmp: Comparison, pair: PairComparison, tag: str) -> Table:
    a, b = pair.a, pair.b
    owner = {s: g for g, members in cmp.groups.items() for s in members}
    header = ("schema", "tier") + (("group",) if cmp.groups else ()) + (
        "n", f"JSONExact % {a} → {b}", "JSONExact delta", "Field F1 delta", "compliance delta",
        f"only {a} / only {b}", "McNemar p")
    rows = []
    for row in pair.by_kind("schema"):
        m = row.metrics
        rows.append((row.group, row.tier or "-") + ((owner.get(row.group, OTHERS),) if cmp.groups else ()) + (
            str(row.n), _a_to_b(m["json_exact"], row.n, cmp.level),
            *(delta_cell(m[k]) for k in METRICS), f"{row.mcnemar.lost} / {row.mcnemar.gained}",
            pval(row.mcnemar.p)))
    return Table(f"compare-{cmp.name}-{tag}-schemas", f"{b} against {a} per schema (JSONExact with Wilson intervals; "
                                           f"deltas in points, paired-bootstrap intervals within each schema, "
                                           f"{NEWCOMBE_MARK}: Newcombe's).", header, tuple(rows))


def _a_to_b(d: Delta, n: int, level: float) -> str:
    return f"{pct_ci(d.a, n, level)} → {pct_ci(d.b, n, level)}"


def validator_table(cmp: Comparison) -> Table:
    groups = _group_names(cmp)
    header = ("data", "file", "records", "invalid", "failing checks (records)") + tuple(f"invalid: {g}" for g in groups)
    rows = []
    for c in cmp.checks:
        total: dict[str, int] = {}
        for f, role in c.files.items():
            counts = c.split_counts.get(f) or {}
            by_group: dict[str, int] = {}
            for s, n in (counts.get("invalid_by_schema") or {}).items():
                by_group[_group_of(cmp, s)] = by_group.get(_group_of(cmp, s), 0) + n
            rows.append((c.label, Path(f).name, str(counts.get("records", 0)), str(counts.get("invalid", 0)),
                         ", ".join(f"{k} {counts[k]}" for k in CHECKS if counts.get(k)) or "none",
                         *(str(by_group.get(g, 0)) for g in groups)))
            for g, n in by_group.items():
                total[g] = total.get(g, 0) + n
        if len(c.files) > 1:
            rows.append((c.label, "all", str(c.records), str(c.invalid),
                         ", ".join(f"{k} {v}" for k, v in c.by_check.items()) or "none",
                         *(str(total.get(g, 0)) for g in groups)))
    return Table(f"compare-{cmp.name}-validator", "Records the validator (scaling.data validate) finds invalid, computed by "
                                      "this report on the files named.", header, tuple(rows))


def _group_names(cmp: Comparison) -> list[str]:
    return [*cmp.groups, OTHERS] if cmp.groups else []


def _group_of(cmp: Comparison, schema: str) -> str:
    for g, members in cmp.groups.items():
        if schema in members:
            return g
    return OTHERS


def format_table(cmp: Comparison, diff: VersionDiff) -> Table:
    ref = next(c for c in cmp.checks if c.label == diff.ref)
    other = next(c for c in cmp.checks if c.label == diff.other)
    a, b = ref.label, other.label
    roles, xs, ys = common_stats(ref, other)
    header = ("schema", "records", f"changed ({b} vs {a})", f"invalid {a} → {b}", f"line items/answer {a} → {b}",
              "leaves/answer", "prompt chars", "answer chars", "copyable leaves %", f"fields in how many records ({a} → {b})")
    rows = []
    changed = diff.changed_schemas
    blocks: list[tuple[str, list[str]]] = [(s, [s]) for s in (changed or ys)]
    if cmp.groups:
        blocks += [(f"group {g}", [s for s in ys if _group_of(cmp, s) == g]) for g in _group_names(cmp)]
    blocks.append(("all", list(ys)))
    for title, members in blocks:
        x = pooled([xs[s] for s in members if s in xs], title)
        y = pooled([ys[s] for s in members if s in ys], title)
        if x is None or y is None:
            continue
        n_changed = sum(n for s in members for role, n in diff.changed.get(s, {}).items() if not roles or role in roles)
        fields = ""
        if len(members) == 1:
            fields = ", ".join(f"{k} {u} → {v}" for k, u, v in field_changes(x, y)) or "same"
        rows.append((title, str(y.records), str(n_changed), f"{x.invalid} → {y.invalid}",
                     f"{x.items:.2f} → {y.items:.2f}", f"{x.leaves:.1f} → {y.leaves:.1f}",
                     f"{x.prompt_chars:.0f} → {y.prompt_chars:.0f}", f"{x.answer_chars:.0f} → {y.answer_chars:.0f}",
                     f"{pct(x.copyable)} → {pct(y.copyable)}", fields))
    over = " and ".join(f"{r} files" for r in roles) if roles else "the files given"
    return Table(f"compare-{cmp.name}-data-{a}-{b}", f"{b} against {a} over the {over} of both: what changed and how the "
                                        "answers' format differs (means per record).", header, tuple(rows))


def _list(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def data_text(cmp: Comparison) -> list[str]:
    """The data-quality paragraphs: the validator's counts and what else changed."""
    out = []
    for c in cmp.checks:
        failing = "; ".join(f"{k}: {v}" for k, v in c.by_check.items()) or "none"
        per_schema = ", ".join(f"{s} {st.invalid}" for s, st in c.schemas.items() if st.invalid)
        splits = ", ".join(f"{v['invalid']} of {v['records']} in {Path(f).name}" for f, v in c.split_counts.items())
        out.append(f"- **{c.label}** ({c.path}): the validator finds **{c.invalid} of {c.records} records invalid** "
                   f"({splits}; records failing each check: {failing})"
                   + (f", by schema: {per_schema}. Their ids are in compare.json." if per_schema else "."))
    out.append("")
    for d in cmp.diffs:
        changed = d.changed_schemas
        n = d.n_changed()
        same = sum(d.same.values())
        if not n:
            out.append(f"{d.other} and {d.ref} hold the same records under the same ids ({same} identical).")
            continue
        named = [g for g, members in cmp.groups.items() if set(members) == set(changed)]
        where = f"all in {_list(changed)}" + (f" (the group '{named[0]}')" if named else "")
        splits = ", ".join(f"{d.n_changed(role)} {role}" for role in ("train", "test") if d.n_changed(role))
        out.append(f"Between {d.ref} and {d.other}, **{n} records changed under the same id** ({splits}), {where}; "
                   f"the other {same} records are identical"
                   + (f" ({d.only_ref} only in {d.ref}, {d.only_other} only in {d.other})"
                      if d.only_ref or d.only_other else "") + ".")
        if d.prompt_changed:
            out.append("")
            out.append(f"In {d.prompt_changed} of those {n} records the prompt changed as well as the answer: they "
                       "were regenerated, not relabelled. A model trained on one version against one trained on the "
                       "other therefore differs in **label quality** (the arithmetic the validator checks) and in "
                       "**format** (how many line items an answer holds, which optional fields occur, how long "
                       "prompts are: table below) at once; the deltas on the changed schemas carry both, and these "
                       "runs cannot separate them.")
        else:
            out.append("")
            out.append(f"The prompts of all {n} changed records are unchanged: only the answers differ, so a "
                       "difference between models trained on the two versions is one of label quality.")
        if len(set(changed)) < len({s for c in cmp.checks for s in c.schemas}):
            out.append("")
            out.append("The records of the other schemas are identical in both versions: a delta there is not "
                       "caused by their own labels; it is run-to-run variation plus whatever the changed records "
                       "teach the model about the rest.")
        out.append("")
    return out


def _flip_lines(flips: Sequence[tuple[str, str, str]]) -> list[str]:
    by_schema: dict[str, list[str]] = {}
    for i, s, t in flips:
        by_schema.setdefault(f"{s} ({t})", []).append(i)
    return [f"- {s}: " + ", ".join(f"`{i}`" for i in ids) for s, ids in by_schema.items()] or ["- none"]


def markdown(cmp: Comparison, figure: str | None = FIGURE) -> str:
    al = cmp.alignment
    lv = round(100 * cmp.level)
    lines = [f"# Run comparison: {cmp.name}", ""]
    if cmp.command:
        lines += ["```bash", cmp.command, "```", ""]
    lines += [f"Baseline: **{cmp.runs[0].label}**. Scores in percent with {lv}% Wilson intervals. Deltas are the "
              f"later run minus the earlier one, in points (percentage points; Field F1 x 100), with {lv}% "
              f"paired-bootstrap intervals over the {len(al.ids)} examples every run scored.", "", "## Runs", "",
              runs_table(cmp).to_markdown()]
    for r in cmp.runs:
        lines.append(f"- {r.label}: `{r.path}`")
    lines.append("")
    ceiling = ceiling_table(cmp)
    if ceiling is not None:
        lines += ["### What the prompt determines", "", ceiling.to_markdown()]
        bare = [r.label for r in cmp.runs if not _prompt_blocks(r)]
        if bare:
            lines += [f"No ceiling in the results of {', '.join(bare)} (scored before scaling.ceiling: re-score "
                      "their predictions to add it).", ""]
    lines += complex_plus_note(cmp)
    if not al.same_data:
        lines += [f"**The runs were scored on different data files** (--intersect): the comparison uses the "
                  f"{len(al.ids)} ids every run scored, and an id may carry a different reference answer in each "
                  "file.", ""]
    dropped = {k: v for k, v in al.dropped.items() if v}
    if dropped:
        lines += ["Examples left out because another run lacks them: "
                  + ", ".join(f"{k} {v}" for k, v in dropped.items()) + ".", ""]
    trains = {r.train.sha256 for r in cmp.runs if r.train is not None}
    if len(trains) > 1 and not cmp.checks:
        lines += ["The runs were trained on different files (see the runs table); `--data-check LABEL=DIR` shows "
                  "how they differ.", ""]
    for k, pair in enumerate(cmp.pairs):
        ov = pair.row(OVERALL)
        ex = ov.metrics["json_exact"]
        lines += [f"## {pair.b} against {pair.a}", "",
                  f"JSONExact {pct_ci(ex.b, ov.n, cmp.level)}% against {pct_ci(ex.a, ov.n, cmp.level)}%: "
                  f"**{delta_cell(ex)} points**; "
                  f"{ov.mcnemar.gained} examples right only in {pair.b}, {ov.mcnemar.lost} right only in {pair.a} "
                  f"(exact McNemar p = {pval(ov.mcnemar.p)}; {ov.mcnemar.both_right} right in both, "
                  f"{ov.mcnemar.both_wrong} wrong in both). Field F1 {delta_cell(ov.metrics['field_f1'])}, "
                  f"compliance {delta_cell(ov.metrics['schema_compliance'])} points.", "",
                  summary_table(cmp, pair, f"pair{k + 1}").to_markdown(), "### Per schema", "",
                  schema_table(cmp, pair, f"pair{k + 1}").to_markdown(),
                  "### Examples answered exactly by one run only", "",
                  f"Right only in **{pair.b}** ({len(pair.gained)}):", "", *_flip_lines(pair.gained), "",
                  f"Right only in **{pair.a}** ({len(pair.lost)}):", "", *_flip_lines(pair.lost), ""]
    if cmp.checks:
        title = " against ".join(c.label for c in cmp.checks)
        lines += [f"## The data: {title}", "", *data_text(cmp), validator_table(cmp).to_markdown()]
        for d in cmp.diffs:
            lines += [format_table(cmp, d).to_markdown(),
                      "Line items: objects in the answer's top-level arrays. Copyable leaves: reference leaves found "
                      "verbatim in the prompt (`scaling.failures.appears_in_prompt`); near 100% means the answer's "
                      "numbers, right or wrong, are printed in the prompt, so a model can copy them without "
                      "computing. Fields: leaf paths (array indices as `[*]`) whose record counts differ.", ""]
    if figure:
        lines += ["## Figure", "", f"![Deltas per tier with {lv}% intervals]({figure}.png)", "",
                  f"`{figure}.pdf` / `{figure}.png`: the deltas of each pair overall, per tier"
                  + (" and per group" if cmp.groups else "") + f", with their {lv}% intervals.", ""]
    lines += ["## Method", "",
              "- Scores: JSONExact and compliance are proportions of the examples, with Wilson intervals "
              "(`scaling.stats.wilson_interval`), which stay honest at 0% and 100%.",
              f"- Deltas: percentile bootstrap, {cmp.n_boot} replicates, seed {cmp.seed}; each replicate draws "
              "one multiset of example ids (within each tier for the overall and tier rows, within each schema and "
              "each group for theirs) and recomputes every run's mean on it, so the runs are paired. Where every "
              f"replicate gives the same delta (no example right in one run only) it collapses to a point: "
              f"{NEWCOMBE_MARK} marks Newcombe's score interval for paired proportions there (JSONExact, "
              "compliance), and Field F1 that differs by the same amount on every example is marked (all equal).",
              "- McNemar: exact two-sided binomial test of the discordant examples (right in one run only) at 1/2; "
              "p = 1 when there are none. The tests are not corrected for multiple comparisons: read the per-tier "
              "and per-schema p-values as descriptions, the overall one as the test.",
              "- Everything above is in compare.json, with the ids of the examples each pair answers differently.", ""]
    return "\n".join(lines)


def latex(cmp: Comparison) -> str:
    parts = [runs_table(cmp).to_latex()]
    ceiling = ceiling_table(cmp)
    if ceiling is not None:
        parts.append(ceiling.to_latex())
    for k, pair in enumerate(cmp.pairs):
        parts += [summary_table(cmp, pair, f"pair{k + 1}").to_latex(), schema_table(cmp, pair, f"pair{k + 1}").to_latex()]
    if cmp.checks:
        parts.append(validator_table(cmp).to_latex())
        parts += [format_table(cmp, d).to_latex() for d in cmp.diffs]
    return "% Generated by python -m scaling.compare; needs \\usepackage{booktabs}.\n" + "\n".join(parts)


# ---------------------------------------------------------------------------- figure


def figure(cmp: Comparison):
    """Per-tier (and per-group) deltas of every pair, one panel per metric."""
    import numpy as np
    from matplotlib.figure import Figure

    from scaling.fit.figures import MARKERS, OKABE_ITO  # here, with matplotlib: only the figure needs it

    keys = [r.group for r in cmp.pairs[0].by_kind("overall", "tier")]
    n_tiers = len(keys)
    keys += [r.group for r in cmp.pairs[0].by_kind("group")]
    fig = Figure(figsize=(max(4.0, 0.75 * len(keys) + 1.2), 1.55 * len(METRICS) + 0.5), layout="constrained")
    axes = fig.subplots(len(METRICS), 1, sharex=True)
    width = 0.7 / max(len(cmp.pairs), 1)
    x = np.arange(len(keys))
    for ax, m in zip(axes, METRICS):
        ax.axhline(0.0, color="0.3", lw=0.8, zorder=1)
        if n_tiers < len(keys):
            ax.axvline(n_tiers - 0.5, color="0.6", lw=0.6, ls=":")
        for k, pair in enumerate(cmp.pairs):
            rows = {r.group: r for r in pair.rows if r.kind in ("overall", "tier", "group")}
            d = np.array([100 * rows[g].metrics[m].delta for g in keys])
            lo = np.array([100 * (rows[g].metrics[m].ci or (rows[g].metrics[m].delta,) * 2)[0] for g in keys])
            hi = np.array([100 * (rows[g].metrics[m].ci or (rows[g].metrics[m].delta,) * 2)[1] for g in keys])
            ax.errorbar(x + (k - (len(cmp.pairs) - 1) / 2) * width, d, yerr=np.vstack([d - lo, hi - d]),
                        fmt=MARKERS[k % len(MARKERS)], color=OKABE_ITO[k % len(OKABE_ITO)],
                        label=f"{pair.b} - {pair.a}", zorder=3)
        ax.set_ylabel(f"{METRIC_NAMES[m]}\ndelta (points)")
    axes[-1].set_xticks(x, [f"{g}\n(n={cmp.pairs[0].row(g).n})" for g in keys])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=min(len(cmp.pairs), 3))
    return fig


def write(cmp: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """Write the report, tables, figure and compare.json into ``out_dir``."""
    import matplotlib

    from scaling.fit.figures import STYLE, figure_metadata  # here, with matplotlib: only writing needs it
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "tables": out / "tables.tex", "json": out / "compare.json"}
    with matplotlib.rc_context(STYLE):
        fig = figure(cmp)
        for ext in FORMATS:
            p = out / f"{FIGURE}.{ext}"
            fig.savefig(p, format=ext, metadata=figure_metadata(ext))
            paths[f"figure_{ext}"] = p
    atomic_write_text(paths["report"], markdown(cmp))
    atomic_write_text(paths["tables"], latex(cmp))
    atomic_write_json(paths["json"], to_json(cmp))
    return paths


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def to_json(cmp: Comparison) -> dict[str, Any]:
    def row(r: GroupComparison) -> dict:
        return {"group": r.group, "kind": r.kind, "tier": r.tier, "n": r.n,
                "metrics": {m: {"a": d.a, "b": d.b, "delta": d.delta,
                                "ci": [_num(d.ci[0]), _num(d.ci[1])] if d.ci else None, "ci_method": d.method}
                            for m, d in r.metrics.items()},
                "mcnemar": {"gained": r.mcnemar.gained, "lost": r.mcnemar.lost, "discordant": r.mcnemar.discordant,
                            "both_right": r.mcnemar.both_right, "both_wrong": r.mcnemar.both_wrong, "p": r.mcnemar.p}}

    return {
        "name": cmp.name, "command": cmp.command,
        "settings": {"n_boot": cmp.n_boot, "seed": cmp.seed, "ci": cmp.level, "intersect": cmp.intersect,
                     "groups": {g: list(v) for g, v in cmp.groups.items()}},
        "runs": [{"label": r.label, "path": str(r.path), **r.describe(), "split": r.split,
                  "scored_file": {"path": r.scored.path, "sha256": r.scored.sha256},
                  "train_file": None if r.train is None else {"path": r.train.path, "sha256": r.train.sha256},
                  "n_examples": len(r.examples), "config_hash": r.results.get("config_hash"),
                  **({"n_complex_plus": len(r.complex_plus)} if r.complex_plus is not None else {}),
                  "prompt": {g: {"ceiling": b["ceiling"], "answers": b.get("answers")} for g, b in _prompt_blocks(r)}}
                 for r in cmp.runs],
        "examples": {"n": len(cmp.alignment.ids), "same_data": cmp.alignment.same_data,
                     "dropped": dict(cmp.alignment.dropped), "ids": list(cmp.alignment.ids)},
        "pairs": [{"a": p.a, "b": p.b, "rows": [row(r) for r in p.rows],
                   "right_only_in_b": [i for i, _, _ in p.gained], "right_only_in_a": [i for i, _, _ in p.lost]}
                  for p in cmp.pairs],
        "data": {"checks": [check_to_json(c) for c in cmp.checks], "diffs": [diff_to_json(d) for d in cmp.diffs]},
    }

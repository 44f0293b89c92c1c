"""What differs between two versions of a dataset: the validator's verdict and the format.

``--data-check LABEL=PATH`` (PATH: a version folder holding ``train.jsonl`` / ``test.jsonl``,
or one JSONL file) runs the project's validator (:func:`scaling.data.validate_files`, the
same checks as ``python -m scaling.data validate``) on the files, and measures per schema:

* records, and records failing each check (``derived``: totals that are not the arithmetic
  of their items, :mod:`scaling.data.derived`);
* against the first ``--data-check`` (the reference version): records with the same id whose
  prompt or answer changed;
* the answer's format: objects in its top-level arrays (line items) per answer, leaves per
  answer, prompt and answer length, which leaf paths occur (``items[*].price``) in how many
  records;
* the share of reference leaves that can be copied verbatim from the prompt
  (:func:`scaling.failures.appears_in_prompt`): near 100% means the answer's numbers, right or
  wrong, are printed in the prompt.

Nothing here is typed in by hand: every count in the report comes from these functions.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling.compare.runs import CompareError, tier_rank
from scaling.data import CHECKS, Record, ValidationReport, load_schemas, scan_records, validate_files
from scaling.failures import appears_in_prompt
from scaling.metrics import flatten

SPLITS = ("train", "test")


def parse_data_check(text: str) -> tuple[str, Path]:
    """``LABEL=PATH`` of ``--data-check``."""
    label, sep, path = text.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise CompareError(f"--data-check {text!r}: expected LABEL=PATH (e.g. v2=../shared/edgejson/v2)")
    return label.strip(), Path(path.strip())


def _pattern(path: str) -> str:
    """``items[3].price`` -> ``items[*].price``: a leaf path with array indices generalised."""
    out, i = [], 0
    while i < len(path):
        if path[i] == "[" and path[i + 1:i + 2].isdigit():
            j = path.index("]", i)
            out.append("[*]")
            i = j + 1
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def line_items(obj: Any) -> int:
    """Objects in the answer's top-level arrays (an invoice's ``line_items``, a cart's ``items``)."""
    if not isinstance(obj, dict):
        return 0
    return sum(sum(isinstance(x, dict) for x in v) for v in obj.values() if isinstance(v, list))


@dataclass(frozen=True)
class SchemaStats:
    """One schema's records in one version (all its files together)."""

    schema_id: str
    tier: str
    records: int
    invalid: int
    """Records failing any check."""
    failing: Mapping[str, int]
    """Check -> records failing it (only checks some record fails)."""
    items: float
    """Mean line items per answer (:func:`line_items`)."""
    items_hist: Mapping[int, int]
    leaves: float
    prompt_chars: float
    answer_chars: float
    copyable: float
    """Share of reference leaves found verbatim in the prompt."""
    fields: Mapping[str, int]
    """Leaf path pattern -> records carrying it."""


@dataclass(frozen=True)
class VersionCheck:
    """The validator's verdict on one data version, and its records."""

    label: str
    path: str
    files: Mapping[str, str]
    """File -> role (``train``, ``test`` or ``-``)."""
    sha256: Mapping[str, str]
    """File -> sha256 of its bytes (matched against the runs' ``data.files``)."""
    records: int
    invalid: int
    by_check: Mapping[str, int]
    failing_ids: Mapping[str, tuple[str, ...]]
    """Check -> ids of the records failing it (file order)."""
    split_counts: Mapping[str, Mapping[str, Any]]
    """File -> {"role", "records", "invalid", <check>: records failing it (checks some record fails),
    "invalid_by_schema": {schema: records}}."""
    schemas: Mapping[str, SchemaStats]
    """Per schema, over every file."""
    by_role: Mapping[str, Mapping[str, SchemaStats]]
    """Role (``train``, ``test``, ``-``) -> per schema, over that role's files."""
    content: Mapping[tuple[str, str], tuple[str, str]] = field(repr=False)
    """(role, id) -> the record's prompt and its answer as canonical JSON, to find changed records."""
    schema_of: Mapping[str, str] = field(repr=False)


def _stats(schema_id: str, tier: str, recs: Sequence[Record], failing: Mapping[str, set[str]]) -> SchemaStats:
    ids = {r.id for r in recs}
    fields: Counter = Counter()
    hist: Counter = Counter()
    n_leaves = n_copy = 0
    for r in recs:
        leaves = flatten(r.expected_output)
        fields.update({_pattern(p) for p in leaves})
        n_leaves += len(leaves)
        n_copy += sum(appears_in_prompt(v, r.prompt) for v in leaves.values())
        hist[line_items(r.expected_output)] += 1
    k = max(len(recs), 1)
    return SchemaStats(
        schema_id, tier, len(recs),
        invalid=len(ids & set().union(*failing.values())) if failing else 0,
        failing={c: len(ids & failing[c]) for c in CHECKS if c in failing and ids & failing[c]},
        items=sum(n * c for n, c in hist.items()) / k, items_hist=dict(sorted(hist.items())),
        leaves=n_leaves / k,
        prompt_chars=sum(len(r.prompt) for r in recs) / k,
        answer_chars=sum(len(json.dumps(r.expected_output, ensure_ascii=False)) for r in recs) / k,
        copyable=n_copy / n_leaves if n_leaves else float("nan"),
        fields=dict(sorted(fields.items())))


def check_version(label: str, path: str | os.PathLike, schemas_dir: str | os.PathLike | None = None) -> VersionCheck:
    """Validate a version folder (its ``train.jsonl`` and ``test.jsonl``) or one JSONL file."""
    path = Path(path)
    flag = f"--data-check {label}={path}"
    if path.is_dir():
        files = [path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()]
        if not files:
            raise CompareError(f"{flag}: the folder holds no train.jsonl or test.jsonl", path)
    elif path.is_file():
        files = [path]
    else:
        raise CompareError(f"{flag}: no such file or folder", path)
    if schemas_dir is None:
        guess = (path if path.is_dir() else path.parent).parent / "schemas"
        if not guess.is_dir():
            raise CompareError(f"{flag}: no schemas folder at {guess}; give --schemas DIR", path)
        schemas_dir = guess
    schemas = load_schemas(schemas_dir)
    report: ValidationReport = validate_files(files, schemas)
    failing: dict[str, set[str]] = {}
    failing_ids: dict[str, list[str]] = {}
    for f in report.failures:
        if f.id is None:
            continue
        if f.id not in failing.setdefault(f.check, set()):
            failing[f.check].add(f.id)
            failing_ids.setdefault(f.check, []).append(f.id)
    by_schema: dict[str, list[Record]] = {}
    by_role: dict[str, dict[str, list[Record]]] = {}
    content: dict[tuple[str, str], tuple[str, str]] = {}
    schema_of: dict[str, str] = {}
    splits: dict[str, dict[str, Any]] = {}
    sha: dict[str, str] = {}
    for p in files:
        role = report.roles.get(str(p)) or "-"
        scan = scan_records(p, schemas)
        recs = scan.records
        sha[str(p)] = scan.sha256
        bad = set().union(*failing.values()) if failing else set()
        invalid_by_schema = Counter(r.schema_id for r in recs if r.id in bad)
        splits[str(p)] = {"role": role, "records": len(recs), "invalid": sum(invalid_by_schema.values()),
                        **{c: n for c in CHECKS if (n := sum(r.id in failing.get(c, ()) for r in recs))},
                        "invalid_by_schema": dict(invalid_by_schema)}
        for r in recs:
            by_schema.setdefault(r.schema_id, []).append(r)
            by_role.setdefault(role, {}).setdefault(r.schema_id, []).append(r)
            content[(role, r.id)] = (r.prompt, json.dumps(r.expected_output, sort_keys=True, ensure_ascii=False))
            schema_of[r.id] = r.schema_id
    order = sorted(by_schema, key=lambda s: (tier_rank(schemas[s].tier), s))
    return VersionCheck(
        label=label, path=str(path), files={str(p): report.roles.get(str(p)) or "-" for p in files},
        sha256=sha, records=report.records, invalid=report.invalid, by_check={c: n for c, n in report.by_check.items() if n},
        failing_ids={c: tuple(v) for c, v in failing_ids.items()}, split_counts=splits,
        schemas={s: _stats(s, schemas[s].tier, by_schema[s], failing) for s in order},
        by_role={role: {s: _stats(s, schemas[s].tier, recs[s], failing) for s in order if s in recs}
                 for role, recs in by_role.items()},
        content=content, schema_of=schema_of)


@dataclass(frozen=True)
class VersionDiff:
    """Records of ``other`` against the same ids in ``ref``."""

    ref: str
    other: str
    changed: Mapping[str, Mapping[str, int]]
    """Schema -> role -> records whose prompt or answer differ under the same id."""
    prompt_changed: int
    """Changed records whose prompt changed too (regenerated, not only relabelled)."""
    same: Mapping[str, int]
    """Schema -> records identical in both versions."""
    only_ref: int
    only_other: int
    changed_ids: tuple[str, ...]

    @property
    def changed_schemas(self) -> list[str]:
        return [s for s, by_role in self.changed.items() if sum(by_role.values())]

    def n_changed(self, role: str | None = None) -> int:
        return sum(n for by_role in self.changed.values() for r, n in by_role.items() if role in (None, r))


def diff_versions(ref: VersionCheck, other: VersionCheck) -> VersionDiff:
    changed: dict[str, dict[str, int]] = {}
    same: Counter = Counter()
    ids = []
    prompts = 0
    for key, text in other.content.items():
        if key not in ref.content:
            continue
        sid = other.schema_of[key[1]]
        if ref.content[key] == text:
            same[sid] += 1
        else:
            changed.setdefault(sid, Counter())[key[0]] += 1
            ids.append(key[1])
            prompts += ref.content[key][0] != text[0]
    for sid in other.schemas:
        changed.setdefault(sid, Counter())
    return VersionDiff(ref.label, other.label, {s: dict(changed[s]) for s in other.schemas if s in changed},
                       prompts, dict(same), only_ref=len(set(ref.content) - set(other.content)),
                       only_other=len(set(other.content) - set(ref.content)), changed_ids=tuple(ids))


def common_stats(ref: VersionCheck, other: VersionCheck) -> tuple[list[str], dict[str, SchemaStats], dict[str, SchemaStats]]:
    """Per-schema stats of both versions over the roles both hold (a version given as its train
    file only is compared with the other's train file only)."""
    roles = [r for r in ref.by_role if r in other.by_role]
    if not roles:  # e.g. two single files without a train/test name
        return [], dict(ref.schemas), dict(other.schemas)

    def over(check: VersionCheck) -> dict[str, SchemaStats]:
        names = list(dict.fromkeys(s for r in roles for s in check.by_role[r]))
        return {s: pooled([check.by_role[r][s] for r in roles if s in check.by_role[r]], s) for s in names}

    return roles, over(ref), over(other)


def field_changes(a: SchemaStats, b: SchemaStats) -> list[tuple[str, int, int]]:
    """(leaf path pattern, records carrying it in a, in b) where the two differ."""
    keys = list(dict.fromkeys([*a.fields, *b.fields]))
    return [(k, a.fields.get(k, 0), b.fields.get(k, 0)) for k in keys if a.fields.get(k, 0) != b.fields.get(k, 0)]


def pooled(stats: Sequence[SchemaStats], name: str) -> SchemaStats | None:
    """Stats pooled over their records: several schemas (a named group's row), or one schema's
    stats from several files."""
    stats = [s for s in stats if s.records]
    if not stats:
        return None
    n = sum(s.records for s in stats)
    hist: Counter = Counter()
    failing: Counter = Counter()
    fields: Counter = Counter()
    for s in stats:
        hist.update(s.items_hist)
        failing.update(s.failing)
        fields.update(s.fields)
    total_leaves = sum(s.leaves * s.records for s in stats)
    copy = sum(s.copyable * s.leaves * s.records for s in stats if s.leaves)

    def mean(attr: str) -> float:
        return sum(getattr(s, attr) * s.records for s in stats) / n

    tiers = {s.tier for s in stats}
    return SchemaStats(name, tiers.pop() if len(tiers) == 1 else "", n, sum(s.invalid for s in stats), dict(failing), mean("items"),
                       dict(sorted(hist.items())), mean("leaves"), mean("prompt_chars"), mean("answer_chars"),
                       copy / total_leaves if total_leaves else float("nan"), dict(sorted(fields.items())))


def to_json(check: VersionCheck) -> dict[str, Any]:
    return {"label": check.label, "path": check.path, "files": dict(check.files),
            "sha256": dict(check.sha256), "records": check.records,
            "invalid": check.invalid, "by_check": dict(check.by_check),
            "failing_ids": {c: list(v) for c, v in check.failing_ids.items()},
            "splits": {k: dict(v) for k, v in check.split_counts.items()},
            "schemas": {s: {"tier": st.tier, "records": st.records, "invalid": st.invalid, "failing": dict(st.failing),
                            "line_items_mean": st.items, "line_items_hist": {str(k): v for k, v in st.items_hist.items()},
                            "leaves_mean": st.leaves, "prompt_chars_mean": st.prompt_chars,
                            "answer_chars_mean": st.answer_chars, "copyable_share": st.copyable,
                            "fields": dict(st.fields)}
                        for s, st in check.schemas.items()}}


def diff_to_json(d: VersionDiff) -> dict[str, Any]:
    return {"ref": d.ref, "other": d.other, "changed": {s: dict(v) for s, v in d.changed.items()},
            "prompt_changed": d.prompt_changed, "same": dict(d.same), "only_ref": d.only_ref, "only_other": d.only_other,
            "changed_ids": list(d.changed_ids)}

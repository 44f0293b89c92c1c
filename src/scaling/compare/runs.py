"""Run folders read for a comparison, and the examples they share.

A run folder holds ``results.json`` and ``predictions.jsonl`` (a job folder, or one exported
with :func:`scaling.results.export_reference`, whose predictions carry no prompt text), and
``complex_plus.jsonl`` when it carries complex+ (:mod:`scaling.complex_plus`). Only
the per-example scores are read (``json_exact``, ``field_f1``, ``schema_compliance``), so no
data file needs to be present: which test file a run was scored on is known from the sha256
``results.json`` recorded under ``data.files``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling.complex_plus import COMPLEX_PLUS, COMPLEX_PLUS_TIER, tier_block
from scaling.data.io import DataError, json_type_name
from scaling.metrics import TIER_ORDER
from scaling.results import (COMPLEX_PLUS_FILE, PREDICTIONS_FILE, RESULTS_FILE, Results, RunFolder, decode_label,
                             recipe)
from scaling.results import read_predictions as read_prediction_rows

#: The per-example scores a comparison reads, in report order.
METRICS = ("json_exact", "field_f1", "schema_compliance")
METRIC_NAMES = {"json_exact": "JSONExact", "field_f1": "Field F1", "schema_compliance": "Compliance"}

#: How many ids an error message lists before "and N more".
_SHOW = 5


class CompareError(DataError):
    """A run folder, file or flag that cannot be compared. ``str()`` is
    ``"file:line: field 'f': message"`` with the parts that are known."""


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(repr(x) for x in items[:_SHOW])
    return shown + (f" and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def tier_rank(tier: str) -> tuple[int, str]:
    return (TIER_ORDER.index(tier), "") if tier in TIER_ORDER else (len(TIER_ORDER), tier)


@dataclass(frozen=True)
class Example:
    """One scored example of one run."""

    id: str
    schema_id: str
    tier: str
    json_exact: float
    field_f1: float
    schema_compliance: float
    line: int
    """Its line in ``predictions.jsonl``."""

    def value(self, metric: str) -> float:
        return getattr(self, metric)


@dataclass(frozen=True)
class DataFile:
    """A data file a run read, as ``results.json`` recorded it."""

    path: str
    sha256: str

    @property
    def short(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Run:
    """A completed, scored run."""

    label: str
    """Its name in the report (``--labels``, else the folder name)."""
    path: Path
    results: Mapping[str, Any]
    examples: Mapping[str, Example]
    """By id, in file order."""
    split: str
    """What was scored: ``test`` or ``val`` (records held out of train)."""
    scored: DataFile
    """The file the scored examples come from (the test file; the train file for ``val``)."""
    train: DataFile | None
    """The file the model was trained on (None for a base model: nothing trained)."""
    complex_plus: Mapping[str, Example] | None = None
    """Its complex+ answers by id (``complex_plus.jsonl``); None when it carries no complex+."""

    @property
    def scored_key(self) -> tuple:
        """What makes two runs' examples the same ones: the split, the file's bytes and, for
        ``val``, how the held-out records were drawn."""
        if self.split == "val":
            cfg = self.results.get("config") or {}
            return (self.split, self.scored.sha256, (cfg.get("finetune") or {}).get("val_fraction"), cfg.get("seed"))
        return (self.split, self.scored.sha256)

    def describe(self) -> dict[str, str]:
        """Model, fine-tuning, decoder and prompt, as the runs table shows them."""
        r = self.results
        cfg = r.get("config") or {}
        method = (r.get("finetune") or {}).get("method") or ((cfg.get("finetune") or {}).get("method")) or "?"
        mode = (r.get("decode") or {}).get("mode") or ((cfg.get("decode") or {}).get("mode")) or "?"
        parts = dict(recipe(cfg))
        extra = ", ".join(f"{k} {v}" for k, v in parts.items() if k in ("epochs", "lr", "repeat") and v != "none")
        return {"model": str((r.get("model") or {}).get("key") or "?"),
                "finetune": method + (f" ({extra})" if method != "none" and extra else ""),
                "decode": decode_label(mode, cfg),
                "prompt": f"{parts.get('template', '?')}, schema {parts.get('prompt', '?')}"}


# ------------------------------------------------------------------------------ reading


def _read_results(path: Path) -> dict:
    folder = RunFolder(path).check_dir(CompareError)
    file = folder.results_path
    results = folder.results_json(CompareError,
                                  missing=f"not found: a run folder holds {RESULTS_FILE} and {PREDICTIONS_FILE}")
    typed = Results.from_json(results)
    if not typed.completed:
        if typed.status == "failed":
            err = results.get("error")
            why = typed.error.describe() if typed.error is not None else str(err)
            raise CompareError(f"the run failed ({why}); it has no scores to compare", file, field="status")
        raise CompareError(f"the run is {results.get('status')!r}, not 'completed'; it has no scores to compare", file,
                           field="status")
    if typed.metrics is None:
        raise CompareError("no scores (a run with eval.split=none only trains)", file, field="metrics")
    return results


def _data_files(results: Mapping[str, Any], file: Path) -> tuple[DataFile, DataFile]:
    """(train file, test file) from ``data.files``.

    ``load_dataset`` records the train file, then the test file, then each schema; the
    paths the config names are matched first, the recorded order is the fallback (a config
    whose paths were interpolated differently)."""
    data = results.get("data")
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files:
        raise CompareError("missing: the sha256 of the data files a run read", file, field="data.files")
    jsonl = [(k, v) for k, v in files.items() if str(k).endswith(".jsonl")]
    for k, v in jsonl:
        if not isinstance(v, str) or len(v) != 64:
            raise CompareError(f"{k!r}: expected a sha256 hex digest, got {v!r}", file, field="data.files")
    norm = {os.path.normpath(k): (k, v) for k, v in jsonl}
    cfg = (results.get("config") or {}).get("data") or {}
    root, version = cfg.get("root"), cfg.get("version") or data.get("version")

    def wanted(explicit: Any, sub: Any, name: str) -> DataFile | None:
        path = explicit or (os.path.join(str(root), str(sub), name) if root and sub else None)
        hit = norm.get(os.path.normpath(str(path))) if path else None
        return DataFile(*hit) if hit else None

    train = wanted(cfg.get("train_file"), cfg.get("train_version") or version, "train.jsonl")
    test = wanted(cfg.get("test_file"), version, "test.jsonl")
    if train is None or test is None:
        if len(jsonl) == 2:
            train, test = train or DataFile(*jsonl[0]), test or DataFile(*jsonl[1])
        elif len(jsonl) == 1:  # one file read as both splits
            train, test = train or DataFile(*jsonl[0]), test or DataFile(*jsonl[0])
        else:
            raise CompareError(f"cannot tell the train and test files apart among {len(jsonl)} .jsonl entries",
                               file, field="data.files")
    return train, test


def _number(obj: Mapping[str, Any], name: str, file: Path, line: int, boolean: bool) -> float:
    if name not in obj:
        raise CompareError("missing: a prediction row carries its scores (is this a run's predictions.jsonl?)",
                           file, line, field=name)
    v = obj[name]
    if boolean:
        if not isinstance(v, bool):
            raise CompareError(f"expected true or false, got {json_type_name(v)}", file, line, field=name)
        return float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0):
        raise CompareError(f"expected a number in [0, 1], got {json.dumps(v)[:40]}", file, line, field=name)
    return float(v)


def read_predictions(path: Path) -> dict[str, Example]:
    """A run's scored examples by id, from its ``predictions.jsonl`` (or ``complex_plus.jsonl``)
    as :func:`scaling.results.read_predictions` reads it: every row with ``schema_id``, ``tier``
    and the scores of :data:`METRICS`; ids unique. Errors name the file, line and field."""
    out: dict[str, Example] = {}
    for obj in read_prediction_rows(path, CompareError, unique_ids=True, empty="empty: no predictions",
                                    missing="not found: the run's per-example scores are needed to pair examples"):
        n = obj["line"]
        for name in ("schema_id", "tier"):
            v = obj.get(name)
            if not isinstance(v, str) or not v.strip():
                raise CompareError("missing" if name not in obj else f"expected a non-empty string, got "
                                   f"{json_type_name(v)}", path, n, field=name)
        out[obj["id"]] = Example(obj["id"], obj["schema_id"], obj["tier"],
                                 _number(obj, "json_exact", path, n, boolean=True),
                                 _number(obj, "field_f1", path, n, boolean=False),
                                 _number(obj, "schema_compliance", path, n, boolean=True), n)
    return out


def load_run(path: str | os.PathLike, label: str | None = None) -> Run:
    """Read and check one run folder; :class:`CompareError` names what is wrong where."""
    path = Path(path)
    results = _read_results(path)
    rfile = path / RESULTS_FILE
    train, test = _data_files(results, rfile)
    data = results.get("data") or {}
    split = str(data.get("eval_split") or "test")
    if split not in ("test", "val"):
        raise CompareError(f"eval split {split!r} scored nothing", rfile, field="data.eval_split")
    examples = read_predictions(path / PREDICTIONS_FILE)
    _check_scored_together(examples, results["metrics"].get("overall") or {}, PREDICTIONS_FILE, rfile, "overall")
    pooled = None
    if RunFolder(path).has_complex_plus(results):
        pooled = read_predictions(path / COMPLEX_PLUS_FILE)
        _check_scored_together(pooled, tier_block(results["metrics"], COMPLEX_PLUS_TIER), COMPLEX_PLUS_FILE, rfile,
                               COMPLEX_PLUS)
    method = (results.get("finetune") or {}).get("method") or ((results.get("config") or {}).get("finetune") or {}).get("method")
    return Run(label=label or path.resolve().name, path=path, results=results, examples=examples, split=split,
               scored=train if split == "val" else test, train=None if method == "none" else train,
               complex_plus=pooled)


def _check_scored_together(examples: Mapping[str, Example], block: Mapping[str, Any], name: str, rfile: Path,
                           key: str) -> None:
    """A predictions file of another run, or a truncated one, would pair the wrong answers: its
    count and JSONExact must be the ones ``metrics.<key>`` of results.json recorded."""
    n = block.get("n")
    if isinstance(n, int) and n != len(examples):
        raise CompareError(f"{name} holds {len(examples)} examples but results.json scored {n} "
                           "(a truncated or foreign predictions file)", rfile, field=f"metrics.{key}.n")
    exact = block.get("json_exact")
    mean = sum(e.json_exact for e in examples.values()) / len(examples)
    if isinstance(exact, (int, float)) and not math.isclose(exact, mean, abs_tol=1e-9):
        raise CompareError(f"{name} averages {mean:.4f} but results.json says {exact:.4f}: the two "
                           "files are not from the same evaluation", rfile, field=f"metrics.{key}.json_exact")


# ----------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Alignment:
    """The examples every run scored, in report order (tier, schema, id)."""

    ids: tuple[str, ...]
    tiers: tuple[str, ...]
    schemas: tuple[str, ...]
    dropped: Mapping[str, int]
    """Per run label: its examples left out because another run lacks them (``--intersect``)."""
    same_data: bool
    """Whether every run was scored on the same file (same sha256)."""


def align(runs: Sequence[Run], intersect: bool = False) -> Alignment:
    """Pair the runs' examples by id.

    Runs scored on different files (sha256), or missing examples another run has, are refused
    unless ``intersect``: then the comparison uses the ids every run scored. An id must have the
    same schema and tier in every run."""
    base = runs[0]
    differ = [r for r in runs[1:] if r.scored_key != base.scored_key]
    if differ and not intersect:
        lines = "; ".join(f"{r.label}: {r.split} examples of {r.scored.path} (sha256 {r.scored.short}…)"
                          for r in (base, *differ))
        raise CompareError(f"the runs were scored on different data ({lines}): their examples are not the same "
                           "ones. Compare them on the ids they share with --intersect (an id may then carry "
                           "a different reference answer in each file)", field="data.files")
    common = set(base.examples)
    for r in runs[1:]:
        common &= set(r.examples)
    if not intersect:
        for r in runs[1:]:
            for a, b in ((base, r), (r, base)):
                missing = [i for i in a.examples if i not in b.examples]
                if missing:
                    raise CompareError(f"{len(missing)} example(s) of run {a.label} are missing from run {b.label}: "
                                       f"{_listing(missing)} (compare on the shared ids with --intersect)",
                                       b.path / PREDICTIONS_FILE, field="id")
    if not common:
        raise CompareError("the runs share no example id: nothing to compare", field="id")
    for i in sorted(common):
        first = base.examples[i]
        for r in runs[1:]:
            e = r.examples[i]
            if (e.schema_id, e.tier) != (first.schema_id, first.tier):
                raise CompareError(f"example {i!r} is {e.schema_id} ({e.tier}) here but {first.schema_id} "
                                   f"({first.tier}) in run {base.label}", r.path / PREDICTIONS_FILE, e.line,
                                   field="schema_id")
    ordered = sorted(common, key=lambda i: (tier_rank(base.examples[i].tier), base.examples[i].schema_id, i))
    return Alignment(ids=tuple(ordered), tiers=tuple(base.examples[i].tier for i in ordered),
                     schemas=tuple(base.examples[i].schema_id for i in ordered),
                     dropped={r.label: len(r.examples) - len(common) for r in runs},
                     same_data=not differ)


def complex_plus_ids(runs: Sequence[Run], intersect: bool = False) -> tuple[str, ...] | None:
    """The complex+ examples every run answered, in report order (schema, id): None unless every
    run carries complex+ and, without ``intersect``, all of them the same examples."""
    if not runs or any(r.complex_plus is None for r in runs):
        return None
    common = set(runs[0].complex_plus)
    for r in runs[1:]:
        common &= set(r.complex_plus)
    if not common or (not intersect and any(set(r.complex_plus) != common for r in runs)):
        return None
    first = runs[0].complex_plus
    return tuple(sorted(common, key=lambda i: (first[i].schema_id, i)))

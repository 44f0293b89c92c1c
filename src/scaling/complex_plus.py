"""complex+: the complex tier on every complex test example there is, beside the 158-example headline.

    python -m scaling.complex_plus RUN RUN_EXTRA [--data DIR]

EdgeJSON v3's test split holds 25 complex examples: a complex-tier JSONExact of 15% carries an
interval of about ±13 points. ``v3_extra/test_complex.jsonl`` adds 120 complex records from the same
generator. **complex+** pools the two: the 25 complex answers of ``RUN`` (a run scored on v3's 158
test examples) and the 120 of ``RUN_EXTRA`` (the same trained model scored on the extra file, without
training again)::

    python -m scaling.evaluate from_job=<RUN's job folder> \\
        data.test_file=../shared/edgejson/v3_extra/test_complex.jsonl sweep_name=<name>_complex
    python -m scaling.complex_plus <RUN> outputs/runs/<name>_complex/<run name>

The 145 answers are scored as a run is scored (:func:`scaling.score.score_predictions`: the same
scorer, Wilson intervals for JSONExact and compliance, the bootstrap of
:func:`scaling.metrics.aggregate` for Field F1, what the prompts determine), and ``RUN`` gains

- ``results.json`` ``metrics.complex_plus`` (and ``metrics.json`` where the run has one): the aggregate
  of the 145 (``n``, each metric, ``ci``, ``status_counts``, ``ceiling``, ``answers``), its
  ``by_schema``, and its ``parts``: for ``test`` and ``extra``, the data file (as recorded, with its
  sha256), the run it was scored in and how many answers it gave;
- ``complex_plus.jsonl`` (:data:`scaling.results.COMPLEX_PLUS_FILE`): the 145 answers, prompt-free
  (:data:`scaling.results.REFERENCE_PREDICTION_KEYS` and ``part``), which :mod:`scaling.fit`,
  :mod:`scaling.compare`, :mod:`scaling.failures` and :mod:`scaling.rescore` read as the tier
  ``complex+`` (:data:`COMPLEX_PLUS_TIER`).

``metrics.overall``, ``by_tier`` and ``by_schema`` stay the 158-example numbers, comparable with the
published study. The two runs must be one trained model (the same ``train_hash``), one prompt format
and one decoder; ``RUN_EXTRA`` holds complex answers only, none for an id of ``RUN``; and each run's
saved scores must be today's scorer's (``python -m scaling.rescore`` them first otherwise). The data
files are found as :mod:`scaling.rescore` finds them (as recorded, then under ``$EDGEJSON_DIR`` or
``--data``, checked by sha256). Errors name the file and field, and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from scaling.data.io import DataError, Record, SchemaInfo, load_schemas, read_records
from scaling.data.locate import find_recorded_file
from scaling.metrics import METRIC_KEYS
from scaling.results import (COMPLEX_PLUS_FILE, METRICS_FILE, PREDICTIONS_FILE, REFERENCE_PREDICTION_KEYS,
                             RESULTS_FILE, RunFolder, atomic_write_json, without_line, write_jsonl)
from scaling.score import score_predictions
from scaling.stats import OVERALL

#: The key of the block in ``results.json``'s ``metrics``.
COMPLEX_PLUS = "complex_plus"

#: The tier's name wherever tiers are listed (fit, compare, failures), after ``complex``.
COMPLEX_PLUS_TIER = "complex+"

#: The tier of the headline run whose answers complex+ pools.
POOLED_TIER = "complex"

#: The parts of complex+, in row order: the headline run's complex answers, then the extra run's.
PARTS = ("test", "extra")

#: What a ``complex_plus.jsonl`` row keeps: a reference prediction's fields and its part.
ROW_KEYS = (*REFERENCE_PREDICTION_KEYS, "part")


class ComplexPlusError(DataError):
    """Runs that cannot be pooled into complex+; the message names the file and field."""


@dataclass(frozen=True)
class ComplexPlus:
    """complex+ of one run: the rows of ``complex_plus.jsonl`` and ``metrics.complex_plus``."""

    rows: list[dict]
    block: dict

    def summary(self) -> str:
        """``n=145: JSONExact 4.8% [2.4, 9.6], Field F1 0.323 [...], compliance 42.8% [...]``."""
        b = self.block

        def pct(metric: str) -> str:
            lo, hi = b["ci"][metric]
            return f"{100 * b[metric]:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

        lo, hi = b["ci"]["field_f1"]
        return (f"n={b['n']}: JSONExact {pct('json_exact')}, Field F1 {b['field_f1']:.3f} [{lo:.3f}, {hi:.3f}], "
                f"compliance {pct('schema_compliance')}")


# ----------------------------------------------------------------------------- reading


def tier_block(metrics: Any, tier: str) -> Mapping[str, Any] | None:
    """The aggregate block of ``tier`` in a run's ``metrics``: ``overall``, ``complex_plus`` for
    :data:`COMPLEX_PLUS_TIER`, else ``by_tier.<tier>``; None when the run has none."""
    if not isinstance(metrics, Mapping):
        return None
    if tier == OVERALL:
        block = metrics.get("overall")
    elif tier == COMPLEX_PLUS_TIER:
        block = metrics.get(COMPLEX_PLUS)
    else:
        block = (metrics.get("by_tier") or {}).get(tier)
    return block if isinstance(block, Mapping) else None


def has_complex_plus(run: str | os.PathLike, results: Mapping[str, Any]) -> bool:
    """Whether a run folder carries complex+: the block in its results and its answers beside them."""
    return RunFolder(run).has_complex_plus(results)


def _read_results(run: Path) -> dict:
    results = RunFolder(run).results_json(ComplexPlusError, missing=f"not found ({run} is not a run folder: it holds "
                                                                     f"{RESULTS_FILE} and {PREDICTIONS_FILE})")
    if results.get("status") != "completed":
        raise ComplexPlusError(f"the run is {results.get('status')!r}, not 'completed'", run / RESULTS_FILE,
                               field="status")
    if not isinstance(results.get("metrics"), dict):
        raise ComplexPlusError("missing: the run has no scores", run / RESULTS_FILE, field="metrics")
    return results


def scored_file(results: Mapping[str, Any], where: Path) -> tuple[str, str]:
    """``(name, sha256)`` of the test file a run was scored on, as ``data.files`` recorded it: the
    config's ``data.test_file``, else ``<root>/<version>/test.jsonl``, else the second JSONL file
    recorded (a job records its train file, then its test file)."""
    data = results.get("data") if isinstance(results.get("data"), dict) else {}
    files = {str(k): v for k, v in (data.get("files") or {}).items()}
    cfg = ((results.get("config") or {}).get("data")) or {}
    jsonl = [k for k in files if k.endswith(".jsonl")]
    root, version = cfg.get("root") or data.get("root"), cfg.get("version") or data.get("version")
    wanted = cfg.get("test_file") or (os.path.join(str(root), str(version), "test.jsonl") if root and version else None)
    named = [k for k in jsonl if wanted and os.path.normpath(k) == os.path.normpath(str(wanted))]
    name = named[0] if named else (jsonl[1] if len(jsonl) == 2 else None)
    if name is None or not isinstance(files.get(name), str):
        raise ComplexPlusError("cannot tell which recorded file the run was scored on", where, field="data.files")
    return name, files[name]


def _schemas(results: Mapping[str, Any], where: Path, data_dir: str | os.PathLike | None) -> dict[str, SchemaInfo]:
    """The schemas a run recorded (``data.files``'s ``.json`` entries), found and checked by sha256."""
    data = results.get("data") or {}
    names = {str(k): v for k, v in (data.get("files") or {}).items() if str(k).endswith(".json")}
    if not names:
        raise ComplexPlusError("names no schema files", where, field="data.files")
    found = [find_recorded_file(name, data.get("root"), sha, f"{where}: field data.files", data_dir,
                                error=ComplexPlusError, what="schema file") for name, sha in names.items()]
    # The schemas folder is <root>/schemas/<tier>/<id>.json: two levels above any schema file.
    return load_schemas(found[0].parent.parent)


def _check_same_model(results: Mapping[str, Any], extra: Mapping[str, Any], run: Path, extra_run: Path) -> None:
    """The extra run scored the headline run's trained model, with its prompt and its decoder."""
    where = extra_run / RESULTS_FILE

    def get(record: Mapping[str, Any], dotted: str) -> Any:
        cur: Any = record
        for part in dotted.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        return cur

    # decode.grounded is absent from runs made before that option: absent on both sides is equal.
    for field, what in (("train_hash", "another trained model"), ("config.data.prompt", "another prompt format"),
                        ("decode.mode", "another decoder"), ("decode.grammar_strict", "another grammar"),
                        ("decode.grounded", "another decoder (decode.grounded)")):
        mine, theirs = get(results, field), get(extra, field)
        if field == "train_hash" and not isinstance(mine, str):
            raise ComplexPlusError("missing: complex+ pools one trained model's answers", run / RESULTS_FILE,
                                   field=field)
        if mine != theirs:
            raise ComplexPlusError(f"{json.dumps(theirs)[:80]} here, {json.dumps(mine)[:80]} in {run / RESULTS_FILE}: "
                                   f"{what}; complex+ pools the answers of one model, prompt and decoder (score "
                                   f"the extra file with python -m scaling.evaluate from_job=<{run.name}'s job>)",
                                   where, field=field)


# ----------------------------------------------------------------------------- scoring


def _records(parts: Mapping[str, Mapping[str, Any]], root: str | None, schemas: Mapping[str, SchemaInfo],
             where: str, data_dir: str | os.PathLike | None) -> dict[str, dict[str, Record]]:
    """Each part's records by id, read from its recorded file (checked by sha256)."""
    out = {}
    for part in PARTS:
        info = parts.get(part)
        if not isinstance(info, Mapping) or not isinstance(info.get("file"), str):
            raise ComplexPlusError(f"missing: the {part} part's data file", where,
                                   field=f"metrics.{COMPLEX_PLUS}.parts.{part}.file")
        path = find_recorded_file(info["file"], root, info.get("sha256"),
                                  f"{where}: field metrics.{COMPLEX_PLUS}.parts.{part}", data_dir,
                                  error=ComplexPlusError, what="test file", how="complex+ was scored on another file")
        out[part] = {r.id: r for r in read_records(path, schemas)}
    return out


def score_pooled(answers: Sequence[Mapping[str, Any]], parts: Mapping[str, Mapping[str, Any]], root: str | None,
                 schemas: Mapping[str, SchemaInfo], where: str, source: str,
                 data_dir: str | os.PathLike | None = None) -> ComplexPlus:
    """Score the pooled ``answers`` (rows with ``id``, ``output``, ``part``, optionally ``line`` and the
    decoder's fields) against their parts' records: the rows of ``complex_plus.jsonl`` and the block."""
    records = _records(parts, root, schemas, where, data_dir)
    chosen = []
    for a in answers:
        rec = records.get(a.get("part"), {}).get(a["id"])
        if rec is None:
            raise ComplexPlusError(f"{a['id']!r} is not in the {a.get('part')} part's file", source, a.get("line"),
                                   field="id")
        if rec.tier != POOLED_TIER:
            raise ComplexPlusError(f"{a['id']!r} is a {rec.tier} record: complex+ pools {POOLED_TIER} answers only",
                                   source, a.get("line"), field="tier")
        chosen.append(rec)
    fresh, aggregate = score_predictions(answers, chosen, schemas, source=source)
    rows = []
    for answer, scored in zip(answers, fresh):
        merged = {**answer, **{k: scored[k] for k in ("id", "schema_id", "tier", "status", *METRIC_KEYS)}}
        rows.append({k: merged[k] for k in ROW_KEYS if k in merged})
    counts = {part: sum(1 for a in answers if a.get("part") == part) for part in PARTS}
    block = {**aggregate["overall"], "by_schema": aggregate["by_schema"],
             "parts": {part: {**parts[part], "n": counts[part]} for part in PARTS}}
    return ComplexPlus(rows, json.loads(json.dumps(block)))


def _check_saved_scores(answers: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                        files: Mapping[str, Path]) -> None:
    """Each answer's saved scores are the ones just computed: complex+ then matches the 158's numbers."""
    for answer, row in zip(answers, rows):
        for key in ("status", *METRIC_KEYS):
            saved, now = answer.get(key), row.get(key)
            same = (math.isclose(float(saved), float(now), abs_tol=1e-12) if isinstance(saved, (int, float))
                    and isinstance(now, (int, float)) else saved == now)
            if not same:
                run = files[answer["part"]].parent
                raise ComplexPlusError(f"saved {json.dumps(saved)}, today's scorer gives {json.dumps(now)}: rescore the "
                                       f"run first (python -m scaling.rescore {run})", files[answer["part"]],
                                       answer.get("line"), field=key)


def combine(run: str | os.PathLike, extra_run: str | os.PathLike,
            data_dir: str | os.PathLike | None = None) -> ComplexPlus:
    """complex+ of ``run`` (its complex answers) and ``extra_run`` (every answer: complex records only)."""
    run, extra_run = Path(run), Path(extra_run)
    results, extra = _read_results(run), _read_results(extra_run)
    _check_same_model(results, extra, run, extra_run)
    files = {"test": run / PREDICTIONS_FILE, "extra": extra_run / PREDICTIONS_FILE}
    answers = RunFolder(run).predictions(ComplexPlusError, empty="empty: no predictions")
    mine = [a for a in answers if a.get("tier") == POOLED_TIER]
    if not mine:
        raise ComplexPlusError(f"no {POOLED_TIER} answer to pool", files["test"], field="tier")
    theirs = RunFolder(extra_run).predictions(ComplexPlusError, empty="empty: no predictions")
    for a in theirs:
        if a.get("tier") != POOLED_TIER:
            raise ComplexPlusError(f"{a.get('tier')!r}: the extra run must hold {POOLED_TIER} answers only",
                                   files["extra"], a["line"], field="tier")
    ids = {a["id"] for a in mine}
    shared = next((a for a in theirs if a["id"] in ids), None)
    if shared is not None:
        raise ComplexPlusError(f"{shared['id']!r} is also an answer of {run}: the parts must be different examples",
                               files["extra"], shared["line"], field="id")
    parts = {}
    for part, rec, folder in (("test", results, run), ("extra", extra, extra_run)):
        name, sha = scored_file(rec, folder / RESULTS_FILE)
        parts[part] = {"file": name, "sha256": sha, "run": str(rec.get("run_name") or folder.name),
                       "job_dir": rec.get("job_dir"), "config_hash": rec.get("config_hash")}
    answers = [{**a, "part": "test"} for a in mine] + [{**a, "part": "extra"} for a in theirs]
    where = f"{run / RESULTS_FILE}"
    pooled = score_pooled(answers, parts, (results.get("data") or {}).get("root"),
                          _schemas(results, run / RESULTS_FILE, data_dir), where, f"{files['test']} + {files['extra']}",
                          data_dir)
    _check_saved_scores(answers, pooled.rows, files)
    return pooled


def rescore(run: str | os.PathLike, results: Mapping[str, Any], answers_now: Mapping[str, str],
            data_dir: str | os.PathLike | None = None) -> tuple[list[dict], ComplexPlus]:
    """``(saved rows, complex+ rescored)`` of a run carrying complex+ (for :mod:`scaling.rescore`):
    the answers of ``complex_plus.jsonl`` scored again against the files its ``parts`` recorded.
    ``answers_now``: id -> output of the run's ``predictions.jsonl``, which the ``test`` part's
    answers must still be."""
    run = Path(run)
    path, where = run / COMPLEX_PLUS_FILE, run / RESULTS_FILE
    block = tier_block(results.get("metrics"), COMPLEX_PLUS_TIER)
    if block is None or not isinstance(block.get("parts"), Mapping):
        raise ComplexPlusError("missing: the parts complex+ was pooled from", where, field=f"metrics.{COMPLEX_PLUS}.parts")
    if not path.is_file():
        raise ComplexPlusError(f"not found: metrics.{COMPLEX_PLUS} is scored from it (rebuild it with python -m "
                               f"scaling.complex_plus {run} <the extra run>)", path)
    saved = RunFolder(run).complex_plus(ComplexPlusError, empty="empty: no answers")
    for a in saved:
        if a.get("part") not in PARTS:
            raise ComplexPlusError(f"expected one of {', '.join(PARTS)}, got {a.get('part')!r}", path, a["line"],
                                   field="part")
        if a["part"] == "test" and answers_now.get(a["id"]) != a["output"]:
            raise ComplexPlusError(f"not the answer {PREDICTIONS_FILE} holds for {a['id']!r}: rebuild complex+ with "
                                   f"python -m scaling.complex_plus {run} <the extra run>", path, a["line"],
                                   field="output")
    parts = {p: {k: v for k, v in block["parts"][p].items() if k != "n"} for p in PARTS if p in block["parts"]}
    pooled = score_pooled(saved, parts, (results.get("data") or {}).get("root"), _schemas(results, where, data_dir),
                          str(where), str(path), data_dir)
    return [without_line(a) for a in saved], pooled


def read_pooled(run: str | os.PathLike, results: Mapping[str, Any], data_dir: str | os.PathLike | None = None
                ) -> tuple[list[dict], dict[str, Record]]:
    """A run's complex+ answers (``complex_plus.jsonl``, each with ``line``) and the record of each
    (id -> :class:`~scaling.data.io.Record`, from the files its ``parts`` recorded, checked by sha256)."""
    run = Path(run)
    where = run / RESULTS_FILE
    block = tier_block(results.get("metrics"), COMPLEX_PLUS_TIER)
    if block is None or not isinstance(block.get("parts"), Mapping):
        raise ComplexPlusError("missing: the parts complex+ was pooled from", where, field=f"metrics.{COMPLEX_PLUS}.parts")
    answers = RunFolder(run).complex_plus(ComplexPlusError, empty="empty: no answers")
    records = _records(block["parts"], (results.get("data") or {}).get("root"), _schemas(results, where, data_dir),
                       str(where), data_dir)
    chosen = {}
    for a in answers:
        rec = records.get(a.get("part"), {}).get(a["id"])
        if rec is None:
            raise ComplexPlusError(f"{a['id']!r} is not in the {a.get('part')} part's file", run / COMPLEX_PLUS_FILE,
                                   a["line"], field="id")
        chosen[a["id"]] = rec
    return answers, chosen


def pool_decoded(run: str | os.PathLike, results: Mapping[str, Any], test_rows: Sequence[Mapping[str, Any]],
                 extra_rows: Sequence[Mapping[str, Any]], source: str,
                 data_dir: str | os.PathLike | None = None) -> ComplexPlus:
    """complex+ of another decoder of a run's weights (llama.cpp on its exported files): the complex
    answers among ``test_rows`` (that decoder's answers to the run's test examples) and its
    ``extra_rows`` (answers to the extra part's records, :func:`extra_part`), scored against the files
    the run's own complex+ recorded. Rows need ``id`` and ``output``; their other keys are kept."""
    where = Path(run) / RESULTS_FILE
    block = tier_block(results.get("metrics"), COMPLEX_PLUS_TIER)
    if block is None or not isinstance(block.get("parts"), Mapping):
        raise ComplexPlusError("missing: the parts complex+ was pooled from", where, field=f"metrics.{COMPLEX_PLUS}.parts")
    parts = {p: {k: v for k, v in block["parts"][p].items() if k != "n"} for p in PARTS if p in block["parts"]}
    answers = ([{**r, "part": "test"} for r in test_rows if r.get("tier") == POOLED_TIER]
               + [{**r, "part": "extra"} for r in extra_rows])
    return score_pooled(answers, parts, (results.get("data") or {}).get("root"), _schemas(results, where, data_dir),
                        str(where), source, data_dir)


def extra_part(run: str | os.PathLike, results: Mapping[str, Any], data_dir: str | os.PathLike | None = None
               ) -> tuple[list[Record], dict[str, str]]:
    """The records of a run's complex+ extra part, in its answers' order, and the run's answer to each
    (id -> output): what another decoder of the same weights is asked, and compared with."""
    answers, records = read_pooled(run, results, data_dir)
    extra = [a for a in answers if a.get("part") == "extra"]
    return [records[a["id"]] for a in extra], {a["id"]: a["output"] for a in extra}


def write(run: str | os.PathLike, pooled: ComplexPlus) -> None:
    """Write complex+ into the run folder: its answers, then ``metrics.json``, then ``results.json``."""
    run = Path(run)
    write_jsonl(run / COMPLEX_PLUS_FILE, pooled.rows)
    results = RunFolder(run).results_json(ComplexPlusError)
    results["metrics"][COMPLEX_PLUS] = pooled.block
    if (run / METRICS_FILE).is_file():
        atomic_write_json(run / METRICS_FILE, results["metrics"])
    atomic_write_json(run / RESULTS_FILE, results)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scaling.complex_plus", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the run scored on v3's test split (158 examples, 25 complex)")
    ap.add_argument("extra_run", type=Path,
                    help="the same trained model scored on the extra complex records (v3_extra/test_complex.jsonl)")
    ap.add_argument("--data", type=Path, default=None,
                    help="the dataset root the runs' files are under (default: as recorded, then $EDGEJSON_DIR)")
    args = ap.parse_args(argv)
    try:
        pooled = combine(args.run, args.extra_run, args.data)
        write(args.run, pooled)
    except (DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parts = pooled.block["parts"]
    print(f"complex+ of {args.run}: {pooled.summary()} ({parts['test']['n']} {POOLED_TIER} answers of "
          f"{parts['test']['file']}, {parts['extra']['n']} of {parts['extra']['file']})")
    print(f"wrote {args.run / RESULTS_FILE} (metrics.{COMPLEX_PLUS}) and {args.run / COMPLEX_PLUS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

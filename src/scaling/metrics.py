"""Scoring raw model text against expected JSON: pure functions, no model, no torch.

Pipeline for one example (:func:`score_output`)::

    raw text --extract_json--> parsed value --metrics--> ExampleScore

and for a set of examples :func:`aggregate` turns per-example rows into means with 95%
intervals, overall, by tier and by schema: Wilson intervals for the 0/1 metrics
(:data:`PROPORTION_METRICS`), percentile bootstraps for the F1 means (:mod:`scaling.stats`).

Value semantics shared by every metric (see :func:`json_exact`):

* objects compare as unordered key sets, arrays in order;
* numbers compare by numeric value (``1 == 1.0``): JSON does not distinguish integer
  from float spellings and the EdgeJSON schemas mostly say ``"number"``;
* booleans equal booleans only (``true != 1``), unlike Python's ``==``;
* strings compare exactly (no case or whitespace normalisation).

Two metrics reproduce the published EdgeJSON harness (SLMBench ``eval.py``) so that our
numbers can be compared with theirs: :func:`field_f1_toplevel` and
:func:`compliance_keys_types`. The published harness compared values with Python's
``==`` (so ``true == 1`` there); here they use the value semantics above.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from scaling.data.io import TIERS
from scaling.stats import bootstrap_ci, bootstrap_intervals, bounded_mean_interval, wilson_interval

__all__ = [
    "OK",
    "JSON_NOT_FOUND",
    "SYNTAX_ERROR",
    "SCHEMA_ERROR",
    "STATUSES",
    "MAX_DEPTH",
    "MAX_CANDIDATES",
    "METRIC_KEYS",
    "HEADLINE_METRICS",
    "TIER_ORDER",
    "Extraction",
    "PRF",
    "ExampleScore",
    "extract_json",
    "json_exact",
    "flatten",
    "field_f1",
    "field_f1_toplevel",
    "schema_compliance",
    "compliance_keys_types",
    "score_output",
    "bootstrap_ci",
    "aggregate",
    "metric_interval",
    "PROPORTION_METRICS",
]

# ----------------------------------------------------------------------------- statuses

OK = "ok"
JSON_NOT_FOUND = "json_not_found"
SYNTAX_ERROR = "syntax_error"
SCHEMA_ERROR = "schema_error"
STATUSES = (OK, JSON_NOT_FOUND, SYNTAX_ERROR, SCHEMA_ERROR)

#: Extracted values nested deeper than this are refused (status ``SYNTAX_ERROR``).
#: EdgeJSON outputs nest at most a handful of levels; the bound keeps every recursive
#: consumer downstream (jsonschema, ``json.dumps``) far from Python's recursion limit.
MAX_DEPTH = 100

#: At most this many candidate starts are decoded per text. Each failed decode costs
#: time proportional to its position (the decoder's error locates line and column),
#: so the cap keeps brace-heavy garbage linear; realistic outputs fail a few times.
MAX_CANDIDATES = 1000

#: Per-example metrics that :func:`aggregate` averages, in report order.
METRIC_KEYS = (
    "json_exact",
    "field_f1",
    "field_f1_toplevel",
    "schema_compliance",
    "compliance_keys_types",
)

#: The headline metrics: W&B summaries per tier, the fit's default metrics.
HEADLINE_METRICS = ("json_exact", "field_f1", "schema_compliance")

#: Metrics that are 0/1 per example: their aggregate is a proportion, with a Wilson interval
#: (:func:`metric_interval`); the others (F1) are means with a bootstrap interval.
PROPORTION_METRICS = ("json_exact", "schema_compliance", "compliance_keys_types")

#: Tier order for reports (:data:`scaling.data.io.TIERS`); tiers not listed sort after these, by name.
TIER_ORDER = TIERS


# ---------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class Extraction:
    """Result of :func:`extract_json`.

    ``status`` is ``OK``, ``JSON_NOT_FOUND`` or ``SYNTAX_ERROR``. When ``OK``, ``value``
    is the decoded dict or list and ``text[start:end]`` is exactly its JSON text.
    Otherwise ``value``, ``start`` and ``end`` are None and ``error`` says why
    (for ``SYNTAX_ERROR``: the decoder's message for the first candidate tried).
    """

    status: str
    value: Any = None
    start: int | None = None
    end: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


class _Refused(ValueError):
    """A decoded candidate that is syntactically JSON but not acceptable strict JSON."""


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"non-standard constant {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 is valid JSON grammar but would become Infinity, which strict JSON
        # output (predictions.jsonl) cannot represent.
        raise _Refused(f"number {text[:20]} overflows a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            # json.loads keeps the last value silently: a wrong value then the right one would
            # score as exact. Which one the model meant is unknowable.
            raise _Refused(f"duplicate key {key[:40]!r}")
        out[key] = value
    return out


_STRICT = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys)
# Used only to find where a refused candidate ends, so the scan can skip past it.
_EXTENT = json.JSONDecoder(
    parse_constant=lambda _: None, parse_float=lambda _: 0.0, parse_int=lambda _: 0
)
_CANDIDATE = re.compile(r"[\[{]")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests containers more than ``limit`` levels deep."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _naive_close(text: str, start: int) -> int:
    """Index just past the bracket that closes ``text[start]``, counting brackets only
    (strings ignored); ``len(text)`` if it never closes. Used after a decoder
    RecursionError, where the decoder cannot tell us how far the broken value goes."""
    depth = 0
    for match in re.finditer(r"[\[\]{}]", text[start:]):
        depth += 1 if match.group() in "[{" else -1
        if depth == 0:
            return start + match.end()
    return len(text)


def extract_json(text: str) -> Extraction:
    """Find the first complete JSON object or array in raw model text.

    Candidates are the positions of ``{`` and ``[`` from left to right; each is decoded
    with :meth:`json.JSONDecoder.raw_decode`. The first candidate that decodes to a
    strict-JSON value wins, so prose before it, text after it, code fences
    (```` ```json ... ``` ````) and later objects are all ignored. The value itself may
    nest to any depth up to :data:`MAX_DEPTH`.

    A candidate that fails does not let its own insides compete: the scan resumes
    after the point where decoding failed (after the whole value when it was refused
    for content; nowhere when an unterminated string runs to the end of the text). So a
    truncated ``{"items": [{"a": 1}, {"b": "x`` is a ``SYNTAX_ERROR``, not the
    fragment ``{"a": 1}``, while ``see [note] {"a": 1}`` still finds ``{"a": 1}``.
    Objects that start *after* a mid-value error are still candidates: in
    ``{"a": 1 "b": {"c": 2}}`` (missing comma) the result is ``{"c": 2}``, which then
    normally fails its schema. At most :data:`MAX_CANDIDATES` candidates are tried, so
    long brace-heavy garbage costs milliseconds; giving up is a ``SYNTAX_ERROR``.

    Refused as not strict JSON: ``NaN``/``Infinity``/``-Infinity``, numbers that
    overflow a float (``1e999``), integers longer than Python's digit limit, raw
    control characters inside strings, an object with the same key twice, and nesting
    deeper than :data:`MAX_DEPTH`.

    Returns ``JSON_NOT_FOUND`` when the text has no ``{`` or ``[`` at all, and
    ``SYNTAX_ERROR`` when it has some but none decodes.
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_json expects str, got {type(text).__name__}")
    first_error = ""
    found_candidate = False
    pos = 0
    n = len(text)
    tried = 0
    while pos < n:
        match = _CANDIDATE.search(text, pos)
        if match is None:
            break
        if tried == MAX_CANDIDATES:
            first_error += f"; gave up after {MAX_CANDIDATES} candidates"
            break
        tried += 1
        start = match.start()
        found_candidate = True
        try:
            value, end = _STRICT.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            first_error = first_error or f"{exc.msg} (char {exc.pos})"
            if exc.msg.startswith("Unterminated string"):
                # The string runs to the end of the text: nothing after it is outside.
                break
            pos = max(exc.pos, start + 1)
            continue
        except RecursionError:
            first_error = first_error or f"nesting too deep (char {start})"
            pos = max(_naive_close(text, start), start + 1)
            continue
        except ValueError as exc:  # _Refused, or int() over the digit limit
            first_error = first_error or f"{exc} (char {start})"
            pos = _extent_end(text, start)
            continue
        if _depth_exceeds(value, MAX_DEPTH):
            first_error = first_error or f"nesting deeper than {MAX_DEPTH} (char {start})"
            pos = end
            continue
        return Extraction(OK, value, start, end)
    if not found_candidate:
        return Extraction(JSON_NOT_FOUND, error="no '{' or '[' in the text")
    return Extraction(SYNTAX_ERROR, error=first_error)


def _extent_end(text: str, start: int) -> int:
    """Where the candidate at ``start`` ends, decoding permissively (values ignored)."""
    try:
        _, end = _EXTENT.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        return max(exc.pos, start + 1)
    except (RecursionError, ValueError):
        return start + 1
    return end


# -------------------------------------------------------------------- value semantics


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _scalar_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if a is None or b is None:
        return a is None and b is None
    # Not JSON values (tuples, sets, objects); callers pass JSON, but never raise.
    return type(a) is type(b) and a == b


def json_exact(pred: Any, expected: Any) -> bool:
    """Deep equality of two JSON values under the package's value semantics.

    * dict vs dict: same key set (order irrelevant) and :func:`json_exact` values;
    * list vs list: same length and :func:`json_exact` elements in the same order;
    * numbers (int or float, not bool): equal by numeric value, so ``1`` equals
      ``1.0``;
    * booleans: equal only to the same boolean, never to a number (``true != 1``);
    * strings: exactly equal; ``null`` equals only ``null``;
    * a dict never equals a list, and containers never equal scalars.

    Iterative, so arbitrarily deep values never hit the recursion limit.
    """
    stack = [(pred, expected)]
    while stack:
        a, b = stack.pop()
        if isinstance(a, dict) or isinstance(b, dict):
            if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
                return False
            stack.extend((a[k], b[k]) for k in a)
        elif isinstance(a, list) or isinstance(b, list):
            if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
                return False
            stack.extend(zip(a, b))
        elif not _scalar_equal(a, b):
            return False
    return True


_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _key_segment(key: Any, first: bool) -> str:
    key = str(key)
    if _BARE_KEY.match(key):
        return key if first else "." + key
    return "[" + json.dumps(key, ensure_ascii=False) + "]"


def flatten(obj: Any) -> dict[str, Any]:
    """Map every leaf of a JSON value to its path.

    Paths: object keys that are identifiers join with dots (``a.b``), array indices
    use brackets (``items[0].price``), and any other key is written as a JSON string
    in brackets (``meta["content-type"]``, ``["a.b"]``), so distinct leaves always
    get distinct paths. The root itself has path ``""``.

    Leaves are scalars and *empty* containers: ``{}`` and ``[]`` are leaves
    themselves, so ``{"a": {}}`` differs from ``{}`` (a missing key) and from
    ``{"a": []}``. A non-empty container contributes only its leaves. The result is
    therefore never empty. Leaf values are returned unchanged; compare them with
    :func:`json_exact`.
    """
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict) and node:
            # Reversed so that the output follows document order.
            for key in reversed(list(node)):
                stack.append((path + _key_segment(key, not path), node[key]))
        elif isinstance(node, list) and node:
            for i in range(len(node) - 1, -1, -1):
                stack.append((f"{path}[{i}]", node[i]))
        else:
            out[path] = node
    return out


# ---------------------------------------------------------------------------- F1 metrics


@dataclass(frozen=True)
class PRF:
    """Precision, recall and their harmonic mean F1 (0.0 when both are 0)."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, tp: int, n_pred: int, n_expected: int) -> "PRF":
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_expected if n_expected else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1)


_ZERO = PRF(0.0, 0.0, 0.0)


def field_f1(pred: Any, expected: Any) -> PRF:
    """Leaf-level precision/recall/F1 of ``pred`` against ``expected``.

    Both are :func:`flatten`-ed into (path, leaf) pairs. A pair of ``pred`` is a true
    positive when ``expected`` has the same path with a :func:`json_exact`-equal leaf.
    ``precision = tp / #pred leaves``, ``recall = tp / #expected leaves``,
    ``f1 = 2pr / (p + r)`` (0 when ``p + r == 0``). One wrong leaf in ``items[1]``
    costs one pair, not the whole ``items`` field.

    Edge cases: ``pred`` that is not a dict or list (None = nothing extracted, or a
    scalar) scores 0. Two empty containers of the same kind score 1.0 (each is one
    ``""`` leaf); ``{}`` against ``[]`` scores 0.
    """
    if not isinstance(pred, (dict, list)):
        return _ZERO
    p_leaves = flatten(pred)
    e_leaves = flatten(expected)
    tp = sum(
        1 for path, leaf in p_leaves.items() if path in e_leaves and json_exact(leaf, e_leaves[path])
    )
    return PRF.from_counts(tp, len(p_leaves), len(e_leaves))


def field_f1_toplevel(pred: Any, expected: Any) -> PRF:
    """Top-level-key precision/recall/F1: the published EdgeJSON harness's FieldF1.

    A top-level key is a true positive when it is in both objects and its whole
    values are :func:`json_exact`-equal (so one wrong leaf deep in ``items`` loses the
    whole ``items`` key). ``precision = tp / #pred keys``, ``recall = tp / #expected
    keys``. As published: both objects empty scores 1.0; exactly one empty, or
    ``pred`` not a dict (None, list, scalar), scores 0. ``expected`` that is not a
    dict also scores 0 (the published code would have raised).
    """
    if not isinstance(pred, dict) or not isinstance(expected, dict):
        return _ZERO
    if not pred and not expected:
        return PRF(1.0, 1.0, 1.0)
    if not pred or not expected:
        return _ZERO
    tp = sum(1 for k in pred if k in expected and json_exact(pred[k], expected[k]))
    return PRF.from_counts(tp, len(pred), len(expected))


# ---------------------------------------------------------------------------- compliance

_VALIDATORS: dict[tuple[int, bool], tuple[Mapping[str, Any], Any]] = {}
_VALIDATOR_CACHE_MAX = 256


def _validator(schema: Mapping[str, Any], check_formats: bool) -> Any:
    """A cached Draft-07 validator for ``schema`` (construction is the slow part).

    Keyed by ``id(schema)``; the cache keeps a reference to the schema so the id
    cannot be reused by another object while the entry lives.
    """
    from jsonschema import Draft7Validator
    from jsonschema.exceptions import SchemaError

    key = (id(schema), check_formats)
    hit = _VALIDATORS.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None
    validator = Draft7Validator(
        schema, format_checker=Draft7Validator.FORMAT_CHECKER if check_formats else None
    )
    if len(_VALIDATORS) >= _VALIDATOR_CACHE_MAX:
        _VALIDATORS.clear()
    _VALIDATORS[key] = (schema, validator)
    return validator


def schema_compliance(pred: Any, schema: Mapping[str, Any], check_formats: bool = False) -> bool:
    """True when ``pred`` validates against ``schema`` under JSON Schema Draft 7.

    Real validation with :mod:`jsonschema` (types, required, enum, minimum,
    additionalProperties, ...). ``format`` keywords (date, date-time, email) are
    annotations only unless ``check_formats`` is true; note that EdgeJSON's own
    expected outputs carry timezone-less date-times that strict RFC 3339 rejects.
    ``pred`` None means nothing was extracted and is never compliant. Raises
    ValueError if ``schema`` itself is not a valid Draft-07 schema.
    """
    if pred is None:
        return False
    validator = _validator(schema, check_formats)
    try:
        return bool(validator.is_valid(pred))
    except RecursionError:
        return False


def _json_kind(x: Any) -> str:
    if isinstance(x, bool):
        return "boolean"
    if _is_number(x):
        return "number"
    if isinstance(x, str):
        return "string"
    if x is None:
        return "null"
    if isinstance(x, dict):
        return "object"
    if isinstance(x, list):
        return "array"
    return type(x).__name__


def compliance_keys_types(pred: Any, expected: Any) -> bool:
    """The published EdgeJSON harness's "schema compliance".

    True when ``pred`` is a non-empty dict that has every top-level key of
    ``expected`` with a value of the same JSON type: int and float are
    interchangeable, bool is its own type (not a number), null only matches null.
    Extra keys in ``pred`` are allowed and values are not compared. As published, an
    empty ``pred`` is never compliant; ``expected`` that is not a dict gives False.
    """
    if not isinstance(pred, dict) or not pred or not isinstance(expected, dict):
        return False
    return all(k in pred and _json_kind(pred[k]) == _json_kind(v) for k, v in expected.items())


# -------------------------------------------------------------------------- one example


@dataclass(frozen=True)
class ExampleScore:
    """Every metric for one example. ``status``:

    * ``OK``: a JSON value was extracted and it validates against the schema;
    * ``SCHEMA_ERROR``: extracted but fails the schema (other metrics still computed,
      so partial credit is kept);
    * ``SYNTAX_ERROR`` / ``JSON_NOT_FOUND``: nothing extracted; ``parsed`` is None,
      every metric is 0 / False.
    """

    status: str
    parsed: Any
    json_exact: bool
    field_f1: float
    precision: float
    recall: float
    field_f1_toplevel: float
    schema_compliance: bool
    compliance_keys_types: bool
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_output(
    text: str, expected: Any, schema: Mapping[str, Any], check_formats: bool = False
) -> ExampleScore:
    """Extract JSON from raw model ``text`` and score it against ``expected`` and
    ``schema`` with every metric of this module (see :class:`ExampleScore`)."""
    ex = extract_json(text)
    if not ex.ok:
        return ExampleScore(ex.status, None, False, 0.0, 0.0, 0.0, 0.0, False, False, ex.error)
    pred = ex.value
    compliant = schema_compliance(pred, schema, check_formats)
    prf = field_f1(pred, expected)
    return ExampleScore(
        status=OK if compliant else SCHEMA_ERROR,
        parsed=pred,
        json_exact=json_exact(pred, expected),
        field_f1=prf.f1,
        precision=prf.precision,
        recall=prf.recall,
        field_f1_toplevel=field_f1_toplevel(pred, expected).f1,
        schema_compliance=compliant,
        compliance_keys_types=compliance_keys_types(pred, expected),
        error="" if compliant else "does not validate against the schema",
    )


# ----------------------------------------------------------------------------- aggregate


def _summary(rows: list[Mapping[str, Any]], n_boot: int, seed: int, alpha: float) -> dict:
    matrix = np.array([[float(r[k]) for k in METRIC_KEYS] for r in rows], dtype=float)
    q = bootstrap_intervals(matrix, n_boot, seed, alpha)  # (2, k)
    means = matrix.mean(axis=0)
    counts = Counter(r["status"] for r in rows)
    ordered = {s: counts[s] for s in STATUSES if counts[s]}
    ordered.update({s: c for s, c in sorted(counts.items()) if s not in ordered})
    out: dict[str, Any] = {"n": len(rows)}
    out.update({k: float(means[j]) for j, k in enumerate(METRIC_KEYS)})
    out["status_counts"] = ordered
    out["ci"] = {k: list(wilson_interval(float(matrix[:, j].sum()), len(rows), 1 - alpha)) if k in PROPORTION_METRICS
                 else list(bounded_mean_interval(float(means[j]), len(rows), float(q[0, j]), float(q[1, j]), 1 - alpha))
                 for j, k in enumerate(METRIC_KEYS)}
    return out


def metric_interval(block: Mapping[str, Any], metric: str, level: float = 0.95) -> tuple[float, float] | None:
    """The interval of ``metric`` in an aggregate block (``results.json``'s ``metrics.overall``,
    a tier's or a schema's): for a proportion (:data:`PROPORTION_METRICS`) the Wilson interval
    of its share and ``n``, whatever the block recorded (runs before Wilson recorded a
    percentile bootstrap, [0, 0] at 0%); for a mean (F1) the recorded ``ci``, or the Wilson
    bound where that collapsed to a point (:func:`scaling.stats.bounded_mean_interval`). None
    when the block lacks what it needs."""
    value, n = block.get(metric), block.get("n")
    if metric in PROPORTION_METRICS and isinstance(value, (int, float)) and isinstance(n, int) and n > 0:
        return wilson_interval(float(value) * n, n, level)
    ci = (block.get("ci") or {}).get(metric)
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
        if isinstance(value, (int, float)) and isinstance(n, int):
            return bounded_mean_interval(float(value), n, float(ci[0]), float(ci[1]), level)
        return float(ci[0]), float(ci[1])
    return None


def _tier_rank(tier: str) -> tuple[int, str]:
    return (TIER_ORDER.index(tier), "") if tier in TIER_ORDER else (len(TIER_ORDER), tier)


def aggregate(
    rows: Sequence[Mapping[str, Any]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Means and bootstrap intervals of per-example metrics, overall and by group.

    ``rows`` are mappings with ``tier``, ``schema_id``, ``status`` and every key of
    :data:`METRIC_KEYS` (bools count as 0/1). Returns::

        {"overall": M, "by_tier": {tier: M}, "by_schema": {schema_id: M}}

    with ``M = {"n", <each metric key>: mean in [0, 1], "status_counts": {status:
    count}, "ci": {metric: [lo, hi]}}``. Intervals are 95% (``alpha=0.05``): Wilson
    intervals for the proportions (:data:`PROPORTION_METRICS`), percentile bootstraps over
    examples for the F1 means (:func:`bootstrap_ci`, every group drawn with the same
    ``seed``), so results are deterministic. Only groups that have rows
    appear; ``by_tier`` follows :data:`TIER_ORDER`, ``by_schema`` is ordered by tier
    then schema id. Raises ValueError on no rows or a row missing a key.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("aggregate needs at least one row")
    required = ("tier", "schema_id", "status", *METRIC_KEYS)
    for i, row in enumerate(rows):
        missing = [k for k in required if k not in row]
        if missing:
            raise ValueError(f"row {i} is missing {', '.join(missing)}")
    by_tier: dict[str, list] = {}
    by_schema: dict[str, list] = {}
    schema_tier: dict[str, str] = {}
    for row in rows:
        by_tier.setdefault(row["tier"], []).append(row)
        by_schema.setdefault(row["schema_id"], []).append(row)
        schema_tier.setdefault(row["schema_id"], row["tier"])
    return {
        "overall": _summary(rows, n_boot, seed, alpha),
        "by_tier": {
            t: _summary(by_tier[t], n_boot, seed, alpha) for t in sorted(by_tier, key=_tier_rank)
        },
        "by_schema": {
            s: _summary(by_schema[s], n_boot, seed, alpha)
            for s in sorted(by_schema, key=lambda s: (_tier_rank(schema_tier[s]), s))
        },
    }

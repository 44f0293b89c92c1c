"""Tests for scaling.metrics: exact semantics on hand-made cases, real EdgeJSON schemas
and records, and hypothesis properties over arbitrary text and JSON-like values."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling import metrics as M
from scaling.metrics import (
    JSON_NOT_FOUND,
    MAX_DEPTH,
    METRIC_KEYS,
    OK,
    PRF,
    SCHEMA_ERROR,
    SYNTAX_ERROR,
    aggregate,
    bootstrap_ci,
    compliance_keys_types,
    extract_json,
    field_f1,
    field_f1_toplevel,
    flatten,
    json_exact,
    metric_interval,
    schema_compliance,
    score_output,
)
from scaling.stats import wilson_interval

EDGEJSON = Path(os.environ.get("EDGEJSON_DIR", Path(__file__).resolve().parents[2] / "shared" / "edgejson"))
needs_data = pytest.mark.skipif(not (EDGEJSON / "v3" / "test.jsonl").is_file(), reason=f"no EdgeJSON at {EDGEJSON}")

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _schema(tier: str, schema_id: str) -> dict:
    return json.loads((EDGEJSON / "schemas" / tier / f"{schema_id}.json").read_text())


def _test_records(schema_id: str) -> list[dict]:
    with open(EDGEJSON / "v3" / "test.jsonl", encoding="utf-8") as fh:
        return [r for r in map(json.loads, fh) if r["schema_id"] == schema_id]


# ----------------------------------------------------------------------------- json_exact


@pytest.mark.parametrize(
    "a, b, equal",
    [
        (1, 1.0, True),  # JSON does not distinguish 1 and 1.0
        ({"x": 1}, {"x": 1.0}, True),
        (True, 1, False),  # unlike Python's ==
        (False, 0, False),
        (1.0, True, False),
        (True, True, True),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),  # key order irrelevant
        ([1, 2], [2, 1], False),  # list order matters
        ([1, 2], [1, 2, 2], False),
        ("Acme", "acme", False),  # strings exact
        ("a b", "a  b", False),
        (None, None, True),
        ({"a": None}, {}, False),  # null is not the same as missing
        ({}, [], False),
        ({"a": {}}, {"a": []}, False),
        ("1", 1, False),
        (0.1 + 0.2, 0.3, False),  # no numeric tolerance
    ],
)
def test_json_exact_semantics(a, b, equal):
    assert json_exact(a, b) is equal
    assert json_exact(b, a) is equal


def test_json_exact_deep_nesting_does_not_recurse():
    deep_a: list = []
    deep_b: list = []
    a, b = deep_a, deep_b
    for _ in range(5000):
        a.append([])
        b.append([])
        a, b = a[0], b[0]
    assert json_exact(deep_a, deep_b)
    b.append(1)
    assert not json_exact(deep_a, deep_b)


# ----------------------------------------------------------------------------- extraction


def test_extract_plain_object_reports_span():
    text = '{"a": 1, "b": [true, null]}'
    ex = extract_json(text)
    assert ex.status == OK and ex.ok
    assert ex.value == {"a": 1, "b": [True, None]}
    assert (ex.start, ex.end) == (0, len(text))


def test_extract_from_code_fence_and_prose():
    text = 'Sure! Here is the JSON you asked for:\n```json\n{"name": "Ann", "tags": ["x"]}\n```\nHope it helps {really}.'
    ex = extract_json(text)
    assert ex.status == OK
    assert ex.value == {"name": "Ann", "tags": ["x"]}
    assert json.loads(text[ex.start : ex.end]) == ex.value


def test_extract_nested_any_depth():
    value: dict = {"leaf": 1}
    for i in range(30):
        value = {f"k{i}": [value, {"n": i}]}
    ex = extract_json("prefix " + json.dumps(value) + " suffix")
    assert ex.status == OK and json_exact(ex.value, value)


def test_extract_first_of_several_objects_wins():
    ex = extract_json('{"a": 1}\n{"a": 2}\n{"a": 3}')
    assert ex.value == {"a": 1}
    assert (ex.start, ex.end) == (0, 8)


def test_extract_array():
    ex = extract_json('result: [{"a": 1}, {"a": 2}] done')
    assert ex.status == OK and ex.value == [{"a": 1}, {"a": 2}]


def test_extract_truncated_is_syntax_error_not_inner_fragment():
    full = json.dumps({"items": [{"a": 1}, {"b": 2}], "note": "hello"})
    for cut in (len(full) - 1, full.index('{"b"') + 3, full.index('"note"') + 3, 1):
        ex = extract_json("```json\n" + full[:cut])
        assert ex.status == SYNTAX_ERROR, full[:cut]
        assert ex.value is None and ex.start is None and ex.error
    # cut inside a string: brackets in the unfinished string are not candidates
    assert extract_json('{"id": 1, "note": "see [1] and {} for').status == SYNTAX_ERROR


def test_extract_skips_broken_bracket_prose_before_object():
    ex = extract_json('See [the note] and {not json} then {"a": 1}')
    assert ex.status == OK and ex.value == {"a": 1}


@pytest.mark.parametrize("text", ["", "no json here", "x = 1, y = 'two'", "}} ]] closing only"])
def test_extract_not_found(text):
    ex = extract_json(text)
    assert ex.status == JSON_NOT_FOUND and ex.value is None


@pytest.mark.parametrize(
    "text",
    ["{", "{'a': 1}", '{"a": 1,}', '[1, 2', '{"a": NaN}', '{"a": Infinity}', '[-Infinity]', '{"a": 1e999}'],
)
def test_extract_syntax_error_and_non_strict_json(text):
    assert extract_json(text).status == SYNTAX_ERROR


def test_extract_refused_object_does_not_leak_inner_object_but_later_one_wins():
    assert extract_json('{"a": NaN, "b": {"c": 1}}').status == SYNTAX_ERROR
    ex = extract_json('{"a": NaN, "b": {"c": 1}} then {"d": 2}')
    assert ex.status == OK and ex.value == {"d": 2}


def test_extract_refuses_nesting_deeper_than_max_depth():
    assert extract_json("[" * MAX_DEPTH + "]" * MAX_DEPTH).status == OK
    too_deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert extract_json(too_deep).status == SYNTAX_ERROR
    ex = extract_json(too_deep + ' {"ok": 1}')
    assert ex.value == {"ok": 1}
    # deeper than the decoder's own recursion limit
    assert extract_json("[" * 50_000).status == SYNTAX_ERROR


def test_extract_fast_on_long_garbage():
    cases = ["{x" * 250_000, "[" * 50_000, '{"a' * 17_000, '{"k": ' * 8_000, ('{"a": 1 "b": 2}\n' * 3000)]
    start = time.perf_counter()
    for text in cases:
        assert extract_json(text).status == SYNTAX_ERROR
    assert time.perf_counter() - start < 1.0


def test_extract_gives_up_after_max_candidates():
    broken = "{x " * M.MAX_CANDIDATES
    assert extract_json(broken[:-3] + '{"a": 1}').value == {"a": 1}
    ex = extract_json(broken + '{"a": 1}')
    assert ex.status == SYNTAX_ERROR and f"gave up after {M.MAX_CANDIDATES}" in ex.error


def test_extract_rejects_non_str():
    with pytest.raises(TypeError):
        extract_json(b"{}")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- flatten


def test_flatten_paths_and_empty_containers_are_leaves():
    obj = {"a": {"b": 1}, "items": [{"price": 2.5}, {"price": None}], "e": {}, "l": []}
    assert flatten(obj) == {
        "a.b": 1,
        "items[0].price": 2.5,
        "items[1].price": None,
        "e": {},
        "l": [],
    }
    assert flatten({}) == {"": {}}
    assert flatten([]) == {"": []}
    assert flatten(7) == {"": 7}
    assert flatten([[1], 2]) == {"[0][0]": 1, "[1]": 2}


def test_flatten_quotes_keys_so_paths_never_collide():
    dotted = flatten({"a.b": 1})
    nested = flatten({"a": {"b": 1}})
    assert dotted.keys() != nested.keys()
    assert flatten({"0": 1}).keys() != flatten([1]).keys()
    assert list(flatten({"x y": {"z": 1}, "": 2})) == ['["x y"].z', '[""]']


# ------------------------------------------------------------------------------------ F1


EXPECTED = {
    "invoice_number": "INV-1",
    "line_items": [
        {"description": "pen", "quantity": 2, "unit_price": 1.5},
        {"description": "ink", "quantity": 1, "unit_price": 9.0},
    ],
    "total_amount": 12.0,
}  # 8 leaves, 3 top-level keys


def test_field_f1_partial_credit_for_one_wrong_nested_leaf():
    pred = json.loads(json.dumps(EXPECTED))
    pred["line_items"][1]["unit_price"] = 8.0
    nested = field_f1(pred, EXPECTED)
    assert nested == PRF(7 / 8, 7 / 8, pytest.approx(7 / 8))
    # the published top-level definition loses the whole line_items key
    top = field_f1_toplevel(pred, EXPECTED)
    assert (top.precision, top.recall) == (2 / 3, 2 / 3)
    assert top.f1 == pytest.approx(2 / 3)


def test_field_f1_missing_extra_and_empty_container_visible():
    pred = {"invoice_number": "INV-1", "total_amount": 12, "line_items": [], "memo": "x"}
    prf = field_f1(pred, EXPECTED)
    # tp: invoice_number, total_amount (12 == 12.0); 4 pred leaves, 8 expected
    assert (prf.precision, prf.recall) == (2 / 4, 2 / 8)
    assert prf.f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    # {} is a leaf, so it is neither equal to a missing key nor to []
    assert field_f1({"a": 1, "b": {}}, {"a": 1}) == PRF(0.5, 1.0, pytest.approx(2 / 3))
    assert field_f1({"b": {}}, {"b": []}).f1 == 0.0


def test_field_f1_bool_is_not_number_and_int_is_float():
    assert field_f1({"a": 1, "b": True}, {"a": 1.0, "b": True}).f1 == 1.0
    assert field_f1({"a": True}, {"a": 1}).f1 == 0.0


def test_field_f1_edge_cases():
    assert field_f1({}, {}) == PRF(1.0, 1.0, 1.0)
    assert field_f1([], []) == PRF(1.0, 1.0, 1.0)
    assert field_f1({}, []).f1 == 0.0
    assert field_f1(None, EXPECTED) == PRF(0.0, 0.0, 0.0)
    assert field_f1("INV-1", EXPECTED).f1 == 0.0
    assert field_f1(3, 3).f1 == 0.0  # a scalar is never an extraction result
    assert field_f1({"x": 1}, {"y": 1}) == PRF(0.0, 0.0, 0.0)


def _published_field_f1(expected, predicted):
    """The published EdgeJSON harness's calculate_field_f1, restated for comparison."""
    if not expected and not predicted:
        return 1.0, 1.0, 1.0
    if not expected or not predicted or not isinstance(predicted, dict):
        return 0.0, 0.0, 0.0
    correct = sum(1 for k in set(expected) & set(predicted) if expected[k] == predicted[k])
    p = correct / len(predicted)
    r = correct / len(expected)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@pytest.mark.parametrize(
    "pred",
    [
        {"a": 1, "b": 2, "c": 3},
        {"a": 1},
        {"a": 2, "b": [1, 2]},
        {"b": [1, 2], "a": 1.0},
        {"z": 1},
        {},
        ["a"],
        None,
    ],
)
def test_field_f1_toplevel_matches_published_definition(pred):
    expected = {"a": 1, "b": [1, 2]}
    got = field_f1_toplevel(pred, expected)
    want = _published_field_f1(expected, pred)
    assert (got.precision, got.recall, got.f1) == pytest.approx(want)


def test_field_f1_toplevel_edges_and_bool_difference_from_published():
    assert field_f1_toplevel({}, {}) == PRF(1.0, 1.0, 1.0)
    assert field_f1_toplevel({"a": 1}, {}).f1 == 0.0
    assert field_f1_toplevel({"a": 1}, [1]).f1 == 0.0
    # published Python == counted True as 1; our value semantics do not
    assert field_f1_toplevel({"a": True}, {"a": 1}).f1 == 0.0


# ----------------------------------------------------------------------------- compliance


@pytest.mark.parametrize(
    "pred, ok",
    [
        ({"a": 2, "b": "x", "c": True, "d": None, "e": [], "f": {}}, True),
        ({"a": 2.5, "b": "", "c": False, "d": None, "e": [1], "f": {"k": 1}, "extra": 0}, True),
        ({"a": True, "b": "x", "c": True, "d": None, "e": [], "f": {}}, False),  # bool is not a number
        ({"a": 2, "b": "x", "c": 1, "d": None, "e": [], "f": {}}, False),  # number is not a bool
        ({"a": 2, "b": "x", "c": True, "d": "", "e": [], "f": {}}, False),  # null only matches null
        ({"a": 2, "b": "x", "c": True, "d": None, "e": {}, "f": {}}, False),
        ({"a": 2, "b": "x", "c": True, "d": None, "e": []}, False),  # missing key
        ({}, False),
        ([], False),
        (None, False),
    ],
)
def test_compliance_keys_types(pred, ok):
    expected = {"a": 1, "b": "s", "c": False, "d": None, "e": [0], "f": {"g": 1}}
    assert compliance_keys_types(pred, expected) is ok


def test_compliance_keys_types_empty_pred_never_compliant_as_published():
    assert compliance_keys_types({}, {}) is False
    assert compliance_keys_types({"x": 1}, {}) is True
    assert compliance_keys_types({"x": 1}, "not a dict") is False


@needs_data
def test_schema_compliance_on_real_invoice_schema():
    schema = _schema("medium", "invoice")
    records = _test_records("invoice")
    assert records
    for rec in records:
        assert schema_compliance(rec["expected_output"], schema)
    good = records[0]["expected_output"]
    missing = {k: v for k, v in good.items() if k != "invoice_number"}
    assert not schema_compliance(missing, schema)
    assert not schema_compliance({**good, "payment_status": "refunded"}, schema)  # enum
    assert not schema_compliance({**good, "surprise": 1}, schema)  # additionalProperties: false
    assert not schema_compliance({**good, "total_amount": "12"}, schema)
    assert not schema_compliance({**good, "line_items": []}, schema)  # minItems
    assert not schema_compliance(None, schema)
    assert not schema_compliance([good], schema)


@needs_data
def test_schema_compliance_format_checking_is_opt_in():
    schema = _schema("simple", "notification")
    expected = next(
        r["expected_output"]
        for r in _test_records("notification")
        if "T" in r["expected_output"].get("timestamp", "") and not r["expected_output"]["timestamp"].endswith("Z")
    )
    assert schema_compliance(expected, schema)
    # EdgeJSON date-times carry no timezone, which strict RFC 3339 rejects
    assert not schema_compliance(expected, schema, check_formats=True)
    with_tz = {**expected, "timestamp": expected["timestamp"] + "Z"}
    assert schema_compliance(with_tz, schema, check_formats=True)


def test_schema_compliance_caches_validators_and_rejects_bad_schema():
    schema = {"type": "object", "required": ["a"]}
    assert M._validator(schema, False) is M._validator(schema, False)
    assert M._validator(schema, False) is not M._validator(schema, True)
    assert schema_compliance({"a": 1}, schema) and not schema_compliance({}, schema)
    with pytest.raises(ValueError, match="invalid JSON Schema"):
        schema_compliance({}, {"type": "no-such-type"})


# ---------------------------------------------------------------------------- score_output


@needs_data
def test_score_output_statuses_on_real_record():
    schema = _schema("medium", "invoice")
    expected = _test_records("invoice")[0]["expected_output"]
    text = json.dumps(expected, indent=2)

    perfect = score_output("```json\n" + text + "\n```", expected, schema)
    assert perfect.status == OK and perfect.parsed == expected
    assert perfect.json_exact and perfect.schema_compliance and perfect.compliance_keys_types
    assert perfect.field_f1 == perfect.precision == perfect.recall == perfect.field_f1_toplevel == 1.0

    truncated = score_output(text[: len(text) // 2], expected, schema)
    assert truncated.status == SYNTAX_ERROR and truncated.parsed is None
    assert (truncated.json_exact, truncated.field_f1, truncated.field_f1_toplevel) == (False, 0.0, 0.0)
    assert not truncated.schema_compliance and not truncated.compliance_keys_types

    assert score_output("I can't help with that.", expected, schema).status == JSON_NOT_FOUND

    extra = score_output(json.dumps({**expected, "memo": "x"}), expected, schema)
    assert extra.status == SCHEMA_ERROR and not extra.schema_compliance
    assert extra.recall == 1.0 and 0 < extra.precision < 1 and extra.compliance_keys_types
    row = extra.to_dict()
    assert set(METRIC_KEYS) <= set(row) and row["status"] == SCHEMA_ERROR


# ------------------------------------------------------------------------------ bootstrap


def test_bootstrap_ci_contains_mean_and_is_deterministic():
    rng = np.random.default_rng(1)
    values = rng.random(158) < 0.3
    lo, hi = bootstrap_ci(values, n_boot=1000, seed=7)
    assert lo <= values.mean() <= hi and lo < hi
    assert bootstrap_ci(values, n_boot=1000, seed=7) == (lo, hi)
    assert bootstrap_ci(values, n_boot=1000, seed=8) != (lo, hi)
    # width near the normal approximation 2 * 1.96 * sqrt(p(1-p)/n)
    p = values.mean()
    assert hi - lo == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / 158), rel=0.2)


def test_bootstrap_ci_degenerate_and_bad_arguments():
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_ci([0.25]) == (0.25, 0.25)
    for bad in (dict(values=[]), dict(values=[1.0], n_boot=0), dict(values=[1.0], alpha=1.0)):
        with pytest.raises(ValueError):
            bootstrap_ci(**bad)


def _row(tier, schema_id, exact, f1, status=OK):
    return {
        "tier": tier,
        "schema_id": schema_id,
        "status": status,
        "json_exact": exact,
        "field_f1": f1,
        "field_f1_toplevel": f1,
        "schema_compliance": status == OK,
        "compliance_keys_types": True,
    }


def test_aggregate_groups_counts_means_and_order():
    rows = (
        [_row("complex", "nested_organization", False, 0.5, SYNTAX_ERROR)] * 2
        + [_row("simple", "rating", True, 1.0)] * 3
        + [_row("medium", "invoice", False, 0.25, SCHEMA_ERROR)]
        + [_row("simple", "location", False, 0.0, JSON_NOT_FOUND)]
    )
    agg = aggregate(rows, n_boot=200, seed=3)
    assert list(agg) == ["overall", "by_tier", "by_schema"]
    assert list(agg["by_tier"]) == ["simple", "medium", "complex"]
    assert list(agg["by_schema"]) == ["location", "rating", "invoice", "nested_organization"]
    overall = agg["overall"]
    assert overall["n"] == 7
    assert overall["json_exact"] == pytest.approx(3 / 7)
    assert overall["field_f1"] == pytest.approx((1.0 + 3.0 + 0.25) / 7)
    assert overall["schema_compliance"] == pytest.approx(3 / 7)
    assert overall["status_counts"] == {OK: 3, JSON_NOT_FOUND: 1, SYNTAX_ERROR: 2, SCHEMA_ERROR: 1}
    assert {t: m["n"] for t, m in agg["by_tier"].items()} == {"simple": 4, "medium": 1, "complex": 2}
    assert agg["by_tier"]["simple"]["json_exact"] == pytest.approx(0.75)
    # 3 of 3 right: Wilson's interval still says how low the rate could be (a bootstrap said [1, 1]).
    assert agg["by_schema"]["rating"]["ci"]["json_exact"] == list(wilson_interval(3, 3))
    assert agg["by_schema"]["rating"]["ci"]["json_exact"][0] == pytest.approx(0.4385, abs=1e-4)
    for m in [overall, *agg["by_tier"].values(), *agg["by_schema"].values()]:
        assert set(m["ci"]) == set(METRIC_KEYS)
        for key in METRIC_KEYS:
            lo, hi = m["ci"][key]
            assert 0.0 <= lo <= m[key] <= hi <= 1.0
    assert aggregate(rows, n_boot=200, seed=3) == agg
    json.dumps(agg, allow_nan=False)  # plain JSON types only


def test_aggregate_ci_is_wilson_for_proportions_and_bootstrap_for_means():
    rows = [_row("simple", "rating", i % 3 == 0, (i % 5) / 4) for i in range(40)]
    agg = aggregate(rows, n_boot=500, seed=11)
    values = [float(r["field_f1"]) for r in rows]
    assert tuple(agg["overall"]["ci"]["field_f1"]) == bootstrap_ci(values, n_boot=500, seed=11)
    k = sum(bool(r["json_exact"]) for r in rows)
    assert tuple(agg["overall"]["ci"]["json_exact"]) == wilson_interval(k, 40)
    assert metric_interval(agg["overall"], "json_exact") == wilson_interval(k, 40)
    # None right: the interval still says how high the rate could be.
    none = aggregate([_row("complex", "x", False, 0.0) for _ in range(25)], n_boot=100)
    lo, hi = none["overall"]["ci"]["json_exact"]
    assert lo == 0.0 and 0.13 < hi < 0.14
    # Every F1 0: the bootstrap has nothing to resample; the bound for a mean of [0, 1] values.
    assert none["overall"]["ci"]["field_f1"] == [lo, hi]
    # A block recorded before Wilson (a bootstrap's [0, 0]) reads as Wilson too; F1 as recorded
    # unless it collapsed.
    old = {**none["overall"], "ci": {"json_exact": [0.0, 0.0], "field_f1": [0.0, 0.0]}}
    assert metric_interval(old, "json_exact") == (lo, hi) == metric_interval(old, "field_f1")
    assert metric_interval(agg["overall"], "field_f1") == tuple(agg["overall"]["ci"]["field_f1"])


def test_aggregate_rejects_empty_and_incomplete_rows():
    with pytest.raises(ValueError, match="at least one row"):
        aggregate([])
    row = _row("simple", "rating", True, 1.0)
    del row["field_f1"]
    with pytest.raises(ValueError, match="row 0 is missing field_f1"):
        aggregate([row])


# ---------------------------------------------------------------------- property-based

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
finite_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
containers = json_values.filter(lambda v: isinstance(v, (dict, list)))
text_with_json_chars = st.text(alphabet=st.sampled_from(list('{}[]":,.-0123456789 aeNtrufl\n\\')) | st.characters(), max_size=300)


@PROPS
@given(text_with_json_chars)
def test_prop_extract_never_raises_and_span_is_the_value(text):
    ex = extract_json(text)
    assert ex.status in (OK, JSON_NOT_FOUND, SYNTAX_ERROR)
    if ex.ok:
        assert isinstance(ex.value, (dict, list))
        assert json_exact(json.loads(text[ex.start : ex.end]), ex.value)
    else:
        assert ex.value is None


@PROPS
@given(finite_values.filter(lambda v: isinstance(v, (dict, list))), st.text(alphabet=st.characters(blacklist_characters="{["), max_size=20))
def test_prop_extract_round_trips_embedded_json(value, prose):
    ex = extract_json(prose + "```json\n" + json.dumps(value) + "\n```" + prose)
    assert ex.status == OK and json_exact(ex.value, value)


@PROPS
@given(json_values, json_values)
def test_prop_metrics_accept_anything(pred, expected):
    assert isinstance(json_exact(pred, expected), bool)
    assert json_exact(pred, expected) == json_exact(expected, pred)
    for prf in (field_f1(pred, expected), field_f1_toplevel(pred, expected)):
        for v in (prf.precision, prf.recall, prf.f1):
            assert 0.0 <= v <= 1.0
    assert isinstance(compliance_keys_types(pred, expected), bool)
    assert isinstance(schema_compliance(pred, {"type": "object", "required": ["a"]}), bool)
    if json_exact(pred, expected) and isinstance(pred, (dict, list)):
        assert field_f1(pred, expected).f1 == 1.0


@PROPS
@given(json_values)
def test_prop_reflexive(value):
    assert json_exact(value, value)
    leaves = flatten(value)
    assert leaves and all(not isinstance(v, (dict, list)) or not v for v in leaves.values())
    if isinstance(value, (dict, list)):
        assert field_f1(value, value) == PRF(1.0, 1.0, 1.0)
    if isinstance(value, dict):
        assert field_f1_toplevel(value, value).f1 == 1.0
        assert compliance_keys_types(value, value) is bool(value)


@needs_data
@PROPS
@given(text_with_json_chars, json_values)
def test_prop_score_output_accepts_anything_against_real_schema(text, value):
    schema = _schema("complex", "nested_organization")
    expected = {"organization": {"name": "x"}}
    for out in (score_output(text, expected, schema), score_output(json.dumps(value, allow_nan=True), value, schema)):
        assert out.status in (OK, SCHEMA_ERROR, SYNTAX_ERROR, JSON_NOT_FOUND)
        assert 0.0 <= out.field_f1 <= 1.0
        # extraction refuses NaN/Infinity/1e999, so every row is strict JSON
        json.dumps(out.to_dict(), allow_nan=False)

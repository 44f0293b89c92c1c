"""scaling.data.template and scaling.data.readings: the prompt template written and read back.

The counting and weighting of readings is checked against brute force (every answer of a small
schema drawn with the generator's probabilities, grouped by the prompt it renders to); the
round trip and the issue's table on the real EdgeJSON files."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from scaling.data import Record, load_schemas, read_records
from scaling.data.readings import ITEM_KEEP, read_prompt, read_record, same_value
from scaling.data.template import header_line, instruction_line, label, render_body, render_prompt, schema_ordered

# ------------------------------------------------------------------------------ the template


def test_labels_headers_and_scalars_as_the_generator_writes_them():
    assert label("device_id") == "Device Id" and label("18_24") == "18 24" and label("55_plus") == "55 Plus"
    assert header_line("invoice", {"title": "Invoice"}) == "=== Invoice ==="
    assert header_line("ecommerce_analytics", {"title": "E-commerce Analytics"}) == "E-commerce Analytics Report"
    assert header_line("log_entry", {"title": "Application Log Entry"}) == "New Application Log Entry"
    assert header_line("tag_list", {}) == "Tag List"  # no title: the id in title case
    assert instruction_line("tag_list", {"title": "Tag List"}) == "Please extract the tag list information as JSON."
    body = render_body({"ok": True, "n": 1796.0, "tags": ["a", "b"], "loc": {"x": 1},
                        "items": [{"p": 1}, {}, {"p": 2, "q": "z"}], "empty": {}})
    assert body == ["Ok: True", "N: 1796.0", "Tags:", "  a", "  b", "Loc:", "  X: 1", "Items:", "  P: 1", "  P: 2",
                    "  Q: z", "Empty:"]


def test_schema_ordered_puts_keys_in_property_order_at_every_level():
    schema = {"properties": {"a": {}, "b": {"type": "array", "items": {"properties": {"x": {}, "y": {}}}}}}
    got = schema_ordered({"zz": 0, "b": [{"y": 1, "x": 2}], "a": 3}, schema)
    assert list(got) == ["a", "b", "zz"] and list(got["b"][0]) == ["x", "y"]


# --------------------------------------------------------------------------- counting, brute force

ITEM = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}}}
VALUES = {"a": "x", "b": 7, "c": True, "p": "u", "q": 2.5}


def _schema(items: dict, lo: int | None = None, hi: int | None = None) -> dict:
    lst = {"type": "array", "items": items, **({"minItems": lo} if lo is not None else {}),
           **({"maxItems": hi} if hi is not None else {})}
    return {"title": "Thing", "type": "object", "properties": {"name": {"type": "string"}, "things": lst},
            "required": ["name", "things"]}


def _draws(item: dict, depth_lists: bool = True) -> list[tuple[dict, float]]:
    """Every item the generator can draw for ``item`` (values fixed per key), with its probability."""
    props = item["properties"]
    required = set(item.get("required", []))
    optional = [k for k in props if k not in required]
    out = []
    for kept in itertools.product([False, True], repeat=len(optional)):
        keys = [k for k in props if k in required or kept[optional.index(k)]]
        p = 1.0
        for flag in kept:
            p *= ITEM_KEEP if flag else 1 - ITEM_KEEP
        choices = [[]]
        for k in keys:
            sub = props[k]
            opts = _list_draws(sub) if sub.get("type") == "array" else [(VALUES[k], 1.0)]
            choices = [c + [(k, v, q)] for c in choices for v, q in opts]
        for c in choices:
            prob = p
            for _, _, q in c:
                prob *= q
            out.append(({k: v for k, v, _ in c}, prob))
    return out


def _list_draws(schema: dict) -> list[tuple[list, float]]:
    lo, hi = schema.get("minItems", 1), min(schema.get("maxItems", 5), 5)
    items = _draws(schema["items"])
    out = []
    for n in range(lo, hi + 1):
        for combo in itertools.product(items, repeat=n):
            p = 1.0 / (hi - lo + 1)
            for _, q in combo:
                p *= q
            out.append(([x for x, _ in combo], p))
    return out


SCHEMAS = {
    "optional keys, empty items possible": _schema(ITEM, 1, 3),
    # one required key splits the lines into items one way only
    "a required key": _schema({**ITEM, "required": ["b"]}, 1, 3),
    "two to four items": _schema(ITEM, 2, 4),
    "a list in each item": _schema({"type": "object", "properties": {
        "a": {"type": "string"},
        "sub": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {
            "p": {"type": "string"}, "q": {"type": "number"}}}}}}, 1, 2),
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_readings_count_and_weigh_every_answer_that_renders_to_the_prompt(name):
    schema = SCHEMAS[name]
    by_prompt: dict[str, list[tuple[list, float]]] = defaultdict(list)
    for things, p in _list_draws(schema["properties"]["things"]):
        by_prompt[render_prompt("thing", schema, {"name": "n", "things": things})].append((things, p))
    assert len(by_prompt) > 5
    assert any(len(v) > 1 for v in by_prompt.values()) == (name != "a required key")
    for prompt, answers in by_prompt.items():
        r = read_prompt(prompt, "thing", schema)
        total = sum(p for _, p in answers)
        assert r.error is None and r.count == len(answers), prompt
        for things, p in answers:
            assert r.posterior({"name": "n", "things": things}) == pytest.approx(p / total)
        assert r.best_posterior == pytest.approx(max(p for _, p in answers) / total)
        assert render_prompt("thing", schema, r.best) == prompt
        assert r.determined == (len(answers) == 1)
        assert r.posterior({"name": "n", "things": []}) == 0.0  # not a reading: no item at all


def test_an_answer_that_is_no_reading_says_where_it_leaves_the_prompt():
    schema = SCHEMAS["a required key"]
    r = read_prompt(render_prompt("thing", schema, {"name": "n", "things": [{"b": 7}, {"a": "x", "b": 7}]}), "thing",
                    schema)
    assert r.posterior({"name": "n", "things": [{"b": 7}, {"a": "x", "b": 7}]}) > 0
    assert r.explain({"name": "n", "things": [{"b": 7}]})[1] == "things: 2 key lines of the prompt are in no item"
    assert r.explain({"name": "m", "things": []})[1] == "name: 'm' is not 'n'"
    assert "4 items" in r.explain({"name": "n", "things": [{"b": 7}] * 4})[1]


def test_multi_line_values_odd_lines_and_frames():
    schema = {"title": "Place", "type": "object", "properties": {"address": {"type": "string"},
                                                                "city": {"type": "string"}, "n": {"type": "number"}}}
    gold = {"address": "1 Main St\nSuite 2\nTown, ST 123", "city": "X", "n": 3.5}
    prompt = render_prompt("place", schema, gold)
    r = read_prompt(prompt, "place", schema)
    assert r.count == 1 and same_value(r.best, gold) and r.best["address"] == gold["address"]
    assert r.posterior({**gold, "n": 3.50}) == 1.0  # numbers by value
    bad = read_prompt(prompt.replace("N: 3.5", "N: three"), "place", schema)
    assert bad.frame and bad.count == 0 and "'three' is not a number" in bad.error
    # a line with no indent that names no key continues the string above it
    town = read_prompt(prompt.replace("City: X", "Town: X"), "place", schema)
    assert town.best == {"address": gold["address"] + "\nTown: X", "n": 3.5}
    indented = read_prompt(prompt.replace("City", "  City"), "place", schema)
    assert "line 6: 'City: X' is indented 1, expected 0" in indented.error
    unknown = read_prompt(prompt.replace("N: 3.5", "N: 3.5\nM: 1"), "place", schema)
    assert "line 8: 'M' is not a key of the answer" in unknown.error
    other = read_prompt("Some other prompt\n\nCity: X", "place", schema)
    assert not other.frame and other.count == 0


def test_a_gold_is_told_apart_from_its_prompt():
    schema = {"title": "Rating", "type": "object", "properties": {"rating": {"type": "integer"},
                                                                 "name": {"type": "string"},
                                                                 "price": {"type": "number"}}}

    def check(gold, prompt_of=None):
        prompt = render_prompt("rating", schema, prompt_of or gold)
        return read_record(Record("r1", "rating", "simple", prompt, gold, "f", 1), schema)

    assert check({"rating": 5, "name": "A", "price": 2.0}).check.kind == "renders"
    reordered = check({"name": "A", "rating": 5, "price": 2.0}, {"rating": 5, "name": "A", "price": 2.0})
    assert (reordered.check.kind, reordered.check.message) == ("order_or_format", "the gold differs from the prompt "
                                                                                  "only in key order")
    assert reordered.ceiling == 1.0 and reordered.reader_exact and reordered.determined
    number = check({"rating": 5, "name": "A", "price": 2}, {"rating": 5, "name": "A", "price": 2.0})
    assert number.check.message.endswith("only in number format")
    altered = check({"rating": 5, "name": "B", "price": 2.0}, {"rating": 5, "name": "A", "price": 2.0})
    assert altered.check == altered.check.__class__(
        "contradicts", "line 4: the prompt has 'Name: A', the gold renders 'Name: B'", 4)
    assert altered.ceiling == 0.0 and not altered.reader_exact and not altered.determined
    added = check({"rating": 5, "name": "A", "price": 2.0}, {"rating": 5, "name": "A"})
    assert added.check.message == "after line 4: the gold renders 'Price: 2.0', which the prompt does not have"
    free = read_record(Record("r2", "rating", "simple", "Rate it: 5", {"rating": 5}, "f", 1), schema)
    assert free.check.kind == "not_template" and free.ceiling is None


# ------------------------------------------------------------------------------ the real files


@pytest.fixture(scope="module")
def edgejson(edgejson_dir):
    schemas = load_schemas(edgejson_dir / "schemas")
    files = {name: edgejson_dir / name for name in ("v3/train.jsonl", "v3/test.jsonl", "v3_extra/train.jsonl",
                                                   "v3_extra/test_complex.jsonl")}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        pytest.skip(f"EdgeJSON files missing: {missing}")
    return schemas, {n: [read_record(r, schemas[r.schema_id].schema) for r in read_records(p, schemas)]
                     for n, p in files.items()}, files


def test_every_template_rendered_record_reads_back(edgejson):
    schemas, readings, files = edgejson
    for name, path in files.items():
        raw = {json.loads(line)["id"]: json.loads(line) for line in Path(path).read_text().splitlines()}
        rendered = 0
        for r in readings[name]:
            rec = raw[r.id]
            if render_prompt(r.schema_id, schemas[r.schema_id].schema, rec["expected_output"]) != rec["prompt"]:
                assert r.check.kind != "renders", r.id
                continue
            rendered += 1
            assert r.check.kind == "renders" and r.gold_posterior > 0 and r.readings.count >= 1, r.id
            assert render_prompt(r.schema_id, schemas[r.schema_id].schema, r.readings.best) == rec["prompt"], r.id
            assert r.ceiling == r.readings.best_posterior and r.ceiling >= r.gold_posterior * (1 - 1e-12)
        expected = {"v3/train.jsonl": 602, "v3/test.jsonl": 153, "v3_extra/train.jsonl": 1258,
                    "v3_extra/test_complex.jsonl": 120}[name]
        assert rendered == expected, name


def test_the_gold_that_contradicts_its_prompt_is_named(edgejson):
    _, readings, _ = edgejson
    test = {r.id.removeprefix("edgejson_"): r.check for r in readings["v3/test.jsonl"] if r.check.kind != "renders"}
    assert {k: (c.kind, c.line) for k, c in test.items()} == {
        "simple_config_qwen_017": ("contradicts", 4), "tag_list_qwen_004": ("contradicts", 3),
        "notification_qwen_010": ("contradicts", 5), "location_qwen_011": ("contradicts", 5),
        "support_ticket_qwen_002": ("contradicts", 7)}
    assert "'Language: Own', the gold renders 'Language: en'" in test["simple_config_qwen_017"].message
    assert "the gold renders 'Priority: normal', which the prompt does not have" in test["notification_qwen_010"].message
    assert "which the gold does not have" in test["support_ticket_qwen_002"].message  # the prompt's description
    train = Counter(r.check.kind for r in readings["v3/train.jsonl"])
    assert train == {"renders": 602, "contradicts": 19, "order_or_format": 8}
    formats = Counter(r.check.message.rsplit(" in ", 1)[1] for r in readings["v3/train.jsonl"]
                      if r.check.kind == "order_or_format")
    assert formats == {"key order": 7, "number format": 1}
    assert all(r.check.kind == "renders" for n in ("v3_extra/train.jsonl", "v3_extra/test_complex.jsonl")
               for r in readings[n])


def _table(rows):
    out = {}
    for tier in ("simple", "medium", "complex", "all"):
        rs = [r for r in rows if tier in ("all", r.tier)]
        if rs:
            out[tier] = (len(rs), sum(r.check.kind == "contradicts" for r in rs), sum(r.determined for r in rs),
                         sum(r.reader_exact for r in rs), round(100 * sum(r.ceiling for r in rs) / len(rs), 1))
    return out


def test_each_tiers_ceiling_on_v3_test_and_complex_plus(edgejson):
    _, readings, _ = edgejson
    # n, gold contradicts the prompt, only one answer fits, most probable reading = gold, expected ceiling %
    assert _table(readings["v3/test.jsonl"]) == {
        "simple": (76, 4, 72, 72, 94.7), "medium": (57, 1, 49, 53, 93.5), "complex": (25, 0, 4, 17, 70.2),
        "all": (158, 5, 125, 142, 90.4)}
    assert _table(readings["v3_extra/test_complex.jsonl"]) == {"complex": (120, 0, 27, 84, 71.6),
                                                               "all": (120, 0, 27, 84, 71.6)}
    by_schema = defaultdict(list)
    for r in readings["v3/test.jsonl"] + readings["v3_extra/test_complex.jsonl"]:
        if r.tier == "complex":
            by_schema[r.schema_id].append(r.ceiling)
    means = {s: sum(v) / len(v) for s, v in by_schema.items()}
    assert min(means, key=means.get) == "iot_device_network" and means["iot_device_network"] < 0.45
    assert max(means, key=means.get) == "nested_organization" and means["nested_organization"] > 0.99

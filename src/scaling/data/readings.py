"""Reading a prompt back: every answer that renders to it, weighted as the generator draws them.

EdgeJSON's prompts are the template rendering of their answers (:mod:`scaling.data.template`).
Most of the rendering can be undone line by line: labels name keys, indents nest, keys come in
the schema's order, a list of scalars has one line per item. One thing is lost: **a list of
objects writes its items' key lines one after the other with no separator**, and an item whose
optional keys were all dropped writes no line at all. Inside an item the keys keep schema
order, so a key that does not come later in that order starts a new item; a key that does may
continue the item or start another. Where items have optional keys several answers render to
one prompt.

The generator's probabilities are known (``_generate_object``, ``_generate_nested_object``,
``_generate_array``): a list's length is uniform on ``minItems`` (default 1) to
``min(maxItems, 5)``; an item keeps each optional key with probability 0.6 (:data:`ITEM_KEEP`).
Every answer that renders to the prompt (a *reading*) gets the probability of drawing it, and
the readings' posteriors follow. Values are the same in every reading (each line is read once),
and which optional keys an object has is visible outside lists, so the choices are the
segmentations of the lists of objects: each list is counted and weighted on its own by dynamic
programming, and since the lists' choices are independent, counts and posteriors multiply
(their product is never enumerated).

:func:`read_prompt` gives a prompt's :class:`Readings`: how many fit, the most probable
reading, its posterior, and :meth:`Readings.posterior` of any answer. :func:`read_record` adds
what the record's own answer (its gold) is: a reading (exactly rendered, or rendered but for key
order or number format) or not (it contradicts its prompt; the differing line is named), and
the record's ceiling, the best exact match any reader of the prompt can expect. Pure Python.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .template import INDENT, header_line, instruction_line, label, render_prompt, schema_ordered

__all__ = ["ITEM_KEEP", "TOP_KEEP", "MAX_LIST", "PROMPT_KINDS", "Readings", "ListReading", "PromptCheck",
           "RecordReading", "read_prompt", "read_record", "same_value"]

#: The generator keeps an optional key of a nested object (a list item too) when
#: ``random.random() > 0.4``, of the top-level object when ``> 0.3``.
ITEM_KEEP = 0.6
TOP_KEEP = 0.7
#: A list's length is drawn from ``minItems`` (default 1) to ``min(maxItems, 5)``.
MAX_LIST = 5

#: What a record's gold is to its prompt (:class:`PromptCheck`):
#: ``renders``: the template writes the gold as exactly this prompt;
#: ``order_or_format``: the gold is a reading of the prompt, but its keys come in another order
#: or a number is written another way (``1796`` for ``1796.0``): no contradiction;
#: ``contradicts``: no reading of the prompt is the gold (a value altered, a line added or missing);
#: ``not_template``: the prompt's first or last line is not the template's, so nothing is read.
PROMPT_KINDS = ("renders", "order_or_format", "contradicts", "not_template")

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class _Unreadable(ValueError):
    """The body is not the template's rendering of any answer; ``str`` names the line."""


def same_value(a: Any, b: Any) -> bool:
    """JSON equality as the scorer's JSONExact has it: numbers by value, ``true != 1``,
    objects as key sets, arrays in order, strings exactly."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _kind(schema: Any) -> str:
    """What the generator's ``_generate_value`` draws for ``schema``: an enum first, then by
    ``type`` (anything else, a missing type too, is a string)."""
    if not isinstance(schema, Mapping):
        return "string"
    if schema.get("enum"):
        return "enum"
    t = schema.get("type")
    return t if t in ("integer", "number", "boolean", "array", "object", "null") else "string"


def _props(schema: Mapping[str, Any]) -> list[tuple[str, Any]]:
    props = schema.get("properties")
    return list(props.items()) if isinstance(props, Mapping) else []


# ------------------------------------------------------------------------------- the parse tree


@dataclass(eq=False)
class _Scalar:
    value: Any


@dataclass(eq=False)
class _Unit:
    """One key line (with what it holds) of an object or a list item."""

    index: int      # the key's place in its schema's property order
    key: str
    node: Any
    line: int       # the prompt's line number (1-based)


@dataclass(eq=False)
class _Object:
    units: list[_Unit]


@dataclass(eq=False)
class _ScalarList:
    items: list[_Scalar]


@dataclass(eq=False)
class _ObjectList:
    """A list of objects: its items' key lines, and every way to split them into items."""

    path: str
    line: int
    units: list[_Unit]
    required: frozenset[str]
    optional: frozenset[str]
    lo: int
    hi: int
    count: int = 0
    total: float = 0.0               # sum of the weights of every split
    best: list[tuple[int, int]] = field(default_factory=list)   # the most probable split: (start, end) per item
    best_weight: float = 0.0

    def run_weight(self, start: int, end: int) -> float:
        """The probability that one item has exactly the keys of units[start:end] (0: it cannot)."""
        keys = [u.key for u in self.units[start:end]]
        if any(b.index <= a.index for a, b in zip(self.units[start:end], self.units[start + 1:end])):
            return 0.0
        if not self.required <= set(keys):
            return 0.0
        kept = sum(k in self.optional for k in keys)
        return ITEM_KEEP ** kept * (1 - ITEM_KEEP) ** (len(self.optional) - kept)

    def solve(self) -> None:
        """Count and weigh every split into ``lo``..``hi`` items; keep the most probable one.
        Forward dynamic programming over (items so far, units covered)."""
        m = len(self.units)
        # Runs that can be one item: units[i:j], keys rising in schema order (j == i: an empty item).
        runs = [[(j, w) for j in range(i, m + 1) if (w := self.run_weight(i, j)) > 0] for i in range(m + 1)]
        weight = [[0.0] * (m + 1) for _ in range(self.hi + 1)]
        count = [[0] * (m + 1) for _ in range(self.hi + 1)]
        best = [[0.0] * (m + 1) for _ in range(self.hi + 1)]
        back: list[list[int]] = [[-1] * (m + 1) for _ in range(self.hi + 1)]
        weight[0][0], count[0][0], best[0][0] = 1.0, 1, 1.0
        for c in range(self.hi):
            for i in range(m + 1):
                if not count[c][i]:
                    continue
                for j, w in runs[i]:
                    weight[c + 1][j] += weight[c][i] * w
                    count[c + 1][j] += count[c][i]
                    if best[c][i] * w > best[c + 1][j]:
                        best[c + 1][j], back[c + 1][j] = best[c][i] * w, i
        lengths = range(self.lo, self.hi + 1)
        self.count = sum(count[n][m] for n in lengths)
        self.total = sum(weight[n][m] for n in lengths)
        if not self.count:
            return
        n = max(lengths, key=lambda k: (best[k][m], -k))
        self.best_weight = best[n][m]
        split, j = [], m
        for c in range(n, 0, -1):
            i = back[c][j]
            split.append((i, j))
            j = i
        self.best = split[::-1]


# ------------------------------------------------------------------------------------ the parser


class _Parser:
    """Reads the body lines of a prompt under a schema (see the module doc)."""

    def __init__(self, lines: Sequence[str], first: int, top: Mapping[str, Any]):
        self.lines = list(lines)
        self.first = first              # prompt line number of lines[0]
        self.i = 0
        self.top_labels = {label(k) for k, _ in _props(top)}
        self.lists: list[_ObjectList] = []

    def no(self, i: int | None = None) -> int:
        return self.first + (self.i if i is None else i)

    def fail(self, message: str, i: int | None = None) -> _Unreadable:
        return _Unreadable(f"line {self.no(i)}: {message}")

    @staticmethod
    def depth(line: str) -> int:
        """Indent levels of a line (-1: an odd number of leading spaces)."""
        spaces = len(line) - len(line.lstrip(" "))
        return spaces // 2 if spaces % 2 == 0 else -1

    @staticmethod
    def split(content: str) -> tuple[str | None, str | None]:
        """``"Label: value"`` -> (Label, value); ``"Label:"`` -> (Label, None); anything else
        -> (None, None)."""
        at = content.find(": ")
        if at >= 0:
            return content[:at], content[at + 2:]
        if content.endswith(":"):
            return content[:-1], None
        return None, None

    def continuation(self, line: str) -> bool:
        """A later line of a multi-line string: no indent, and not a top-level key line."""
        if line[:1] == " ":
            return False
        name, _ = self.split(line)
        return name not in self.top_labels

    def members(self, schema: Mapping[str, Any], depth: int, path: str) -> list[_Unit]:
        """The key lines at ``depth`` (and what each holds) of an object or of a list's items."""
        by_label: dict[str, tuple[int, str, Any]] = {}
        for index, (key, sub) in enumerate(_props(schema)):
            by_label.setdefault(label(key), (index, key, sub))
        units: list[_Unit] = []
        while self.i < len(self.lines):
            line = self.lines[self.i]
            d = self.depth(line)
            if 0 <= d < depth:
                break
            if d != depth:
                raise self.fail(f"{line.strip()[:60]!r} is indented {d if d >= 0 else 'oddly'}, "
                                f"expected {depth} level(s) under {path or 'the answer'}")
            name, value = self.split(line[len(INDENT) * depth:])
            if name is None:
                raise self.fail(f"{line.strip()[:60]!r} is not a key line ('Label: value' or 'Label:')")
            if name not in by_label:
                raise self.fail(f"{name[:60]!r} is not a key of {path or 'the answer'}")
            index, key, sub = by_label[name]
            no = self.no()
            units.append(_Unit(index, key, self.value(sub, depth, value, f"{path}.{key}" if path else key), no))
        return units

    def value(self, schema: Any, depth: int, text: str | None, path: str) -> Any:
        kind = _kind(schema)
        if kind in ("object", "array"):
            if text is not None:
                raise self.fail(f"{path} holds an {kind}, but its line carries a value")
            self.i += 1
            if kind == "object":
                units = self.members(schema, depth + 1, path)
                self.check_object(schema, units, path)
                return _Object(units)
            items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
            if _kind(items) == "object":
                return self.object_list(schema, items, depth, path)
            if _kind(items) == "array":
                raise self.fail(f"{path}: lists of lists are not read")
            out = []
            while self.i < len(self.lines) and self.lines[self.i].startswith(INDENT * (depth + 1)):
                item = self.lines[self.i][len(INDENT) * (depth + 1):]
                out.append(_Scalar(self.scalar(items, self.more(item, items), f"{path}[{len(out)}]")))
            return _ScalarList(out)
        if text is None:
            raise self.fail(f"{path} holds a value, but its line has none")
        return _Scalar(self.scalar(schema, self.more(text, schema), path))

    def more(self, text: str, schema: Any) -> str:
        """The value's text with its continuation lines (strings only); moves past them."""
        self.i += 1
        if _kind(schema) == "string":
            while self.i < len(self.lines) and self.continuation(self.lines[self.i]):
                text += "\n" + self.lines[self.i]
                self.i += 1
        return text

    def scalar(self, schema: Any, text: str, path: str) -> Any:
        """The value the generator wrote as ``text``: Python's ``str`` of it, by the schema's type."""
        kind = _kind(schema)
        if kind == "enum":
            for option in schema["enum"]:
                if f"{option}" == text:
                    return option
            raise self.fail(f"{path}: {text[:40]!r} is not one of its enum", self.i - 1)
        if kind == "integer" and _INT.fullmatch(text):
            return int(text)
        if kind == "number" and _NUMBER.fullmatch(text):
            return int(text) if _INT.fullmatch(text) else float(text)
        if kind == "boolean" and text in ("True", "False"):
            return text == "True"
        if kind == "string":
            return text
        raise self.fail(f"{path}: {text[:40]!r} is not a {kind}", self.i - 1)

    def check_object(self, schema: Mapping[str, Any], units: list[_Unit], path: str) -> None:
        for a, b in zip(units, units[1:]):
            if b.index <= a.index:
                raise self.fail(f"{path or 'the answer'}: key {b.key!r} after {a.key!r}, against the schema's order",
                                b.line - self.first)
        required = schema.get("required") or []
        missing = [k for k in required if k not in {u.key for u in units}]
        if missing:
            raise self.fail(f"{path or 'the answer'}: required key {missing[0]!r} has no line",
                            (units[-1].line - self.first) if units else 0)

    def object_list(self, schema: Mapping[str, Any], items: Mapping[str, Any], depth: int, path: str) -> _ObjectList:
        line = self.no(self.i - 1)
        units = self.members(items, depth + 1, f"{path}[]")
        lo = schema.get("minItems", 1)
        hi = min(schema.get("maxItems", MAX_LIST), MAX_LIST)
        required = frozenset(k for k in (items.get("required") or []))
        optional = frozenset(k for k, sub in _props(items) if k not in required and _kind(sub) != "null")
        node = _ObjectList(path, line, units, required, optional, int(lo), int(hi))
        node.solve()
        if not node.count:
            raise _Unreadable(f"line {line}: the {len(units)} key lines of {path} cannot be split into "
                              f"{lo} to {hi} items")
        self.lists.append(node)
        return node


# ---------------------------------------------------------------------------------- the readings


def _build(node: Any) -> Any:
    """The most probable reading of a node."""
    if isinstance(node, _Scalar):
        return node.value
    if isinstance(node, _ScalarList):
        return [x.value for x in node.items]
    if isinstance(node, _Object):
        return {u.key: _build(u.node) for u in node.units}
    return [{u.key: _build(u.node) for u in node.units[i:j]} for i, j in node.best]


def _match(node: Any, value: Any, path: str) -> tuple[float, str]:
    """The posterior factor of ``value`` at ``node`` (0.0 and why when it is not a reading)."""
    where = path or "the answer"
    if isinstance(node, _Scalar):
        return (1.0, "") if same_value(value, node.value) else (0.0, f"{where}: {value!r} is not {node.value!r}")
    if isinstance(node, _ScalarList):
        if not isinstance(value, list) or len(value) != len(node.items):
            n = len(value) if isinstance(value, list) else "no"
            return 0.0, f"{where}: {n} items, the prompt has {len(node.items)}"
        for k, (x, item) in enumerate(zip(value, node.items)):
            if not same_value(x, item.value):
                return 0.0, f"{where}[{k}]: {x!r} is not {item.value!r}"
        return 1.0, ""
    if isinstance(node, _Object):
        if not isinstance(value, dict):
            return 0.0, f"{where}: not an object"
        keys = {u.key for u in node.units}
        if value.keys() != keys:
            extra, missing = sorted(value.keys() - keys), sorted(keys - value.keys())
            return 0.0, f"{where}: " + (f"key {extra[0]!r} has no line" if extra else f"key {missing[0]!r} is missing")
        p = 1.0
        for u in node.units:
            q, why = _match(u.node, value[u.key], f"{path}.{u.key}" if path else u.key)
            if not q:
                return 0.0, why
            p *= q
        return p, ""
    # a list of objects: the answer's items, in schema order, must be a split of the key lines
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        return 0.0, f"{where}: not a list of objects"
    if not node.lo <= len(value) <= node.hi:
        return 0.0, f"{where}: {len(value)} items, the generator draws {node.lo} to {node.hi}"
    order = {u.key: u.index for u in node.units}
    p, at = 1.0 / node.total, 0
    for k, item in enumerate(value):
        if any(key not in order for key in item):
            return 0.0, f"{where}[{k}]: a key with no line in the list"
        keys = sorted(item, key=order.__getitem__)
        end = at + len(keys)
        if [u.key for u in node.units[at:end]] != keys:
            return 0.0, f"{where}[{k}]: its keys are not the prompt's next key lines"
        w = node.run_weight(at, end)
        if not w:
            return 0.0, f"{where}[{k}]: the generator cannot draw this item"
        p *= w
        for u in node.units[at:end]:
            q, why = _match(u.node, item[u.key], f"{where}[{k}].{u.key}")
            if not q:
                return 0.0, why
            p *= q
        at = end
    if at != len(node.units):
        return 0.0, f"{where}: {len(node.units) - at} key lines of the prompt are in no item"
    return p, ""


@dataclass(frozen=True)
class ListReading:
    """One list of objects of a prompt: where it is and how its splits weigh."""

    path: str
    line: int
    units: int
    """Its key lines."""
    count: int
    """Splits into items that the generator can draw."""
    best_posterior: float


@dataclass(frozen=True, eq=False)
class Readings:
    """Every answer that renders to one prompt, weighted by the generator's probabilities.

    ``frame``: the prompt's first and last lines are the template's for this schema (else
    nothing is read: ``count`` 0). ``error``: why the body is no answer's rendering (None when
    it is). ``count``: readings (0 with an error); ``best``: the most probable one (schema key
    order) and ``best_posterior`` its probability given the prompt; ``lists``: each list of
    objects and its share of the choice.
    """

    schema_id: str
    frame: bool
    error: str | None
    count: int
    best: Any
    best_posterior: float
    lists: tuple[ListReading, ...]
    _root: Any = field(default=None, repr=False)

    @property
    def determined(self) -> bool:
        """Exactly one answer renders to the prompt."""
        return self.count == 1

    def posterior(self, answer: Any) -> float:
        """The probability of ``answer`` given the prompt: 0.0 when it is no reading."""
        return self.explain(answer)[0]

    def explain(self, answer: Any) -> tuple[float, str]:
        """(posterior, why it is 0 — the first path where ``answer`` leaves the prompt)."""
        if self._root is None:
            return 0.0, self.error or "the prompt is not the template"
        return _match(self._root, answer, "")


def read_prompt(prompt: str, schema_id: str, schema: Mapping[str, Any]) -> Readings:
    """The :class:`Readings` of ``prompt`` under ``schema``."""
    lines = prompt.split("\n")
    if (len(lines) < 4 or lines[0] != header_line(schema_id, schema) or lines[1] != ""
            or lines[-1] != instruction_line(schema_id, schema) or lines[-2] != ""):
        return Readings(schema_id, False, "the first or last lines are not the template's", 0, None, 0.0, ())
    parser = _Parser(lines[2:-2], 3, schema)
    try:
        units = parser.members(schema, 0, "")
        if parser.i < len(parser.lines):
            raise parser.fail(f"{parser.lines[parser.i].strip()[:60]!r} does not belong to any key")
        parser.check_object(schema, units, "")
    except _Unreadable as e:
        return Readings(schema_id, True, str(e), 0, None, 0.0, ())
    root = _Object(units)
    lists = tuple(ListReading(n.path, n.line, len(n.units), n.count, n.best_weight / n.total) for n in parser.lists)
    return Readings(schema_id, True, None, math.prod(x.count for x in lists), _build(root),
                    math.prod(x.best_posterior for x in lists), lists, root)


# ------------------------------------------------------------------------------ one record's gold


@dataclass(frozen=True)
class PromptCheck:
    """What a record's gold is to its prompt: ``kind`` in :data:`PROMPT_KINDS`, ``message``
    saying how they differ ("" when the gold renders exactly), ``line`` the first prompt line
    that differs (None when no one line does)."""

    kind: str
    message: str = ""
    line: int | None = None


def _short(text: str, limit: int = 70) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _first_difference(prompt: str, rendered: str) -> tuple[str, int | None]:
    """The first line where the gold's rendering leaves the prompt, in words."""
    a, b = prompt.split("\n"), rendered.split("\n")
    ops = [op for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    if not ops:
        return "", None
    tag, i1, i2, j1, j2 = ops[0]
    more = sum(max(o[2] - o[1], o[4] - o[3]) for o in ops) - max(i2 - i1, j2 - j1)
    tail = f" ({more} more line(s) differ)" if more > 0 else ""
    if tag == "replace":
        return f"line {i1 + 1}: the prompt has {_short(a[i1])}, the gold renders {_short(b[j1])}{tail}", i1 + 1
    if tag == "delete":
        return f"line {i1 + 1}: the prompt has {_short(a[i1])}, which the gold does not have{tail}", i1 + 1
    return f"after line {i1}: the gold renders {_short(b[j1])}, which the prompt does not have{tail}", i1


def _key_orders(value: Any) -> list:
    if isinstance(value, dict):
        return [list(value), *[_key_orders(v) for v in value.values()]]
    if isinstance(value, list):
        return [_key_orders(v) for v in value]
    return []


def check_gold(prompt: str, schema_id: str, schema: Mapping[str, Any], gold: Any,
               readings: Readings, gold_posterior: float) -> PromptCheck:
    """Tell apart a gold the template renders as the prompt, one that differs only in key
    order or number format, and one that contradicts the prompt (the line named)."""
    if not readings.frame:
        return PromptCheck("not_template", "the prompt's first or last line is not the template's header or "
                                           "instruction for this schema")
    if render_prompt(schema_id, schema, gold) == prompt:
        if gold_posterior > 0:
            return PromptCheck("renders")
        _, why = readings.explain(gold)
        return PromptCheck("contradicts", f"the gold renders as the prompt, but the generator cannot draw it: {why}")
    ordered = schema_ordered(gold, schema)
    if gold_posterior > 0:
        parts = []
        if _key_orders(ordered) != _key_orders(gold):
            parts.append("key order")
        if render_prompt(schema_id, schema, ordered) != prompt:
            parts.append("number format")
        return PromptCheck("order_or_format", f"the gold differs from the prompt only in {' and '.join(parts)}")
    message, line = _first_difference(prompt, render_prompt(schema_id, schema, ordered))
    if not message:  # renders in schema order, yet no reading: a length or a required key
        message = f"the gold renders as the prompt in schema order, but is no reading: {readings.explain(gold)[1]}"
    return PromptCheck("contradicts", message, line)


@dataclass(frozen=True, eq=False)
class RecordReading:
    """A record's prompt read back, and what its gold is to it.

    ``ceiling``: the best exact match any reader of the prompt can expect, the most probable
    reading's posterior; 0.0 when the gold contradicts the prompt (no reader can give it), None
    when the prompt is not the template (unknown). ``reader_exact``: the most probable reading
    is the gold. ``determined``: one answer renders to the prompt, and it is the gold.
    """

    id: str
    schema_id: str
    tier: str
    check: PromptCheck
    readings: Readings
    gold_posterior: float

    @property
    def ceiling(self) -> float | None:
        if self.check.kind == "not_template":
            return None
        return self.readings.best_posterior if self.gold_posterior > 0 else 0.0

    @property
    def reader_exact(self) -> bool:
        return self.gold_posterior > 0 and same_value(self.readings.best, self.gold)

    @property
    def determined(self) -> bool:
        return self.gold_posterior > 0 and self.readings.determined

    gold: Any = field(default=None, repr=False)


def read_record(record: Any, schema: Mapping[str, Any]) -> RecordReading:
    """Read one record (anything with ``id``, ``schema_id``, ``tier``, ``prompt`` and
    ``expected_output``, e.g. a :class:`~scaling.data.Record`) under its schema."""
    readings = read_prompt(record.prompt, record.schema_id, schema)
    posterior = readings.posterior(record.expected_output) if readings.frame else 0.0
    check = check_gold(record.prompt, record.schema_id, schema, record.expected_output, readings, posterior)
    return RecordReading(record.id, record.schema_id, record.tier, check, readings, posterior,
                         gold=record.expected_output)


def contradicting(records: Iterable[Any], schemas: Mapping[str, Any]) -> dict[str, PromptCheck]:
    """The records whose gold contradicts their prompt (no reading of the prompt is the gold),
    by id, with the check that says where: ``schemas`` maps schema id to a
    :class:`~scaling.data.SchemaInfo`. Prompts that are not the template are never counted
    (nothing is known of them)."""
    out = {}
    for r in records:
        check = read_record(r, schemas[r.schema_id].schema).check
        if check.kind == "contradicts":
            out[r.id] = check
    return out

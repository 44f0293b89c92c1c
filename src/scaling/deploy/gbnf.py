"""A record's JSON Schema as a llama.cpp grammar (GBNF), matched to the PyTorch decoder's.

The grammar is written by llama-cpp-python's own converter (``json_schema_to_gbnf``, what its
``response_format={"type": "json_object", "schema": ...}`` uses), from the schema prepared the
way :class:`scaling.decode.SchemaGrammars` prepares it for xgrammar, so a deployed file is
scored under the constraint its PyTorch evaluation had:

- ``format`` keywords are dropped unless ``decode.grammar_formats`` (:func:`without_formats`:
  EdgeJSON v3's date-times have no timezone; the converter's ``date-time`` rule requires one).
- ``additionalProperties`` is written out on every object schema that declares properties and
  leaves it unset: ``false`` with ``decode.grammar_strict`` (only declared keys, nested objects
  too, as xgrammar's strict mode), ``true`` without (JSON Schema's meaning of unset). Left
  unset, the converter allows no extra key: it is strict whatever the schema says
  (``test_deploy.py`` pins this).
- Compact separators (``decode.compact_separators`` with ``data.prompt.compact_json``): the
  converter's ``space`` rule (an optional single space after every token) becomes empty.
- The converter's ``char`` rule admits raw control characters inside strings, which JSON (and
  xgrammar, and llama.cpp's own C++ converter) forbid; it is replaced by the C++ converter's.
- ``pattern`` regexes: the converter copies a character class verbatim, and llama.cpp's grammar
  parser knows no ``\s``/``\d``/``\w`` (EdgeJSON's ``contact_info.phone``, ``[0-9\-\s()]``, fails
  to parse: llama.cpp would crash on the NULL sampler). :func:`gbnf_pattern` spells them out;
  ``\s`` becomes a space, the only whitespace a JSON string holds unescaped.
  A grammar llama.cpp still rejects is reported and that schema decodes without one, as the
  PyTorch evaluation does for a schema xgrammar cannot compile.
- Integer bounds (``minimum``/``maximum``, exclusive too): the converter ignores them, xgrammar
  enforces them (EdgeJSON's ratings 1-5, ages 13-120). A bounded integer with at most
  :data:`MAX_INT_ENUM` values becomes the ``enum`` of those values, the same language.

- Key order: llama-cpp-python's converter writes an object's *required* properties first and
  its optional ones after, while xgrammar keeps the schema's order, which is the order of the
  training targets. Where an optional property comes before a required one
  (:func:`reordered_objects`: 15 of EdgeJSON v3's 25 schemas) that grammar made the model write
  keys in an order it was not trained on, and its answers went wrong after the first forced key
  (full test split, Q8_0: 45.6% JSONExact against PyTorch's 62.7%, BENCHMARKS.md). The object
  rule is therefore written by :class:`_SchemaOrderConverter`: every property in schema order,
  each optional one present or not, commas only between present ones.

What cannot be matched (:func:`unmatched` lists it per schema): bounds on non-integer numbers
(latitude, longitude, percentages) and one-sided integer bounds (``minimum: 0``) are not
enforced in llama.cpp.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from scaling.decode.grammar import without_formats

# llama.cpp's C++ converter (common/json-schema-to-grammar.cpp): no raw control characters.
_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})'


def _objects(schema: Any, path: str = "$") -> Iterator[tuple[str, dict]]:
    """Every object schema that declares ``properties``, with its JSON path, depth first."""
    if isinstance(schema, dict):
        if isinstance(schema.get("properties"), dict):
            yield path, schema
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _objects(sub, f"{path}.{name}")
            elif key == "items":
                yield from _objects(value, f"{path}[]")
            elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
                for i, sub in enumerate(value):
                    yield from _objects(sub, f"{path}.{key}[{i}]")
            elif key in ("definitions", "$defs") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _objects(sub, f"{path}.{key}.{name}")


_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "definitions", "$defs", "patternProperties")


def explicit_additional_properties(schema: Any, strict: bool) -> Any:
    """A copy of ``schema`` with ``additionalProperties`` set (``not strict``) on every object
    schema with ``properties`` that leaves it unset. Only subschema keywords are walked, so a
    value inside ``enum``, ``const`` or ``default`` is never rewritten."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key, value in schema.items():
        if key in _SUBSCHEMA and isinstance(value, dict):
            out[key] = explicit_additional_properties(value, strict)
        elif key in _SUBSCHEMA_LISTS + ("items",) and isinstance(value, list):
            out[key] = [explicit_additional_properties(v, strict) for v in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: explicit_additional_properties(sub, strict) for name, sub in value.items()}
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        out["additionalProperties"] = not strict
    return out


def reordered_objects(schema: Any) -> list[str]:
    """Paths of object schemas where an optional property is declared before a required one:
    llama-cpp-python's own converter would make the model write those keys in another order
    than the schema's (:func:`schema_to_gbnf` does not)."""
    out = []
    for path, obj in _objects(schema):
        required = set(obj.get("required") or ())
        seen_optional = False
        for name in obj["properties"]:
            if name not in required:
                seen_optional = True
            elif seen_optional:
                out.append(path)
                break
    return out


MAX_INT_ENUM = 1000
"""Largest integer range written out as an ``enum`` (a grammar alternative per value)."""


def integer_ranges_as_enums(schema: Any) -> Any:
    """``{"type": "integer", "minimum": 1, "maximum": 5}`` -> ``{"type": "integer", "enum": [1, ..., 5]}``
    wherever both ends are bounded and the range has at most :data:`MAX_INT_ENUM` values."""
    if isinstance(schema, list):
        return [integer_ranges_as_enums(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k in ("enum", "const", "default", "examples") else integer_ranges_as_enums(v))
           for k, v in schema.items()}
    if out.get("type") == "integer" and "enum" not in out and "const" not in out:
        lo = out.get("minimum")
        hi = out.get("maximum")
        if isinstance(out.get("exclusiveMinimum"), (int, float)) and not isinstance(out["exclusiveMinimum"], bool):
            lo = max(lo, out["exclusiveMinimum"] + 1) if lo is not None else out["exclusiveMinimum"] + 1
        if isinstance(out.get("exclusiveMaximum"), (int, float)) and not isinstance(out["exclusiveMaximum"], bool):
            hi = min(hi, out["exclusiveMaximum"] - 1) if hi is not None else out["exclusiveMaximum"] - 1
        if lo is not None and hi is not None:
            import math

            lo, hi = math.ceil(lo), math.floor(hi)
            if 0 < hi - lo + 1 <= MAX_INT_ENUM:
                out["enum"] = list(range(lo, hi + 1))
    return out


_SHORTHAND_IN_CLASS = {"s": " ", "d": "0-9", "w": "a-zA-Z0-9_"}


def gbnf_pattern(pattern: str) -> str:
    """``pattern`` with the shorthand classes ``\\s \\d \\w`` spelled out, inside and outside
    ``[...]`` (negated shorthands are left: the grammar check reports them)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _SHORTHAND_IN_CLASS:
                body = _SHORTHAND_IN_CLASS[nxt]
                out.append(body if in_class else f"[{body}]")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


def _patterns_spelled_out(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: (gbnf_pattern(v) if k == "pattern" and isinstance(v, str) else _patterns_spelled_out(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_patterns_spelled_out(v) for v in schema]
    return schema


def _numbers(schema: Any, path: str = "$") -> Iterator[tuple[str, dict]]:
    """Every subschema of type number or integer, with its path."""
    if isinstance(schema, dict):
        if schema.get("type") in ("number", "integer"):
            yield path, schema
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for name, sub in value.items():
                    yield from _numbers(sub, f"{path}.{name}")
            elif key == "items" and isinstance(value, dict):
                yield from _numbers(value, f"{path}[]")
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                for i, sub in enumerate(value):
                    yield from _numbers(sub, f"{path}.{key}[{i}]")


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def unmatched(schema: dict) -> list[str]:
    """What of ``schema`` the llama.cpp grammar does not enforce as xgrammar does, in words
    (empty: the two grammars accept the same answers)."""
    out = []
    prepared = integer_ranges_as_enums(schema)
    for path, sub in _numbers(prepared):
        if "enum" in sub or "const" in sub:
            continue
        if any(k in sub for k in _BOUNDS):
            out.append(f"bounds of {path} ({sub.get('type')})")
    return out


def _converter_class():
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter

    class _SchemaOrderConverter(SchemaConverter):
        """llama-cpp-python's converter with objects in schema order (see the module docstring).

        After the first present property every later one is ``"," kv`` (optional ones inside
        ``( )?``); the first present property is any optional one before the first required
        one, or that required one. One rule per property each way: the grammar grows linearly."""

        def _build_object_rule(self, properties, required, name, additional_properties):
            prefix = f"{name}{'-' if name else ''}"
            order = self._prop_order
            props = [kv[0] for _, kv in sorted(enumerate(properties),
                                               key=lambda ikv: (order.get(ikv[1][0], len(order)), ikv[0]))]
            schemas = dict(properties)
            kv_rules = {}
            for prop in props:
                value_rule = self.visit(schemas[prop], f"{prefix}{prop}")
                kv_rules[prop] = self._add_rule(
                    f"{prefix}{prop}-kv", rf'{self._format_literal(json.dumps(prop))} space ":" space {value_rule}')
            optional = {p for p in props if p not in required}
            if additional_properties is True or isinstance(additional_properties, dict):
                value_rule = self.visit({} if additional_properties is True else additional_properties,
                                        f"{prefix}additional-value")
                kv = self._add_rule(f"{prefix}additional-kv",
                                    self._add_primitive("string", PRIMITIVE_RULES["string"]) + f' ":" space {value_rule}')
                kv_rules["*"] = self._add_rule(f"{prefix}additional-kvs", f'{kv} ( "," space {kv} )*')
                props.append("*")
                optional.add("*")
            if not props:
                return '"{" space "}" space'

            # after[i]: properties i.. once one has been written; first[i]: the first written is at i or later
            after: list[str] = [""] * (len(props) + 1)
            for i in range(len(props) - 1, 0, -1):  # after[0] would never be used
                item = f'"," space {kv_rules[props[i]]}'
                body = (f"( {item} )?" if props[i] in optional else item) + (f" {after[i + 1]}" if after[i + 1] else "")
                after[i] = self._add_rule(f"{prefix}{_rule_part(props[i])}-after", body)
            first: list[str] = [""] * len(props)
            for i in range(len(props) - 1, -1, -1):
                here = kv_rules[props[i]] + (f" {after[i + 1]}" if after[i + 1] else "")
                if props[i] in optional and i + 1 < len(props) and first[i + 1]:
                    here = f"{here} | {first[i + 1]}"
                first[i] = self._add_rule(f"{prefix}{_rule_part(props[i])}-first", here)
            body = f"( {first[0]} )?" if optional.issuperset(props) else first[0]
            return f'"{{" space {body} "}}" space'

    return _SchemaOrderConverter


def _rule_part(prop: str) -> str:
    return "additional" if prop == "*" else prop


def schema_to_gbnf(schema: dict, *, strict: bool, formats: bool = False, compact: bool = True) -> str:
    """The GBNF grammar llama.cpp decodes ``schema`` under (see the module docstring)."""
    prepared = schema if formats else without_formats(schema)
    prepared = integer_ranges_as_enums(_patterns_spelled_out(explicit_additional_properties(prepared, strict)))
    # json_schema_to_gbnf's own steps, with the object rule in schema order.
    converter = _converter_class()(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    converter.visit(converter.resolve_refs(json.loads(json.dumps(prepared)), "stdin"), "")
    text = converter.format_grammar()
    lines = text.split("\n")
    rewritten = []
    for line in lines:
        if compact and re.match(r"space ::= ", line):
            line = 'space ::= ""'
        elif re.match(r"char ::= ", line):
            line = _CHAR_RULE
        rewritten.append(line)
    return "\n".join(rewritten) + "\n"

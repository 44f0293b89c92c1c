"""EdgeJSON's prompt template: how the upstream generator writes an answer as its prompt.

EdgeJSON's records were made by CycleCore's template generator
(``benchmarks/edge_json/scripts/lib/template_generator.py`` in slmbench): it draws the answer
first, then writes the prompt from it (``_generate_prompt`` / ``_data_to_text``):

* a header line (``=== Invoice ===`` for invoice/order schemas, ``<Title> Report`` for
  report/analytics ones, ``New <Title>`` for record/entry ones, else the title), a blank line,
  the body, a blank line and ``Please extract the <title> information as JSON.``;
* in the body each key of an object is a line ``<indent><Label>: <value>`` with
  ``Label = key.replace("_", " ").title()`` and two spaces of indent per level, in the answer's
  key order (the generator's answers follow the schema's property order);
* a nested object or a list is a line ``<indent><Label>:`` followed by its contents one level
  deeper: an object's keys, a list of objects' items one after the other with no separator
  (an item with no keys writes nothing), a list of scalars one item per line;
* a scalar is written with Python's ``str``: ``True``, ``1796.0``, a multi-line string as it is
  (its later lines carry no indent).

This module writes that rendering; :mod:`scaling.data.readings` reads a prompt back. Pure
Python: no model, no numpy.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["INDENT", "label", "title", "header_line", "instruction_line", "scalar_text", "render_body",
           "render_prompt", "schema_ordered"]

#: The indent of one nesting level.
INDENT = "  "


def label(key: str) -> str:
    """A key's label in the prompt: ``"device_id"`` -> ``"Device Id"``."""
    return key.replace("_", " ").title()


def title(schema_id: str, schema: Mapping[str, Any]) -> str:
    """The schema's ``title``, else its id in title case (the generator's fallback)."""
    t = schema.get("title")
    return t if isinstance(t, str) else schema_id.replace("_", " ").title()


def header_line(schema_id: str, schema: Mapping[str, Any]) -> str:
    """The prompt's first line, chosen from words in the schema id as the generator does."""
    t = title(schema_id, schema)
    if "invoice" in schema_id or "order" in schema_id:
        return f"=== {t} ==="
    if "report" in schema_id or "analytics" in schema_id:
        return f"{t} Report"
    if "record" in schema_id or "entry" in schema_id:
        return f"New {t}"
    return t


def instruction_line(schema_id: str, schema: Mapping[str, Any]) -> str:
    """The prompt's last line."""
    return f"Please extract the {title(schema_id, schema).lower()} information as JSON."


def scalar_text(value: Any) -> str:
    """A scalar as the generator's f-string writes it (``str``: ``True``, ``1796.0``, ``None``)."""
    return f"{value}"


def _body(data: Any, lines: list[str], depth: int) -> None:
    prefix = INDENT * depth
    if isinstance(data, dict):
        for key, value in data.items():
            name = label(str(key))
            if isinstance(value, dict):
                lines.append(f"{prefix}{name}:")
                _body(value, lines, depth + 1)
            elif isinstance(value, list):
                lines.append(f"{prefix}{name}:")
                for item in value:
                    _body(item, lines, depth + 1)
            else:
                lines.append(f"{prefix}{name}: {scalar_text(value)}")
    elif isinstance(data, list):
        # A list directly inside a list: the generator marks each item with "- ".
        for item in data:
            if isinstance(item, dict):
                lines.append(f"{prefix}- ")
                _body(item, lines, depth + 1)
            else:
                lines.append(f"{prefix}- {scalar_text(item)}")
    else:
        lines.append(f"{prefix}{scalar_text(data)}")


def render_body(answer: Any) -> list[str]:
    """The body lines of ``answer``'s prompt, in the answer's own key order. A multi-line
    string stays one element here, as in the generator; ``"\\n".join`` gives the text."""
    lines: list[str] = []
    _body(answer, lines, 0)
    return lines


def render_prompt(schema_id: str, schema: Mapping[str, Any], answer: Any) -> str:
    """The whole prompt the generator writes for ``answer`` under ``schema``."""
    lines = [header_line(schema_id, schema), "", *render_body(answer), "", instruction_line(schema_id, schema)]
    return "\n".join(lines)


def _order(schema: Mapping[str, Any]) -> dict[str, int]:
    props = schema.get("properties")
    return {k: i for i, k in enumerate(props)} if isinstance(props, Mapping) else {}


def schema_ordered(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with every object's keys in its schema's property order (keys the schema
    does not name keep their order, after the named ones), as the generator writes them."""
    if isinstance(value, dict):
        order = _order(schema)
        props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else {}
        keys = sorted(value, key=lambda k: (0, order[k]) if k in order else (1, 0))
        return {k: schema_ordered(value[k], props.get(k) or {}) for k in keys}
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        return [schema_ordered(v, items) for v in value]
    return value

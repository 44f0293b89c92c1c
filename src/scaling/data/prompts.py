"""Prompt and target formatting: the one place that turns a record into model text.

Training and evaluation both call :func:`format_prompt` and :func:`format_target`, so the
model is always asked the question the way it was taught. The tokenizer is an argument
(``data`` knows no model); it is only needed for ``template="chat"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaling.typed_config import dataclass_from_config

TEMPLATES = ("plain", "chat")
SCHEMA_MODES = ("none", "fields", "full")

DEFAULT_INSTRUCTION = "Extract the information from the text below as one JSON object."


@dataclass(frozen=True)
class PromptFormat:
    """How a record becomes a prompt (fields mirror ``conf/data/*.yaml: prompt``)."""

    template: str = "plain"
    """``plain``: instruction, text, optional schema, then ``JSON:``; ``chat``: the same user
    message through the tokenizer's chat template (for instruct models)."""
    schema: str = "fields"
    """What the model sees of the target schema: ``none``; ``fields`` (the field paths with
    types, compact: tells the model which keys exist without thousands of schema tokens); or
    ``full`` (the minified JSON Schema)."""
    instruction: str = DEFAULT_INSTRUCTION
    """First line of the prompt."""
    compact_json: bool = True
    """Targets as ``{"a":1,"b":[2]}`` rather than ``{"a": 1, "b": [2]}``: ~10% fewer tokens to
    train on and generate; both parse to the same object."""

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"data.prompt.template={self.template!r}: expected one of {TEMPLATES}")
        if self.schema not in SCHEMA_MODES:
            raise ValueError(f"data.prompt.schema={self.schema!r}: expected one of {SCHEMA_MODES}")

    @classmethod
    def from_config(cls, cfg: Any) -> "PromptFormat":
        return dataclass_from_config(cls, cfg, "data.prompt")


def schema_fields(schema: dict, prefix: str = "") -> list[str]:
    """Field paths with types, e.g. ``line_items[].quantity:integer``; required marked ``*``."""
    out: list[str] = []
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    for name, sub in props.items():
        path = f"{prefix}{name}"
        typ = sub.get("type", "any")
        typ = "|".join(typ) if isinstance(typ, list) else typ
        star = "*" if name in required else ""
        if typ == "object" and sub.get("properties"):
            out.append(f"{path}{star}:object")
            out.extend(schema_fields(sub, prefix=f"{path}."))
        elif typ == "array" and isinstance(sub.get("items"), dict) and sub["items"].get("properties"):
            out.append(f"{path}{star}:array")
            out.extend(schema_fields(sub["items"], prefix=f"{path}[]."))
        else:
            enum = sub.get("enum")
            suffix = f"({'/'.join(map(str, enum))})" if enum else ""
            out.append(f"{path}{star}:{typ}{suffix}")
    return out


def _schema_block(schema: dict | None, mode: str) -> str:
    if mode == "none" or schema is None:
        return ""
    if mode == "fields":
        return "Fields: " + ", ".join(schema_fields(schema)) + "\n"
    return "Schema: " + json.dumps(schema, separators=(",", ":"), ensure_ascii=False) + "\n"


def user_message(prompt_text: str, schema: dict | None, fmt: PromptFormat) -> str:
    """The request without any template decoration."""
    return f"{fmt.instruction}\n{_schema_block(schema, fmt.schema)}\nText:\n{prompt_text.strip()}\n"


def format_prompt(prompt_text: str, schema: dict | None, fmt: PromptFormat, tokenizer=None) -> str:
    """The full prompt string, ending where the model's answer begins."""
    message = user_message(prompt_text, schema, fmt)
    if fmt.template == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "data.prompt.template=chat needs a tokenizer with a chat template; "
                "use data.prompt.template=plain for base models and trained BPE tokenizers"
            )
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
        )
    return message + "\nJSON:\n"


def format_target(obj: Any, fmt: PromptFormat) -> str:
    """The answer text (without EOS, which the tokenizing step appends as a token)."""
    if fmt.compact_json:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=False)

"""Building blocks of the synthetic schemas (:mod:`.schemas`): JSON Schema builders, how a value
is written in a prompt, prompt layouts, exact arithmetic in integer cents, and the small word
lists values are drawn from. The underscored helpers are private to this package.
"""

from __future__ import annotations

import json
import random
from typing import Any

Sample = tuple[dict[str, Any], str]  # (expected_output, prompt)


# ---------------------------------------------------------------------------------------------
# Small helpers: schema builders, value formatting, layouts, exact arithmetic.


def _obj(props: dict[str, Any], title: str | None = None) -> dict[str, Any]:
    """A closed object schema whose every property is required."""
    schema: dict[str, Any] = {}
    if title is not None:
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["title"] = title
    schema.update(
        type="object", properties=props, required=list(props), additionalProperties=False
    )
    return schema


_STR = {"type": "string"}
_DATE = {"type": "string", "format": "date"}
_INT0 = {"type": "integer", "minimum": 0}
_INT1 = {"type": "integer", "minimum": 1}
_NUM0 = {"type": "number", "minimum": 0}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": 1}


def _f(value: Any) -> str:
    """A value as it appears in a prompt: strings verbatim, numbers as JSON writes them."""
    return value if isinstance(value, str) else json.dumps(value)


def _lines(pairs: list[tuple[str, Any]]) -> str:
    return "\n".join(f"{key}: {_f(value)}" for key, value in pairs)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    return "\n".join("| " + " | ".join(_f(v) for v in row) + " |" for row in [header, *rows])


def _money(cents: int) -> float:
    """Integer cents -> the float JSON shows with at most 2 decimals (``450`` -> ``4.5``)."""
    return cents / 100


def _cents(value: float) -> int:
    return round(value * 100)


def _pct_of(cents: int, pct: int) -> int:
    """``cents * pct / 100`` rounded half-up to whole cents, in exact integer arithmetic."""
    return (cents * pct * 2 + 100) // 200


def _mean_cents(values: list[int]) -> int:
    """Mean of integers in cents, rounded half-up: ``round_half_up(sum / n, 2) * 100``."""
    return (sum(values) * 200 + len(values)) // (2 * len(values))


def _code(rng: random.Random, prefix: str, digits: int = 4) -> str:
    return f"{prefix}{rng.randrange(10 ** (digits - 1), 10**digits)}"


def _date(rng: random.Random) -> str:
    return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _ask(noun: str) -> str:
    return f"\nExtract the {noun} as JSON."


FIRST = ("Ana", "Ben", "Carla", "Dan", "Eva", "Finn", "Gina", "Hugo", "Ivy", "Jack", "Kim",
         "Leo", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will",
         "Yara", "Zoe")
LAST = ("Silva", "Brown", "Costa", "Diaz", "Evans", "Fox", "Garcia", "Hill", "Ito", "Jones",
        "Khan", "Lee", "Moore", "Nagy", "Ortiz", "Park", "Quinn", "Reed", "Smith", "Tan", "Vos",
        "Wong", "Young", "Zhang")
CITIES = ("Lisbon", "Oslo", "Lima", "Porto", "Dakar", "Quito", "Riga", "Turin", "Cairo",
          "Perth", "Osaka", "Austin", "Denver", "Leeds", "Lyon", "Graz")
DOMAINS = ("mail.com", "inbox.org", "post.net")
COLORS = ("red", "blue", "green", "black", "white", "grey")
THINGS = ("mug", "lamp", "desk", "chair", "pen", "notebook", "cable", "charger", "bottle",
          "backpack", "kettle", "towel", "pillow", "candle", "plate", "bowl")
CATEGORIES = ("home", "office", "kitchen", "tech", "outdoor")
COMMENTS = ("great value", "too small", "works well", "arrived late", "as described",
            "poor quality", "love it", "would buy again")
ROOMS = ("lab", "kitchen", "roof", "garage", "hall", "office")
STORES = ("Corner Shop", "Fresh Mart", "City Books", "Tech Hub", "Home Plus", "Green Grocer")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")
PROJECTS = ("Apollo", "Hermes", "Orion", "Atlas", "Nova", "Vega", "Lynx", "Delta")
COURSES = ("MATH", "BIO", "CHEM", "HIST", "ART", "CS")
TEAMS = ("Design", "Backend", "Frontend", "QA", "Data", "Ops")
TASKS = ("login page", "api", "search", "billing", "reports", "tests", "docs", "deploy",
         "dashboard", "signup")
CLUBS = ("Lions", "Tigers", "Bears", "Wolves", "Eagles", "Sharks", "Hawks", "Bulls", "Foxes",
         "Owls", "Rams", "Jets")
CUPS = ("Spring Cup", "Summer Cup", "City League", "Winter Open", "Harbor Cup")
DEPARTMENTS = ("Sales", "Marketing", "Research", "Support", "Finance", "Legal")
COST_GROUPS = ("Travel", "Software", "Hardware", "Training", "Events", "Services")
COST_ITEMS = ("flights", "hotels", "licenses", "laptops", "monitors", "courses", "venue",
              "catering", "consulting", "printing", "cloud", "phones")


def _product(rng: random.Random) -> str:
    return f"{rng.choice(COLORS)} {rng.choice(THINGS)}"


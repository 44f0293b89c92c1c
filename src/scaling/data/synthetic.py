"""Synthetic EdgeJSON-format datasets that tiny from-scratch models can learn.

``generate(out_dir, seed, n_train, n_test, version)`` writes exactly the EdgeJSON layout::

    <out_dir>/<version>/train.jsonl
    <out_dir>/<version>/test.jsonl
    <out_dir>/schemas/<tier>/<schema_id>.json        (JSON Schema draft-07)

Each JSONL line is ``{"id", "schema_id", "complexity", "prompt", "expected_output"}`` where
``complexity`` is the tier (the schema's folder name).

Design, so that a 1M-parameter model trained for minutes on a CPU learns something real:

* Every value of ``expected_output`` is copied verbatim from the prompt, except the *derived*
  fields listed per schema (``SynthSchema.derived``), which are exact arithmetic over copied
  values (sums, products, means). Numbers appear in the prompt formatted exactly as
  ``json.dumps`` writes them (``4.5``, not ``4.50``).
* Values come from small vocabularies: names from short lists, small integers, prices with at
  most two decimals (generated in integer cents, so derived money fields are exact),
  ids such as ``"A1234"``.
* Tiers are real: *simple* schemas are flat records; *medium* schemas hold one array of
  objects plus totals; *complex* schemas nest arrays inside arrays with per-group and overall
  aggregates.
* Each record's prompt layout (``Key: value`` lines, sentences, or a pipe table) is drawn by
  the seeded RNG, so the model must read content, not positions.

Derived money fields round half-up to 2 decimals: ``total == round_half_up(sum, 2)``.
All schema ids start with ``syn_`` so their derived-field checks, registered in
:mod:`scaling.data.derived`, can never apply to EdgeJSON's own schemas.

The same seed (and sizes) gives byte-identical files. Train and test are disjoint: no prompt
and no expected_output occurs twice in the whole dataset.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scaling.data.derived import derived_check

__all__ = [
    "SCHEMAS",
    "SynthSchema",
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "add_synth_subparser",
    "generate",
    "main",
    "run_synth",
]

DEFAULT_N_TRAIN = 2400
DEFAULT_N_TEST = 360

Sample = tuple[dict[str, Any], str]  # (expected_output, prompt)


@dataclass(frozen=True)
class SynthSchema:
    """One synthetic schema.

    ``sample(rng)`` draws one record and returns ``(expected_output, prompt)``.
    ``derived`` lists the paths of computed fields (``"items[].total"`` means the ``total``
    of every element of ``items``); every other leaf of ``expected_output`` appears in the
    prompt text.
    """

    schema_id: str
    tier: str
    schema: dict[str, Any]
    sample: Callable[[random.Random], Sample]
    derived: tuple[str, ...] = ()


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


# ---------------------------------------------------------------------------------------------
# Simple tier: flat records, every value copied.

CONTACT = _obj({"name": _STR, "email": _STR, "city": _STR, "age": _INT1}, "Contact")


def contact(rng: random.Random) -> Sample:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    out = {
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}",
        "city": rng.choice(CITIES),
        "age": rng.randint(18, 80),
    }
    layout = rng.randrange(3)
    if layout == 0:
        body = _lines([("Name", out["name"]), ("Email", out["email"]), ("City", out["city"]),
                       ("Age", out["age"])])
    elif layout == 1:
        body = (f"{out['name']}, age {out['age']}, lives in {out['city']}. "
                f"Email: {out['email']}.")
    else:
        body = _table(["name", "email", "city", "age"], [list(out.values())])
    return out, body + _ask("contact")


SENSOR = _obj(
    {"sensor_id": _STR, "kind": _enum("temperature", "humidity", "pressure"),
     "value": {"type": "number"}, "unit": _enum("C", "%", "hPa"), "room": _STR,
     "status": _enum("ok", "warn", "fail")},
    "Sensor reading",
)
_SENSOR_KINDS = {  # kind -> (unit, lowest, highest value in tenths)
    "temperature": ("C", -100, 400),
    "humidity": ("%", 100, 990),
    "pressure": ("hPa", 9500, 10500),
}


def sensor(rng: random.Random) -> Sample:
    kind = rng.choice(list(_SENSOR_KINDS))
    unit, low, high = _SENSOR_KINDS[kind]
    out = {
        "sensor_id": _code(rng, "S"),
        "kind": kind,
        "value": rng.randint(low, high) / 10,
        "unit": unit,
        "room": rng.choice(ROOMS),
        "status": rng.choice(("ok", "warn", "fail")),
    }
    layout = rng.randrange(3)
    if layout == 0:
        body = _lines([("Sensor", out["sensor_id"]), ("Kind", kind), ("Value", out["value"]),
                       ("Unit", unit), ("Room", out["room"]), ("Status", out["status"])])
    elif layout == 1:
        body = (f"Sensor {out['sensor_id']} in the {out['room']} reads {kind} "
                f"{_f(out['value'])} {unit}, status {out['status']}.")
    else:
        body = _table(["sensor", "kind", "value", "unit", "room", "status"],
                      [list(out.values())])
    return out, body + _ask("sensor reading")


PRODUCT = _obj(
    {"sku": _STR, "name": _STR, "price": _NUM0, "stock": _INT0,
     "category": _enum(*CATEGORIES)},
    "Product",
)


def product(rng: random.Random) -> Sample:
    out = {
        "sku": _code(rng, "P"),
        "name": _product(rng),
        "price": _money(rng.randint(100, 9999)),
        "stock": rng.randint(0, 500),
        "category": rng.choice(CATEGORIES),
    }
    layout = rng.randrange(3)
    if layout == 0:
        body = _lines([("SKU", out["sku"]), ("Name", out["name"]), ("Price", out["price"]),
                       ("Stock", out["stock"]), ("Category", out["category"])])
    elif layout == 1:
        body = (f"The {out['name']} ({out['sku']}) costs {_f(out['price'])}; "
                f"{out['stock']} in stock, category {out['category']}.")
    else:
        body = _table(["sku", "name", "price", "stock", "category"], [list(out.values())])
    return out, body + _ask("product")


RATING = _obj(
    {"user": _STR, "product": _STR, "stars": {"type": "integer", "minimum": 1, "maximum": 5},
     "comment": _STR, "date": _DATE},
    "Rating",
)


def rating(rng: random.Random) -> Sample:
    out = {
        "user": _person(rng),
        "product": _product(rng),
        "stars": rng.randint(1, 5),
        "comment": rng.choice(COMMENTS),
        "date": _date(rng),
    }
    layout = rng.randrange(3)
    if layout == 0:
        body = _lines([("User", out["user"]), ("Product", out["product"]),
                       ("Stars", out["stars"]), ("Comment", out["comment"]),
                       ("Date", out["date"])])
    elif layout == 1:
        body = (f"On {out['date']} {out['user']} gave the {out['product']} "
                f"{out['stars']} stars: \"{out['comment']}\".")
    else:
        body = _table(["user", "product", "stars", "comment", "date"], [list(out.values())])
    return out, body + _ask("rating")


# ---------------------------------------------------------------------------------------------
# Medium tier: one array of objects plus computed totals.

RECEIPT = _obj(
    {
        "receipt_id": _STR,
        "store": _STR,
        "date": _DATE,
        "items": _arr(_obj({"name": _STR, "qty": _INT1, "unit_price": _NUM0, "total": _NUM0})),
        "subtotal": _NUM0,
        "tax_rate": _INT0,
        "tax": _NUM0,
        "total": _NUM0,
    },
    "Receipt",
)


def receipt(rng: random.Random) -> Sample:
    items, subtotal = [], 0
    for _ in range(rng.randint(2, 4)):
        qty, price = rng.randint(1, 5), rng.randint(50, 5000)
        items.append({"name": _product(rng), "qty": qty, "unit_price": _money(price),
                      "total": _money(qty * price)})
        subtotal += qty * price
    rate = rng.choice((5, 8, 10, 20))
    tax = _pct_of(subtotal, rate)
    out = {
        "receipt_id": _code(rng, "R", 5),
        "store": rng.choice(STORES),
        "date": _date(rng),
        "items": items,
        "subtotal": _money(subtotal),
        "tax_rate": rate,
        "tax": _money(tax),
        "total": _money(subtotal + tax),
    }
    head = f"Receipt {out['receipt_id']} from {out['store']}, {out['date']}"
    layout = rng.randrange(3)
    if layout == 0:
        lines = [f"- {i['qty']} x {i['name']} @ {_f(i['unit_price'])}" for i in items]
        body = "\n".join([head, *lines, f"Tax rate: {rate}%"])
    elif layout == 1:
        bought = ", ".join(f"{i['qty']} {i['name']} at {_f(i['unit_price'])} each"
                           for i in items)
        body = f"{head}. Bought {bought}. Tax is {rate}%."
    else:
        rows = [[i["name"], i["qty"], i["unit_price"]] for i in items]
        body = "\n".join([head, _table(["item", "qty", "price"], rows), f"Tax: {rate}%"])
    return out, body + _ask("receipt")


ORDER = _obj(
    {
        "order_id": _STR,
        "customer": _STR,
        "city": _STR,
        "status": _enum("new", "shipped", "delivered", "cancelled"),
        "lines": _arr(_obj({"sku": _STR, "qty": _INT1})),
        "total_qty": _INT1,
    },
    "Order",
)


def order(rng: random.Random) -> Sample:
    lines = [{"sku": _code(rng, "P"), "qty": rng.randint(1, 9)}
             for _ in range(rng.randint(2, 5))]
    out = {
        "order_id": _code(rng, "O", 5),
        "customer": _person(rng),
        "city": rng.choice(CITIES),
        "status": rng.choice(("new", "shipped", "delivered", "cancelled")),
        "lines": lines,
        "total_qty": sum(line["qty"] for line in lines),
    }
    layout = rng.randrange(3)
    if layout == 0:
        body = "\n".join([
            _lines([("Order", out["order_id"]), ("Customer", out["customer"]),
                    ("City", out["city"]), ("Status", out["status"])]),
            *(f"- {line['sku']} x {line['qty']}" for line in lines),
        ])
    elif layout == 1:
        what = ", ".join(f"{line['qty']} of {line['sku']}" for line in lines)
        body = (f"{out['customer']} from {out['city']} placed order {out['order_id']} "
                f"for {what}. It is {out['status']}.")
    else:
        body = "\n".join([
            f"Order {out['order_id']} ({out['status']}) for {out['customer']}, {out['city']}",
            _table(["sku", "qty"], [[line["sku"], line["qty"]] for line in lines]),
        ])
    return out, body + _ask("order")


TIMESHEET = _obj(
    {
        "employee": _STR,
        "week": {"type": "integer", "minimum": 1, "maximum": 52},
        "entries": _arr(_obj({"day": _enum(*DAYS), "project": _STR, "hours": _NUM0})),
        "total_hours": _NUM0,
    },
    "Timesheet",
)


def _halves(n: int) -> int | float:
    """``n / 2`` written as JSON writes a count of hours: ``4`` for 8 halves, ``3.5`` for 7."""
    return n // 2 if n % 2 == 0 else n / 2


def timesheet(rng: random.Random) -> Sample:
    days = sorted(rng.sample(range(len(DAYS)), rng.randint(2, 5)))
    entries = [{"day": DAYS[d], "project": rng.choice(PROJECTS),
                "hours": _halves(rng.randint(2, 18))} for d in days]
    out = {
        "employee": _person(rng),
        "week": rng.randint(1, 52),
        "entries": entries,
        "total_hours": _halves(sum(round(e["hours"] * 2) for e in entries)),
    }
    head = f"Timesheet of {out['employee']}, week {out['week']}"
    layout = rng.randrange(3)
    if layout == 0:
        body = "\n".join([head, *(f"{e['day']}: {e['project']}, {_f(e['hours'])} hours"
                                  for e in entries)])
    elif layout == 1:
        worked = "; ".join(f"on {e['day']} {_f(e['hours'])} hours on {e['project']}"
                           for e in entries)
        body = f"{head}. Worked {worked}."
    else:
        rows = [[e["day"], e["project"], e["hours"]] for e in entries]
        body = "\n".join([head, _table(["day", "project", "hours"], rows)])
    return out, body + _ask("timesheet")


GRADEBOOK = _obj(
    {
        "course": _STR,
        "teacher": _STR,
        "grades": _arr(_obj({"student": _STR, "score": {"type": "integer", "minimum": 0,
                                                        "maximum": 100}})),
        "average": _NUM0,
        "highest": _INT0,
    },
    "Grade book",
)


def gradebook(rng: random.Random) -> Sample:
    students = rng.sample(FIRST, rng.randint(2, 5))  # distinct first names within a course
    grades = [{"student": s, "score": rng.randint(40, 100)} for s in students]
    scores = [g["score"] for g in grades]
    out = {
        "course": f"{rng.choice(COURSES)}{rng.randint(101, 499)}",
        "teacher": _person(rng),
        "grades": grades,
        "average": _money(_mean_cents(scores)),
        "highest": max(scores),
    }
    head = f"Course {out['course']}, teacher {out['teacher']}"
    layout = rng.randrange(3)
    if layout == 0:
        body = "\n".join([head, *(f"{g['student']}: {g['score']}" for g in grades)])
    elif layout == 1:
        scored = ", ".join(f"{g['student']} scored {g['score']}" for g in grades)
        body = f"{head}. {scored}."
    else:
        body = "\n".join([head, _table(["student", "score"],
                                       [[g["student"], g["score"]] for g in grades])])
    return out, body + _ask("grade book")



# ---------------------------------------------------------------------------------------------
# Complex tier: arrays inside arrays, per-group and overall aggregates.

WAREHOUSE = _obj(
    {
        "warehouse_id": _STR,
        "date": _DATE,
        "shelves": _arr(_obj({
            "shelf": _STR,
            "bins": _arr(_obj({"bin": _STR, "sku": _STR, "count": _INT0})),
            "shelf_total": _INT0,
        })),
        "total_items": _INT0,
    },
    "Warehouse inventory",
)


def warehouse(rng: random.Random) -> Sample:
    shelves = []
    for s in sorted(rng.sample(range(1, 10), rng.randint(2, 3))):
        bins = [{"bin": f"B{b}", "sku": _code(rng, "P"), "count": rng.randint(0, 60)}
                for b in sorted(rng.sample(range(1, 10), rng.randint(1, 3)))]
        shelves.append({"shelf": f"S{s}", "bins": bins,
                        "shelf_total": sum(b["count"] for b in bins)})
    out = {
        "warehouse_id": _code(rng, "W", 3),
        "date": _date(rng),
        "shelves": shelves,
        "total_items": sum(s["shelf_total"] for s in shelves),
    }
    head = f"Warehouse {out['warehouse_id']} count on {out['date']}"
    layout = rng.randrange(3)
    if layout == 0:
        lines = [head]
        for s in shelves:
            lines.append(f"Shelf {s['shelf']}:")
            lines += [f"- {b['bin']}: {b['sku']} x {b['count']}" for b in s["bins"]]
        body = "\n".join(lines)
    elif layout == 1:
        parts = [f"On shelf {s['shelf']}, " + ", ".join(
            f"bin {b['bin']} holds {b['count']} of {b['sku']}" for b in s["bins"]) + "."
            for s in shelves]
        body = f"{head}. " + " ".join(parts)
    else:
        rows = [[s["shelf"], b["bin"], b["sku"], b["count"]] for s in shelves for b in s["bins"]]
        body = "\n".join([head, _table(["shelf", "bin", "sku", "count"], rows)])
    return out, body + _ask("warehouse inventory")


PROJECT = _obj(
    {
        "project": _STR,
        "lead": _STR,
        "teams": _arr(_obj({
            "team": _STR,
            "tasks": _arr(_obj({"task": _STR, "hours": _INT1})),
            "team_hours": _INT0,
        })),
        "total_hours": _INT0,
    },
    "Project plan",
)


def project(rng: random.Random) -> Sample:
    teams = []
    for name in rng.sample(TEAMS, rng.randint(2, 3)):
        tasks = [{"task": t, "hours": rng.randint(1, 40)}
                 for t in rng.sample(TASKS, rng.randint(1, 3))]
        teams.append({"team": name, "tasks": tasks,
                      "team_hours": sum(t["hours"] for t in tasks)})
    out = {
        "project": rng.choice(PROJECTS),
        "lead": _person(rng),
        "teams": teams,
        "total_hours": sum(t["team_hours"] for t in teams),
    }
    head = f"Project {out['project']}, lead {out['lead']}"
    layout = rng.randrange(3)
    if layout == 0:
        lines = [head]
        for team in teams:
            lines.append(f"Team {team['team']}:")
            lines += [f"- {t['task']}: {t['hours']} hours" for t in team["tasks"]]
        body = "\n".join(lines)
    elif layout == 1:
        parts = [f"Team {team['team']} has " + ", ".join(
            f"{t['task']} for {t['hours']} hours" for t in team["tasks"]) + "."
            for team in teams]
        body = f"{head}. " + " ".join(parts)
    else:
        rows = [[team["team"], t["task"], t["hours"]] for team in teams for t in team["tasks"]]
        body = "\n".join([head, _table(["team", "task", "hours"], rows)])
    return out, body + _ask("project plan")


TOURNAMENT = _obj(
    {
        "tournament": _STR,
        "rounds": _arr(_obj({
            "round": _INT1,
            "matches": _arr(_obj({"home": _STR, "away": _STR, "home_score": _INT0,
                                  "away_score": _INT0, "winner": _STR})),
        })),
        "total_goals": _INT0,
    },
    "Tournament results",
)


def tournament(rng: random.Random) -> Sample:
    rounds = []
    for number in range(1, rng.randint(2, 3) + 1):
        clubs = rng.sample(CLUBS, 2 * rng.randint(1, 3))
        matches = []
        for home, away in zip(clubs[::2], clubs[1::2]):
            home_score, away_score = rng.sample(range(6), 2)  # distinct: no draws
            matches.append({"home": home, "away": away, "home_score": home_score,
                            "away_score": away_score,
                            "winner": home if home_score > away_score else away})
        rounds.append({"round": number, "matches": matches})
    out = {
        "tournament": rng.choice(CUPS),
        "rounds": rounds,
        "total_goals": sum(m["home_score"] + m["away_score"]
                           for r in rounds for m in r["matches"]),
    }
    head = f"{out['tournament']} results"
    layout = rng.randrange(3)
    if layout == 0:
        lines = [head]
        for r in rounds:
            lines.append(f"Round {r['round']}:")
            lines += [f"- {m['home']} {m['home_score']} - {m['away_score']} {m['away']}"
                      for m in r["matches"]]
        body = "\n".join(lines)
    elif layout == 1:
        parts = [f"In round {r['round']}, " + ", ".join(
            f"{m['home']} (home) scored {m['home_score']} against {m['away']} "
            f"who scored {m['away_score']}" for m in r["matches"]) + "."
            for r in rounds]
        body = f"{head}. " + " ".join(parts)
    else:
        rows = [[r["round"], m["home"], m["away"], m["home_score"], m["away_score"]]
                for r in rounds for m in r["matches"]]
        body = "\n".join([head, _table(["round", "home", "away", "home goals", "away goals"],
                                       rows)])
    return out, body + _ask("tournament results")


BUDGET = _obj(
    {
        "department": _STR,
        "year": {"type": "integer", "minimum": 2000},
        "groups": _arr(_obj({
            "group": _STR,
            "lines": _arr(_obj({"item": _STR, "amount": _NUM0})),
            "group_total": _NUM0,
        })),
        "total": _NUM0,
    },
    "Department budget",
)


def budget(rng: random.Random) -> Sample:
    groups, total = [], 0
    for name in rng.sample(COST_GROUPS, rng.randint(2, 3)):
        amounts = [rng.randint(100, 99999) for _ in range(rng.randint(1, 3))]
        items = rng.sample(COST_ITEMS, len(amounts))
        groups.append({"group": name,
                       "lines": [{"item": i, "amount": _money(a)}
                                 for i, a in zip(items, amounts)],
                       "group_total": _money(sum(amounts))})
        total += sum(amounts)
    out = {
        "department": rng.choice(DEPARTMENTS),
        "year": rng.randint(2020, 2026),
        "groups": groups,
        "total": _money(total),
    }
    head = f"{out['department']} budget {out['year']}"
    layout = rng.randrange(3)
    if layout == 0:
        lines = [head]
        for g in groups:
            lines.append(f"{g['group']}:")
            lines += [f"- {ln['item']}: {_f(ln['amount'])}" for ln in g["lines"]]
        body = "\n".join(lines)
    elif layout == 1:
        parts = [f"{g['group']} spends " + ", ".join(
            f"{_f(ln['amount'])} on {ln['item']}" for ln in g["lines"]) + "."
            for g in groups]
        body = f"{head}. " + " ".join(parts)
    else:
        rows = [[g["group"], ln["item"], ln["amount"]] for g in groups for ln in g["lines"]]
        body = "\n".join([head, _table(["group", "item", "amount"], rows)])
    return out, body + _ask("department budget")


# ---------------------------------------------------------------------------------------------
# Registry. Order matters: it interleaves tiers, so when n is not a multiple of the number of
# schemas the remainder spreads across tiers.

_ENTRIES = [
    SynthSchema("syn_contact", "simple", CONTACT, contact),
    SynthSchema("syn_receipt", "medium", RECEIPT, receipt,
                ("items[].total", "subtotal", "tax", "total")),
    SynthSchema("syn_warehouse", "complex", WAREHOUSE, warehouse,
                ("shelves[].shelf_total", "total_items")),
    SynthSchema("syn_sensor", "simple", SENSOR, sensor),
    SynthSchema("syn_order", "medium", ORDER, order, ("total_qty",)),
    SynthSchema("syn_project", "complex", PROJECT, project,
                ("teams[].team_hours", "total_hours")),
    SynthSchema("syn_product", "simple", PRODUCT, product),
    SynthSchema("syn_timesheet", "medium", TIMESHEET, timesheet, ("total_hours",)),
    SynthSchema("syn_tournament", "complex", TOURNAMENT, tournament,
                ("rounds[].matches[].winner", "total_goals")),
    SynthSchema("syn_rating", "simple", RATING, rating),
    SynthSchema("syn_gradebook", "medium", GRADEBOOK, gradebook, ("average", "highest")),
    SynthSchema("syn_budget", "complex", BUDGET, budget, ("groups[].group_total", "total")),
]
SCHEMAS: dict[str, SynthSchema] = {entry.schema_id: entry for entry in _ENTRIES}


# ---------------------------------------------------------------------------------------------
# Derived-field checks, registered with the data layer so `validate` checks the arithmetic.
# They run on any object claiming the schema (a dataset record or a model's answer), so they
# skip what is missing or mistyped (schema validation reports that) and check the rest.

_TOL = 0.005 + 1e-9  # half a cent: the result must equal the exact value rounded to 2 decimals


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _dict(obj: Any) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


def _list(obj: Any, key: str) -> list[dict[str, Any]]:
    value = obj.get(key) if isinstance(obj, dict) else None
    # A non-object element becomes {}: its fields read as missing, so no sum over it is made.
    return [x if isinstance(x, dict) else {} for x in value] if isinstance(value, list) else []


def _expect(problems: list[str], where: str, actual: Any, expected: float | None,
            what: str) -> None:
    """Append a problem when ``actual`` is a number that differs from ``expected``."""
    if expected is None or not _is_num(actual):
        return
    if abs(actual - expected) > _TOL:
        problems.append(f"{where}: expected {_f(round(expected, 2))} ({what}), "
                        f"found {_f(actual)}")


def _sum(values: list[Any]) -> float | None:
    """Sum of numbers, or None when any is missing, so a partial sum is never compared."""
    return sum(values) if values and all(_is_num(v) for v in values) else None


@derived_check("syn_receipt")
def check_receipt(obj: Any) -> list[str]:
    """items[].total = qty * unit_price; subtotal = sum of item totals;
    tax = subtotal * tax_rate / 100; total = subtotal + tax (each to the cent)."""
    obj = _dict(obj)
    problems: list[str] = []
    items = _list(obj, "items")
    for n, item in enumerate(items):
        qty, price = item.get("qty"), item.get("unit_price")
        if _is_num(qty) and _is_num(price):
            _expect(problems, f"items[{n}].total", item.get("total"), qty * price,
                    "qty * unit_price")
    _expect(problems, "subtotal", obj.get("subtotal"), _sum([i.get("total") for i in items]),
            "the sum of items[].total")
    subtotal, rate = obj.get("subtotal"), obj.get("tax_rate")
    if _is_num(subtotal) and _is_num(rate):
        _expect(problems, "tax", obj.get("tax"), subtotal * rate / 100,
                "subtotal * tax_rate / 100")
    _expect(problems, "total", obj.get("total"), _sum([subtotal, obj.get("tax")]),
            "subtotal + tax")
    return problems


@derived_check("syn_order")
def check_order(obj: Any) -> list[str]:
    """total_qty = sum of lines[].qty."""
    obj = _dict(obj)
    problems: list[str] = []
    _expect(problems, "total_qty", obj.get("total_qty"),
            _sum([ln.get("qty") for ln in _list(obj, "lines")]), "the sum of lines[].qty")
    return problems


@derived_check("syn_timesheet")
def check_timesheet(obj: Any) -> list[str]:
    """total_hours = sum of entries[].hours."""
    obj = _dict(obj)
    problems: list[str] = []
    _expect(problems, "total_hours", obj.get("total_hours"),
            _sum([e.get("hours") for e in _list(obj, "entries")]), "the sum of entries[].hours")
    return problems


@derived_check("syn_gradebook")
def check_gradebook(obj: Any) -> list[str]:
    """average = mean of grades[].score (to the cent); highest = max of grades[].score."""
    obj = _dict(obj)
    problems: list[str] = []
    scores = [g.get("score") for g in _list(obj, "grades")]
    total = _sum(scores)
    if total is not None:
        _expect(problems, "average", obj.get("average"), total / len(scores),
                "the mean of grades[].score")
        _expect(problems, "highest", obj.get("highest"), max(scores),
                "the max of grades[].score")
    return problems


def _check_groups(obj: Any, outer: str, inner: str, leaf: str, group_total: str,
                  total: str) -> list[str]:
    """``outer[].group_total`` = sum of ``outer[].inner[].leaf``; ``total`` = sum of them."""
    problems: list[str] = []
    obj = _dict(obj)
    groups = _list(obj, outer)
    for n, group in enumerate(groups):
        _expect(problems, f"{outer}[{n}].{group_total}", group.get(group_total),
                _sum([x.get(leaf) for x in _list(group, inner)]),
                f"the sum of {outer}[{n}].{inner}[].{leaf}")
    _expect(problems, total, obj.get(total), _sum([g.get(group_total) for g in groups]),
            f"the sum of {outer}[].{group_total}")
    return problems


@derived_check("syn_warehouse")
def check_warehouse(obj: Any) -> list[str]:
    """shelves[].shelf_total = sum of its bins[].count; total_items = sum of shelf totals."""
    return _check_groups(obj, "shelves", "bins", "count", "shelf_total", "total_items")


@derived_check("syn_project")
def check_project(obj: Any) -> list[str]:
    """teams[].team_hours = sum of its tasks[].hours; total_hours = sum of team hours."""
    return _check_groups(obj, "teams", "tasks", "hours", "team_hours", "total_hours")


@derived_check("syn_budget")
def check_budget(obj: Any) -> list[str]:
    """groups[].group_total = sum of its lines[].amount; total = sum of group totals."""
    return _check_groups(obj, "groups", "lines", "amount", "group_total", "total")


@derived_check("syn_tournament")
def check_tournament(obj: Any) -> list[str]:
    """rounds[].matches[].winner = the side with more goals; total_goals = all goals."""
    obj = _dict(obj)
    problems: list[str] = []
    goals: list[Any] = []
    for r, rnd in enumerate(_list(obj, "rounds")):
        for m, match in enumerate(_list(rnd, "matches")):
            home, away = match.get("home_score"), match.get("away_score")
            goals += [home, away]
            if _is_num(home) and _is_num(away) and home != away:
                want = match.get("home") if home > away else match.get("away")
                if match.get("winner") != want:
                    problems.append(f"rounds[{r}].matches[{m}].winner: expected {want!r} "
                                    f"(the side with more goals), found "
                                    f"{match.get('winner')!r}")
    _expect(problems, "total_goals", obj.get("total_goals"), _sum(goals),
            "the sum of all match scores")
    return problems


# ---------------------------------------------------------------------------------------------
# Generation.


def _shares(n: int, k: int) -> list[int]:
    """Split ``n`` into ``k`` counts differing by at most one, larger ones first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def generate(out_dir: str | Path, seed: int = 0, n_train: int = DEFAULT_N_TRAIN,
             n_test: int = DEFAULT_N_TEST, version: str = "v1") -> Path:
    """Write a synthetic dataset in the EdgeJSON layout and return its root (``out_dir``).

    ``n_train`` and ``n_test`` records are each split evenly over the schemas in
    :data:`SCHEMAS` (hence over tiers); counts differ by at most one between schemas.
    Records are drawn per schema from ``random.Random(f"{seed}:{schema_id}")``, so adding a
    schema never changes another's records. A draw whose prompt or expected_output was already
    drawn is rejected, which makes train and test disjoint. Each split is then shuffled with
    ``random.Random(f"{seed}:{split}")``. Existing files at the written paths are replaced;
    nothing else under ``out_dir`` is touched.

    Raises ValueError for negative sizes or a version that is not a plain folder name.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    if not version or version in (".", "..") or "/" in version or "\\" in version:
        raise ValueError(f"version must be a plain folder name such as 'v1', got {version!r}")

    root = Path(out_dir)
    entries = list(SCHEMAS.values())
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    seen_prompts: set[str] = set()
    seen_outputs: set[str] = set()
    for entry, k_train, k_test in zip(entries, _shares(n_train, len(entries)),
                                      _shares(n_test, len(entries))):
        rng = random.Random(f"{seed}:{entry.schema_id}")
        for split, count in (("train", k_train), ("test", k_test)):
            for i in range(count):
                for _ in range(1000):
                    output, prompt = entry.sample(rng)
                    key = _dumps(output)
                    if prompt not in seen_prompts and key not in seen_outputs:
                        break
                else:  # only reachable if a schema's value space is nearly exhausted
                    raise ValueError(f"{entry.schema_id}: could not draw {count} distinct "
                                     f"{split} records; ask for fewer")
                seen_prompts.add(prompt)
                seen_outputs.add(key)
                splits[split].append({
                    "id": f"{entry.schema_id}_{split}_{i:05d}",
                    "schema_id": entry.schema_id,
                    "complexity": entry.tier,
                    "prompt": prompt,
                    "expected_output": output,
                })

    for entry in entries:
        path = root / "schemas" / entry.tier / f"{entry.schema_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entry.schema, indent=2) + "\n", encoding="utf-8",
                        newline="\n")
    (root / version).mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        random.Random(f"{seed}:{split}").shuffle(records)
        text = "".join(_dumps(record) + "\n" for record in records)
        (root / version / f"{split}.jsonl").write_text(text, encoding="utf-8", newline="\n")
    return root


# ---------------------------------------------------------------------------------------------
# Command line: `python -m scaling.data synth ...` (or `python -m scaling.data.synthetic ...`).


def add_synth_subparser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to an ``argparse`` subparsers object; returns it."""
    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic EdgeJSON-format dataset for tiny models",
        description="Write <out>/<version>/{train,test}.jsonl and <out>/schemas/<tier>/*.json: "
                    f"{len(SCHEMAS)} synthetic schemas, split evenly, deterministic by seed.",
    )
    _add_synth_arguments(parser)
    parser.set_defaults(func=run_synth)
    return parser


def _add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed (default 0)")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN,
                        help=f"training records (default {DEFAULT_N_TRAIN})")
    parser.add_argument("--n-test", type=int, default=DEFAULT_N_TEST,
                        help=f"test records (default {DEFAULT_N_TEST})")
    parser.add_argument("--version", default="v1", help="version folder name (default v1)")
    parser.add_argument("--force", action="store_true",
                        help="write into --out even when it is not empty (files of the same names are replaced)")


def run_synth(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments. Prints a summary, then one JSON line
    ``{"root", "version", "train", "test", "schemas"}``; returns the exit status
    (0, or 2 after printing ``error: ...`` to stderr). A non-empty ``--out`` is refused
    without ``--force``: a dataset other runs were trained and scored on is never replaced
    by accident."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
    if out.is_dir() and not getattr(args, "force", False):
        try:
            entries = sorted(p.name for p in out.iterdir())
        except OSError as exc:
            print(f"error: --out {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if entries:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            print(f"error: --out {out} is not empty ({shown}): choose another folder, or pass --force to "
                  "write the dataset into it", file=sys.stderr)
            return 2
    try:
        root = generate(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
                        version=args.version)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.n_train} train + {args.n_test} test records over {len(SCHEMAS)} "
          f"schemas to {root}")
    print(json.dumps({"root": str(root), "version": args.version, "train": args.n_train,
                      "test": args.n_test, "schemas": len(SCHEMAS)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m scaling.data.synthetic --out DIR [--seed N] [--n-train N] [--n-test N]``."""
    parser = argparse.ArgumentParser(prog="python -m scaling.data.synthetic",
                                     description="Write a synthetic EdgeJSON-format dataset.")
    _add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

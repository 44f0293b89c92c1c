"""The twelve synthetic schemas, four per tier, and :data:`SCHEMAS`, their registry.

Each schema is a JSON Schema (built with :mod:`.build`) and a ``sample(rng)`` function that
draws one record: ``(expected_output, prompt)``. The arithmetic of their derived fields is
checked by :mod:`scaling.data.derived_synthetic`, which validation registers whatever is
imported.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from .build import (
    _DATE,
    _INT0,
    _INT1,
    _NUM0,
    _STR,
    CATEGORIES,
    CITIES,
    CLUBS,
    COMMENTS,
    COST_GROUPS,
    COST_ITEMS,
    COURSES,
    CUPS,
    DAYS,
    DEPARTMENTS,
    DOMAINS,
    FIRST,
    LAST,
    PROJECTS,
    ROOMS,
    STORES,
    TASKS,
    TEAMS,
    Sample,
    _arr,
    _ask,
    _code,
    _date,
    _enum,
    _f,
    _lines,
    _mean_cents,
    _money,
    _obj,
    _pct_of,
    _person,
    _product,
    _table,
)

__all__ = ["SCHEMAS", "SynthSchema"]


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

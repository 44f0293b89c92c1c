"""Derived-field checks of the synthetic schemas (:mod:`scaling.data.synthetic`).

:mod:`scaling.data.derived` registers :data:`SYNTHETIC_CHECKS` when it is imported, so
validation knows them whatever else was imported first (the generator need not be).
Every synthetic schema id starts with ``syn_``, so these rules never apply to EdgeJSON's own
schemas.

They run on any object claiming the schema (a dataset record or a model's answer), so they
skip what is missing or mistyped (schema validation reports that) and check the rest. A money
field must equal the exact value rounded half-up to the cent, as the generator writes it.
"""

from __future__ import annotations

import json
from typing import Any, Callable

__all__ = ["SYNTHETIC_CHECKS"]

_TOL = 0.005 + 1e-9  # half a cent: the result must equal the exact value rounded to 2 decimals


def _f(value: Any) -> str:
    """A value as a message shows it: strings verbatim, numbers as JSON writes them (as in a
    synthetic prompt)."""
    return value if isinstance(value, str) else json.dumps(value)


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


def check_order(obj: Any) -> list[str]:
    """total_qty = sum of lines[].qty."""
    obj = _dict(obj)
    problems: list[str] = []
    _expect(problems, "total_qty", obj.get("total_qty"),
            _sum([ln.get("qty") for ln in _list(obj, "lines")]), "the sum of lines[].qty")
    return problems


def check_timesheet(obj: Any) -> list[str]:
    """total_hours = sum of entries[].hours."""
    obj = _dict(obj)
    problems: list[str] = []
    _expect(problems, "total_hours", obj.get("total_hours"),
            _sum([e.get("hours") for e in _list(obj, "entries")]), "the sum of entries[].hours")
    return problems


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


def check_warehouse(obj: Any) -> list[str]:
    """shelves[].shelf_total = sum of its bins[].count; total_items = sum of shelf totals."""
    return _check_groups(obj, "shelves", "bins", "count", "shelf_total", "total_items")


def check_project(obj: Any) -> list[str]:
    """teams[].team_hours = sum of its tasks[].hours; total_hours = sum of team hours."""
    return _check_groups(obj, "teams", "tasks", "hours", "team_hours", "total_hours")


def check_budget(obj: Any) -> list[str]:
    """groups[].group_total = sum of its lines[].amount; total = sum of group totals."""
    return _check_groups(obj, "groups", "lines", "amount", "group_total", "total")


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


#: schema_id -> its derived-field check, for :mod:`scaling.data.derived` to register.
SYNTHETIC_CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "syn_receipt": check_receipt,
    "syn_order": check_order,
    "syn_timesheet": check_timesheet,
    "syn_gradebook": check_gradebook,
    "syn_warehouse": check_warehouse,
    "syn_project": check_project,
    "syn_budget": check_budget,
    "syn_tournament": check_tournament,
}

"""Derived-field arithmetic: totals that must equal the sum of their parts.

EdgeJSON's invoice, order_details and shopping_cart outputs carry totals computed from
their items. v2 of the dataset had random totals in exactly these records; v3 repaired
them. The rules below were chosen by checking them against every v3 record of the
three schemas (all 92 pass); the alternatives that fail there (shopping-cart subtotal
without the per-item discount, for one) are noted where they were ruled out.

A check is a function ``obj -> list[str]`` taking a record's ``expected_output`` and
returning one message per problem, each naming the path (``line_items[2].total``),
the expected value and the value found. Checks never raise: a missing or mistyped
field is the JSON Schema check's business, so the arithmetic that depends on it is
skipped. Register a new one with ``@derived_check("schema_id")``.

The synthetic schemas' rules (``syn_*``, :mod:`scaling.data.derived_synthetic`) are registered
here too, at the end of this module: the registry is complete as soon as it exists, whatever
was imported first.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .derived_synthetic import SYNTHETIC_CHECKS

#: Largest accepted absolute difference between a derived field and its arithmetic.
TOLERANCE = 0.02

DerivedCheck = Callable[[Any], list[str]]

#: schema_id -> the checks run on that schema's objects, in registration order.
DERIVED_CHECKS: dict[str, list[DerivedCheck]] = {}


def derived_check(schema_id: str) -> Callable[[DerivedCheck], DerivedCheck]:
    """Decorator: register ``fn`` as a derived-field check for ``schema_id``."""

    def register(fn: DerivedCheck) -> DerivedCheck:
        checks = DERIVED_CHECKS.setdefault(schema_id, [])
        if fn not in checks:
            checks.append(fn)
        return fn

    return register


def check_derived(schema_id: str, obj: Any) -> list[str]:
    """All problems the registered checks of ``schema_id`` find in ``obj`` ([] if none)."""
    problems: list[str] = []
    for fn in DERIVED_CHECKS.get(schema_id, ()):
        problems.extend(fn(obj))
    return problems


# --------------------------------------------------------------------------- helpers


def _num(v: Any) -> float | None:
    """``v`` as a float when it is a finite JSON number (not a boolean), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _differs(expected: float, found: float) -> bool:
    return abs(expected - found) > TOLERANCE


def _mismatch(path: str, expected: float, found: float, how: str) -> str:
    return f"{path}: expected {expected:.2f} ({how}), found {found:.2f} (off by {found - expected:+.2f})"


def _optional_num(obj: dict, key: str) -> tuple[bool, float]:
    """``(usable, value)``: a missing key counts as 0; a present non-number is unusable."""
    if key not in obj:
        return True, 0.0
    v = _num(obj[key])
    return (v is not None), (v or 0.0)


def _line_amounts(
    obj: dict, items_key: str, price_key: str, discount_key: str | None = None,
) -> list[float] | None:
    """Per-item ``quantity * price`` (less ``discount_key`` percent when given and present).

    None when the items list or any item's quantity or price is missing or not a
    number, so no sum can be trusted.
    """
    items = obj.get(items_key)
    if not isinstance(items, list) or not items:
        return None
    amounts = []
    for item in items:
        if not isinstance(item, dict):
            return None
        q, p = _num(item.get("quantity")), _num(item.get(price_key))
        if q is None or p is None:
            return None
        amount = q * p
        if discount_key is not None and discount_key in item:
            d = _num(item[discount_key])
            if d is None:
                return None
            amount *= 1 - d / 100
        amounts.append(amount)
    return amounts


def _check_sum_total(
    obj: dict, amounts: list[float], items_desc: str, *, subtotal_key: str | None,
    total_key: str, addends: tuple[str, ...],
) -> list[str]:
    """``subtotal == sum(amounts)``; ``total == (subtotal, or the sum without one) + addends``.

    Keys in ``addends`` (tax, shipping) count as 0 when missing; the total is not
    checked when one of them, or a present subtotal, is not a number.
    """
    problems = []
    line_sum = sum(amounts)
    base, base_desc = line_sum, f"sum of {items_desc}"
    if subtotal_key is not None and subtotal_key in obj:
        sub = _num(obj[subtotal_key])
        if sub is None:
            return problems
        if _differs(line_sum, sub):
            problems.append(_mismatch(subtotal_key, line_sum, sub, f"sum of {items_desc}"))
        base, base_desc = sub, subtotal_key
    total = _num(obj.get(total_key))
    if total is None:
        return problems
    expected = base
    present = [base_desc]
    for key in addends:
        ok, v = _optional_num(obj, key)
        if not ok:
            return problems
        expected += v
        if key in obj:
            present.append(key)
    if _differs(expected, total):
        problems.append(_mismatch(total_key, expected, total, " + ".join(present)))
    return problems


# --------------------------------------------------------------------------- rules


@derived_check("invoice")
def invoice_totals(obj: Any) -> list[str]:
    """invoice: ``line_items[i].total`` (when present) = quantity x unit_price;
    ``subtotal`` (when present) = sum of quantity x unit_price over the line items;
    ``total_amount`` = subtotal + tax, where a missing tax is 0 and a missing subtotal
    is the sum of the line items (v3: the 9 invoices without a subtotal all follow it).
    """
    if not isinstance(obj, dict):
        return []
    problems = []
    items = obj.get("line_items")
    if isinstance(items, list):
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "total" not in item:
                continue
            q, p, t = _num(item.get("quantity")), _num(item.get("unit_price")), _num(item["total"])
            if q is None or p is None or t is None:
                continue
            if _differs(q * p, t):
                problems.append(_mismatch(f"line_items[{i}].total", q * p, t, f"quantity {q:g} x unit_price {p:.2f}"))
    amounts = _line_amounts(obj, "line_items", "unit_price")
    if amounts is not None:
        problems += _check_sum_total(
            obj, amounts, "line_items[*].quantity x unit_price",
            subtotal_key="subtotal", total_key="total_amount", addends=("tax",),
        )
    return problems


@derived_check("order_details")
def order_details_total(obj: Any) -> list[str]:
    """order_details: ``total_amount`` = sum of ``items[i].quantity x price``.

    The schema has no subtotal, tax or shipping field (``additionalProperties`` is
    false), so there is nothing else to add; all 30 v3 orders follow this rule.
    """
    if not isinstance(obj, dict):
        return []
    amounts = _line_amounts(obj, "items", "price")
    if amounts is None:
        return []
    return _check_sum_total(
        obj, amounts, "items[*].quantity x price", subtotal_key=None, total_key="total_amount", addends=(),
    )


@derived_check("shopping_cart")
def shopping_cart_totals(obj: Any) -> list[str]:
    """shopping_cart: an item's amount is ``quantity x price x (1 - discount_percentage/100)``
    (no discount when the field is missing); ``subtotal`` (when present) = sum of the
    amounts; ``total`` = subtotal + shipping_cost + tax, each missing one counting 0
    and a missing subtotal being the sum of the amounts.

    In v3 all 31 carts follow this; the undiscounted sum fails every one of the 15
    subtotals, so the discount is part of the arithmetic.
    """
    if not isinstance(obj, dict):
        return []
    amounts = _line_amounts(obj, "items", "price", discount_key="discount_percentage")
    if amounts is None:
        return []
    return _check_sum_total(
        obj, amounts, "items[*].quantity x price less discount_percentage",
        subtotal_key="subtotal", total_key="total", addends=("shipping_cost", "tax"),
    )


# --------------------------------------------------------------------------- synthetic schemas

# Registered here, not by the generator, so validation checks them whatever was imported first.
for _schema_id, _check in SYNTHETIC_CHECKS.items():
    derived_check(_schema_id)(_check)
del _schema_id, _check

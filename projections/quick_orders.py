"""Recognising quick orders ("купити в 1 клік") among a site's orders.

Quick-order modules have no standard: some write an ordinary `order` row with
a made-up name, a dummy email and no address or methods; others keep their own
table (captured as snapshots of kind "quick_order"). Their stored totals are not
to be trusted, so their deals are totalled from their lines.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from daemon.settings import QuickOrderSettings
from events.snapshot import OrderSnapshot


def is_quick_order(snapshot: OrderSnapshot, rule: QuickOrderSettings | None) -> bool:
    """True for a module-table quick order, or an order row the site's rule matches.

    A rule with no test set matches nothing: an ordinary order must never be
    taken for a quick one by default.
    """
    if snapshot.kind == "quick_order":
        return True
    if rule is None:
        return False

    order = snapshot.order
    tests: list[bool] = []
    if rule.empty_methods:
        methods = (
            order.get("shipping_code"),
            order.get("payment_code"),
            order.get("shipping_method"),
            order.get("payment_method"),
        )
        tests.append(not any((value or "").strip() for value in methods))
    if rule.empty_address:
        # Address line 1 and city of both addresses: a quick-order form asks
        # for a phone only, while an ordinary checkout fills at least one.
        address = (
            order.get(f"{side}{column}")
            for side in ("payment_", "shipping_")
            for column in ("address_1", "city")
        )
        tests.append(not any((value or "").strip() for value in address))
    if rule.emails:
        email = (order.get("email") or "").strip().lower()
        tests.append(any(fnmatchcase(email, p.lower()) for p in rule.emails))
    if rule.comment_marker:
        tests.append(rule.comment_marker in (order.get("comment") or ""))

    return bool(tests) and all(tests)

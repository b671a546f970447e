"""What differs between the deal as last sent and the deal an order should be.

After a deal is created, ocsync changes only the fields it owns. A manager may
reassign the deal, move its stage, or add comments and lines by hand; those are
left alone. The stage is moved only when the shop's status changes (or by a replay
after a stage map fix, while the deal is still at the stage ocsync gave it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from projections.deal import Deal

# Deal fields ocsync keeps in step with the order after creation.
OWNED_FIELDS = (
    "title",
    "source_id",
    "currency",
    "total",
    "discount",
    "discount_kind",
    "comment",
)
# Set once, at creation: a manager may change them in the CRM afterwards.
CREATION_ONLY_FIELDS = (
    "main_responsible_id",
    "funnel_id",
    "stage_id",
    "client_attributes",
    "client_id",
)

_encoder = msgspec.json.Encoder()
# Amounts the log stored as text: "681", "-0.01", "4990.70".
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass
class DealDiff:
    """Owned fields that changed (old, new), and the lines when they changed."""

    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    custom_fields: dict[str, tuple[str | None, str | None]] = field(
        default_factory=dict
    )
    old_lines: list[dict[str, Any]] | None = None
    new_lines: list[dict[str, Any]] | None = None

    @property
    def lines_changed(self) -> bool:
        return self.new_lines is not None

    def __bool__(self) -> bool:
        return bool(self.fields or self.custom_fields or self.lines_changed)


def comparable(deal: Deal) -> dict[str, Any]:
    """The deal in one spelling, whoever wrote it down.

    The log keeps amounts as exact strings ("681.00"), the CRM answers JSON
    numbers (681): both become the same normalised decimal text, so that a
    deal read back from the CRM compares equal to the one that was sent.
    """
    normalised: dict[str, Any] = _numbers_as_text(as_logged(deal))
    return normalised


def as_logged(deal: Deal) -> dict[str, Any]:
    """The deal as the log stores it: Decimals become their exact strings."""
    plain: dict[str, Any] = msgspec.json.decode(_encoder.encode(deal))
    return plain


def _numbers_as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return _number_text(Decimal(value))
    if isinstance(value, str) and _NUMBER.match(value):
        return _number_text(Decimal(value))
    if isinstance(value, dict):
        return {key: _numbers_as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_text(item) for item in value]
    return value


def _number_text(number: Decimal) -> str:
    # normalize() turns 681.00 into 681 but 1E+3 for 1000: spell it out.
    return f"{number.normalize():f}"


def deal_diff(sent: Deal, desired: Deal) -> DealDiff:
    """Compare the owned parts of two deals; report them as the log spells them."""
    old, new = as_logged(sent), as_logged(desired)
    same = _numbers_as_text
    diff = DealDiff()

    for name in OWNED_FIELDS:
        if same(old.get(name)) != same(new.get(name)):
            diff.fields[name] = (old.get(name), new.get(name))

    old_custom = _custom_fields(old)
    new_custom = _custom_fields(new)
    for name in sorted(old_custom.keys() | new_custom.keys()):
        if same(old_custom.get(name)) != same(new_custom.get(name)):
            diff.custom_fields[name] = (old_custom.get(name), new_custom.get(name))

    old_lines = old.get("jobs_attributes") or []
    new_lines = new.get("jobs_attributes") or []
    if same(old_lines) != same(new_lines):
        diff.old_lines, diff.new_lines = old_lines, new_lines

    return diff


def changed_scalars(diff: DealDiff, desired: Deal) -> dict[str, Any]:
    """The PATCH fields for a diff, values taken from the desired deal."""
    changes = {name: desired.get(name) for name in diff.fields}
    if diff.custom_fields:
        # A field no longer set is cleared rather than left with a stale value.
        changes["custom_fields"] = [
            {"name": name, "value": new or ""}
            for name, (_, new) in diff.custom_fields.items()
        ]
    return changes


def _custom_fields(deal: dict[str, Any]) -> dict[str, str]:
    return {
        str(item["name"]): str(item.get("value", ""))
        for item in deal.get("custom_fields") or []
        if isinstance(item, dict) and "name" in item
    }

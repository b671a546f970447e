"""What differs between the deal as last sent and the deal an order should be.

After a deal is created, ocsync changes only the fields it owns. A manager may
reassign the deal, move its stage, or add comments and lines by hand; those are
left alone. The stage is moved only when the shop's status changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """The deal as the log stores it: Decimals become their exact strings."""
    plain: dict[str, Any] = msgspec.json.decode(_encoder.encode(deal))
    return plain


def deal_diff(sent: Deal, desired: Deal) -> DealDiff:
    """Compare the owned parts of two deals, both in their comparable form."""
    old, new = comparable(sent), comparable(desired)
    diff = DealDiff()

    for name in OWNED_FIELDS:
        if old.get(name) != new.get(name):
            diff.fields[name] = (old.get(name), new.get(name))

    old_custom = _custom_fields(old)
    new_custom = _custom_fields(new)
    for name in sorted(old_custom.keys() | new_custom.keys()):
        if old_custom.get(name) != new_custom.get(name):
            diff.custom_fields[name] = (old_custom.get(name), new_custom.get(name))

    old_lines = old.get("jobs_attributes") or []
    new_lines = new.get("jobs_attributes") or []
    if old_lines != new_lines:
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

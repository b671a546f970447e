"""What the log says about one order: its latest snapshot and its deal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.snapshot import OrderSnapshot, shown_as_first
from events.store import RecordedEvent
from events.types import (
    DealCreated,
    DealCreateFailed,
    DealRelinked,
    DealRequested,
    DealUpdated,
    DealUpdateFailed,
    OrderChanged,
    OrderPlaced,
    OrderUnreadable,
    RetryRequested,
)


@dataclass
class OrderState:
    """One order stream folded: enough to decide create, update or nothing."""

    stream: str
    version: int = 0
    snapshot: OrderSnapshot | None = None
    snapshot_position: int = 0
    deal_id: int | None = None
    # The deal as last sent (the create body, then each correction), and the
    # shop status of the snapshot it was built from.
    sent: dict[str, Any] | None = None
    sent_status: int = 0
    # The stage ocsync last sent (None: none, or the deal was relinked and its
    # stage is the managers').
    sent_stage: int | None = None
    # The CRM ids of the lines ocsync made (None: not known, e.g. a deal
    # relinked by its marker): a correction removes those and no others.
    line_ids: list[int] | None = None
    # The right lines a correction comment listed while the CRM kept `sent`'s
    # (`deals.line_update = "comment"`); None when none is pending.
    commented_lines: list[dict[str, Any]] | None = None
    unanswered_request: bool = False
    failure: DealCreateFailed | None = None
    update_failure: DealUpdateFailed | None = None
    # Capture's last word on the order when it could not read it (no snapshot
    # since, no retry asked for since).
    unreadable: OrderUnreadable | None = None

    @property
    def parked(self) -> bool:
        """Refused for good until the order, the settings or the CRM changes."""
        return (
            self.deal_id is None
            and self.failure is not None
            and not self.failure.retryable
        )


def fold(stream: str, records: list[RecordedEvent]) -> OrderState:
    """Replay an order stream's events, oldest first, into its state.

    The state's snapshot is the newest, shown with the first one's shop
    settings and currency row (`shown_as_first`).
    """
    state = OrderState(stream=stream)
    first: OrderSnapshot | None = None
    for record in records:
        state.version = record.version
        match record.event:
            case OrderPlaced(snapshot=snapshot) | OrderChanged(snapshot=snapshot):
                first = first or snapshot
                state.snapshot = shown_as_first(snapshot, first)
                state.snapshot_position = record.position
                state.unreadable = None
            case OrderUnreadable() as unreadable:
                state.unreadable = unreadable
            case DealRequested(deal=deal, order_status=status):
                state.sent = deal
                state.sent_status = status
                state.sent_stage = _stage(deal.get("stage_id"))
                state.line_ids = None
                state.commented_lines = None
                state.unanswered_request = True
                state.failure = None
            case DealCreated(deal_id=deal_id, line_ids=line_ids):
                state.deal_id = deal_id
                state.line_ids = line_ids
                state.unanswered_request = False
                state.failure = None
            case DealCreateFailed() as failure:
                state.failure = failure
                # A refusal is an answer; a lost answer is not.
                if 0 < failure.status < 500 and failure.status != 429:
                    state.unanswered_request = False
            case DealUpdated(order_status=status) as updated:
                state.sent = deal_after(state.sent, updated)
                state.sent_status = status
                if "stage_id" in updated.changes:
                    state.sent_stage = _stage(updated.changes["stage_id"])
                # Lines not replaced keep their ids; replaced ones have new.
                if "jobs_attributes" in updated.changes:
                    state.line_ids = updated.line_ids
                    state.commented_lines = None
                if updated.commented_lines is not None:
                    state.commented_lines = updated.commented_lines
                state.update_failure = None
            case DealUpdateFailed() as failure:
                state.update_failure = failure
            case DealRelinked(deal_id=deal_id, deal=deal):
                state.deal_id = deal_id
                state.sent = deal
                state.line_ids = None
                state.commented_lines = None
                state.sent_stage = None
                # The CRM's stage is a manager's now: keep it until the status
                # changes from the one the snapshot has.
                state.sent_status = state.snapshot.status_id if state.snapshot else 0
                state.unanswered_request = False
                state.failure = None
            case RetryRequested():
                state.failure = None
                state.update_failure = None
                state.unreadable = None
    return state


def deal_after(sent: dict[str, Any] | None, updated: DealUpdated) -> dict[str, Any]:
    """The deal as it stands after `updated`, given the deal before it.

    An event upcast from v2 with a correction comment carries no lines: the
    CRM kept the ones it had.
    """
    if "jobs_attributes" in updated.deal:
        return updated.deal
    return {**updated.deal, "jobs_attributes": (sent or {}).get("jobs_attributes", [])}


def _stage(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

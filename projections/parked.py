"""Orders that did not become (or stay) right deals, and asking to try again.

`ocsync status` lists them with the reason; `ocsync retry` appends a
`RetryRequested` to an order's stream, which the deal projection picks up on its
next pass, with the settings of that moment. An order capture could not read
(`OrderUnreadable`) is read again by capture's next poll after the retry.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.settings import Settings
from events.store import EventStore, StreamAppend
from events.types import DealCreateFailed, DealUpdateFailed, RetryRequested
from projections.errors import ProjectionError
from projections.order_state import fold


class UnknownOrder(ProjectionError):
    """No order with that marker is in the log."""


class NothingToRetry(ProjectionError):
    """The order did not fail: a retry would change nothing."""


@dataclass(frozen=True)
class ParkedOrder:
    """One order waiting for a fix: why, and since which event."""

    stream: str
    # "parked", "held", "waiting" (the CRM did not answer), "correction", or
    # "unreadable" (capture could not read it from the shop).
    kind: str
    status: int
    reason: str
    since: str
    position: int


async def parked_orders(store: EventStore, settings: Settings) -> list[ParkedOrder]:
    """Every order stream of the configured sites whose last outcome is a failure."""
    found = []
    for site in settings.sites:
        for stream in await store.streams(f"{site.name}:"):
            records = await store.read_stream(stream)
            state = fold(stream, records)
            if state.unreadable is not None:
                unread = next(
                    record
                    for record in reversed(records)
                    if record.event is state.unreadable
                )
                found.append(
                    ParkedOrder(
                        stream=stream,
                        kind="unreadable",
                        status=0,
                        reason=state.unreadable.reason,
                        since=unread.recorded_at,
                        position=unread.position,
                    )
                )
                continue
            last_failure = next(
                (
                    record
                    for record in reversed(records)
                    if isinstance(record.event, DealCreateFailed | DealUpdateFailed)
                ),
                None,
            )
            if last_failure is None:
                if state.deal_id is None and state.snapshot is not None:
                    # Captured, never answered for: the CRM was not reached
                    # yet (or a pass stopped before it).
                    found.append(
                        ParkedOrder(
                            stream=stream,
                            kind="pending",
                            status=0,
                            reason="captured, not yet sent",
                            since=records[-1].recorded_at,
                            position=records[-1].position,
                        )
                    )
                continue
            event = last_failure.event
            assert isinstance(event, DealCreateFailed | DealUpdateFailed)
            if isinstance(event, DealCreateFailed):
                if state.deal_id is not None or state.failure is None:
                    continue
                if not event.retryable:
                    kind = "parked"
                elif event.error.startswith("held:"):
                    kind = "held"
                else:
                    kind = "waiting"
            else:
                if state.update_failure is None:
                    continue
                kind = "correction"
            found.append(
                ParkedOrder(
                    stream=stream,
                    kind=kind,
                    status=event.status,
                    reason=event.error,
                    since=last_failure.recorded_at,
                    position=last_failure.position,
                )
            )
    return found


async def request_retry(store: EventStore, marker: str, reason: str = "") -> int:
    """Ask the projection to try one order again; answers the event's position."""
    records = await store.read_stream(marker)
    if not records:
        raise UnknownOrder(f"no order {marker!r} in the event log")
    state = fold(marker, records)
    failed = state.failure is not None or state.update_failure is not None
    if not failed and state.unreadable is None:
        raise NothingToRetry(
            f"{marker} has nothing to retry: "
            + (
                f"its deal {state.deal_id} is in step"
                if state.deal_id is not None
                else "it is on its way (see ocsync status)"
            )
        )
    [written] = await store.append(
        [
            StreamAppend(
                marker,
                records[-1].version,
                [RetryRequested(marker=marker, reason=reason)],
            )
        ]
    )
    return written.position


def render_parked(parked: list[ParkedOrder]) -> str:
    """`ocsync status`: one line per order waiting for a fix, oldest first."""
    pending = [order for order in parked if order.kind == "pending"]
    needing = [order for order in parked if order.kind != "pending"]
    lines = []
    if pending:
        lines.append(
            f"{len(pending)} captured order(s) not yet sent: the next pass of "
            "ocsync run sends them (oldest: "
            f"{min(pending, key=lambda order: order.position).stream})."
        )
    if not needing:
        lines.append(
            "No parked orders: every captured order has its deal or is on its way."
        )
        return "\n".join(lines)
    lines.append(f"{len(needing)} order(s) waiting:")
    for order in sorted(needing, key=lambda order: order.position):
        status = f" {order.status}" if order.status else ""
        lines.append(
            f"  {order.stream:<16} {order.kind:<10}{status} since {order.since}: "
            f"{order.reason}"
        )
    lines.append("After a fix: ocsync retry SITE:ORDER_ID (or --all).")
    return "\n".join(lines)

"""Orders that did not become (or stay) right deals, and asking to try again.

`ocsync status` lists them with the reason; `ocsync retry` appends a
`RetryRequested` to an order's stream, which the deal projection picks up on its
next pass, with the settings of that moment.
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


@dataclass(frozen=True)
class ParkedOrder:
    """One order waiting for a fix: why, and since which event."""

    stream: str
    kind: str  # "parked", "held", "waiting" (the CRM did not answer) or "correction"
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
            last_failure = next(
                (
                    record
                    for record in reversed(records)
                    if isinstance(record.event, DealCreateFailed | DealUpdateFailed)
                ),
                None,
            )
            if last_failure is None:
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
    if not parked:
        return "No parked orders: every captured order has its deal or is on its way."
    lines = [f"{len(parked)} order(s) waiting:"]
    for order in sorted(parked, key=lambda order: order.position):
        status = f" {order.status}" if order.status else ""
        lines.append(
            f"  {order.stream:<16} {order.kind:<10}{status} since {order.since}: "
            f"{order.reason}"
        )
    lines.append("After a fix: ocsync retry SITE:ORDER_ID (or --all).")
    return "\n".join(lines)

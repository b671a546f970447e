"""The event types of the log: frozen msgspec Structs in one tagged union.

Every type carries its own schema version (`SCHEMA_VERSIONS`): when a field is
added or renamed, the version goes up and the reader upcasts older payloads.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from events.snapshot import OrderSnapshot


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every event; the tag is the class name."""


class OrderPlaced(_Event, frozen=True, kw_only=True):
    """The first confirmed sighting of an order, with its complete snapshot."""

    snapshot: OrderSnapshot
    content_hash: str


class OrderChanged(_Event, frozen=True, kw_only=True):
    """A later snapshot of the order whose content differs from the last one."""

    snapshot: OrderSnapshot
    content_hash: str


class OrderUnreadable(_Event, frozen=True, kw_only=True):
    """Capture could not read the order as OpenCart data; it waits for a fix.

    Appended once per distinct field and reason (`field` is empty for an
    error of ocsync's own, not of a column). `ocsync retry` has capture read it
    again; once it reads cleanly a snapshot event follows as usual.
    """

    marker: str
    order_id: int
    field: str
    reason: str


class DealRequested(_Event, frozen=True, kw_only=True):
    """Written before the create call: the deal we are about to send."""

    marker: str
    deal: dict[str, Any]
    # Position of the snapshot event the deal was built from, and the shop
    # status it had (a later status change moves the deal's stage).
    source_position: int
    order_status: int = 0


class DealCreated(_Event, frozen=True, kw_only=True):
    """The CRM accepted the deal and answered with its id.

    `line_ids` (v2) are the CRM ids of the deal's lines, read back after the
    create: the lines ocsync made, which a correction may remove. None when
    they are not known (the read failed, the lines had no ids, the deal was
    found by its marker, or the event predates v2).

    From v3, `status` and `attempts` are the CRM's own answer to the create
    (attempts None: not known); `found` says the deal was found by its marker
    after an answer was lost, `status` then being the lookup's.
    """

    marker: str
    deal_id: int
    status: int
    line_ids: list[int] | None = None
    attempts: int | None = None
    found: bool = False


class DealCreateFailed(_Event, frozen=True, kw_only=True):
    """The CRM, or our own mapping, refused the deal; the order is parked.

    `status` is the HTTP status (0 when the request never got an answer or
    the mapping failed before sending).
    """

    marker: str
    status: int
    error: str
    retryable: bool


class DealUpdated(_Event, frozen=True, kw_only=True):
    """An existing deal was corrected in place to match a newer snapshot.

    `deal` is the whole deal as it now stands on our side (what a later change
    is compared with); `changes` is the PATCH body that was sent, `status`
    (from v4) the CRM's answer to it. When the
    lines were replaced (`jobs_attributes` in `changes`), `line_ids` (v2) are
    the CRM ids of the lines ocsync added, read back; None when not known.

    From v3, `deal["jobs_attributes"]` are the lines the CRM holds: when they
    were left alone (`deals.line_update = "comment"`), the lines as before, and
    `commented_lines` the right ones the correction comment listed. An event
    upcast from v2 with a comment has no `jobs_attributes` in `deal`: its
    lines are those of the event before.
    """

    marker: str
    deal_id: int
    deal: dict[str, Any]
    changes: dict[str, Any]
    status: int
    source_position: int
    order_status: int = 0
    line_ids: list[int] | None = None
    commented_lines: list[dict[str, Any]] | None = None
    # v4: the attempts the PATCH took (None: not known, or no PATCH was sent).
    attempts: int | None = None


class DealUpdateFailed(_Event, frozen=True, kw_only=True):
    """The CRM refused a correction, or it could not be mapped; the deal stays."""

    marker: str
    deal_id: int
    status: int
    error: str
    retryable: bool


class RetryRequested(_Event, frozen=True, kw_only=True):
    """An operator asked for a parked order to be tried again (`ocsync retry`)."""

    marker: str
    reason: str = ""


class DealRelinked(_Event, frozen=True, kw_only=True):
    """A deal found in the CRM by its marker, linked to its order again.

    Written by `ocsync relink` after the log was lost or restored: `deal` is
    the deal as the CRM showed it, so that a later correction knows which
    lines ocsync sent.
    """

    marker: str
    deal_id: int
    deal: dict[str, Any]


class CatalogueLinked(_Event, frozen=True, kw_only=True):
    """An article now links to a CRM catalogue item (None: no item has it)."""

    article: str
    material_id: int | None
    title: str | None = None


Event = (
    OrderPlaced
    | OrderChanged
    | OrderUnreadable
    | DealRequested
    | DealCreated
    | DealCreateFailed
    | DealUpdated
    | DealUpdateFailed
    | RetryRequested
    | DealRelinked
    | CatalogueLinked
)

SCHEMA_VERSIONS: dict[str, int] = {
    "OrderPlaced": 1,
    "OrderChanged": 1,
    "OrderUnreadable": 1,
    "DealRequested": 1,
    "DealCreated": 3,
    "DealCreateFailed": 1,
    "DealUpdated": 4,
    "DealUpdateFailed": 1,
    "RetryRequested": 1,
    "DealRelinked": 1,
    "CatalogueLinked": 1,
}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def event_type(event: Event) -> str:
    return type(event).__name__


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes) -> Event:
    return _decoder.decode(payload)


def order_stream(site: str, order_id: int, kind: str = "order") -> str:
    """The stream of one order, which is also the marker its deal carries.

    A quick order kept in a module's own table has ids of its own, so its
    stream is told apart: `site_a:quick-12`.
    """
    if kind == "quick_order":
        return f"{site}:quick-{order_id}"
    return f"{site}:{order_id}"


_ORDER_STREAM = re.compile(r"(?P<site>[^:\s]+):(?P<quick>quick-)?(?P<order_id>[0-9]+)")


def parse_order_stream(stream: str) -> tuple[str, int, str] | None:
    """`order_stream` read back: site, order id and kind; None for no order's."""
    match = _ORDER_STREAM.fullmatch(stream)
    if match is None:
        return None
    kind = "quick_order" if match["quick"] else "order"
    return match["site"], int(match["order_id"]), kind


def article_stream(article: str) -> str:
    return f"article:{article}"

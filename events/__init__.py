"""The event log: event types, the store contract and its backends."""

from __future__ import annotations

from pathlib import Path

from events.errors import (
    EventLogError,
    EventLogMissing,
    EventLogUnavailable,
    UnknownEventType,
    VersionConflict,
)
from events.sqlite import SqliteEventStore
from events.store import EventStore, RecordedEvent, StreamAppend
from events.types import (
    SCHEMA_VERSIONS,
    CatalogueLinked,
    DealCreated,
    DealCreateFailed,
    DealRelinked,
    DealRequested,
    DealUpdated,
    DealUpdateFailed,
    Event,
    OrderChanged,
    OrderPlaced,
    OrderUnreadable,
    RetryRequested,
    article_stream,
    event_type,
    order_stream,
    parse_order_stream,
)

__all__ = [
    "SCHEMA_VERSIONS",
    "CatalogueLinked",
    "DealCreateFailed",
    "DealCreated",
    "DealRelinked",
    "DealRequested",
    "DealUpdateFailed",
    "DealUpdated",
    "Event",
    "EventLogError",
    "EventLogMissing",
    "EventLogUnavailable",
    "EventStore",
    "OrderChanged",
    "OrderPlaced",
    "OrderUnreadable",
    "RecordedEvent",
    "RetryRequested",
    "SqliteEventStore",
    "StreamAppend",
    "UnknownEventType",
    "VersionConflict",
    "article_stream",
    "event_type",
    "open_event_store",
    "order_stream",
    "parse_order_stream",
]


async def open_event_store(
    url: str, base_dir: Path, *, create: bool = True
) -> EventStore:
    """Open the event log the `event_log.url` setting names.

    `sqlite:///relative/path.db` resolves against `base_dir`,
    `sqlite:////absolute/path.db` is taken as is; missing folders are created.
    Without `create`, a log that does not exist yet is `EventLogMissing`: a
    command that only reads it would otherwise report an empty log as all
    clear when its settings point to the wrong place.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise EventLogError(
            f"event_log.url: {url!r} has no scheme (use sqlite:///path)"
        )
    if scheme != "sqlite":
        raise EventLogError(
            f"event_log.url: scheme {scheme!r} is not supported (use sqlite:///path)"
        )
    host, _, path = rest.partition("/")
    if host or not path:
        raise EventLogError(
            f"event_log.url: {url!r} names no file (use sqlite:///relative/path.db"
            " or sqlite:////absolute/path.db)"
        )

    file = base_dir / path  # an absolute path replaces base_dir
    if not create and not file.exists():
        raise EventLogMissing(
            f"event_log.url: there is no event log at {file} (`ocsync run` makes"
            " it); are these the settings the daemon runs with?"
        )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EventLogUnavailable(
            f"event_log.url: cannot create the folder {file.parent}: {exc}"
        ) from exc

    return await SqliteEventStore.open(file)

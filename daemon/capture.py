"""Capture: one shop's confirmed or changed orders become events in the log.

A poll reads the orders modified since the cursor (less an overlap window, since
shop timestamps have whole seconds and a slower writer may commit a row stamped
a little earlier) and the orders with history rows past the cursor (OpenCart 4.1
and third-party modules change orders without moving `date_modified`), a batch
at a time. Each snapshot is compared by content hash with the last one its
stream holds: a new confirmed order becomes `OrderPlaced`, a different content
`OrderChanged`, the same content nothing. Rows of the site's own queries
(`extras`) are part of the content, but are read only with their order: a
module that adds a waybill without touching the order or its history shows at
the order's next change.

After the orders, a site whose quick-order module keeps its own table
(`quick_order.query`) has that table read past the last id captured: each new
quick order becomes `OrderPlaced` on its own stream (`site:quick-<id>`), and
never changes afterwards.

The cursor is the checkpoint `capture:<site>`, written in the same append as the
events of its batch, so a crash repeats at most one batch, whose hashes are then
found unchanged (and whose quick orders are found placed already).

An order that cannot be read as OpenCart data (a NULL quantity, a broken
currency row) is not left to be read again at every poll: `OrderUnreadable`
goes to its stream, once per distinct field and reason, and `ocsync status`
lists it. Capture reads it again when the shop changes it, or at the first poll
after `ocsync retry` appended to its stream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import structlog

from daemon.errors import ShopDataError, ShopUnavailable
from daemon.quick_orders import QuickOrderReader
from daemon.settings import CaptureSettings, SiteSettings, parse_sync_from
from daemon.shop import ShopReader
from events.errors import VersionConflict
from events.snapshot import OrderSnapshot, content_hash
from events.store import EventStore, RecordedEvent, StreamAppend
from events.types import (
    Event,
    OrderChanged,
    OrderPlaced,
    OrderUnreadable,
    RetryRequested,
    order_stream,
)

_SHOP_CLOCK = "%Y-%m-%d %H:%M:%S"


class CaptureResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one batch did; `more` while the poll has batches left."""

    seen: int = 0
    placed: int = 0
    changed: int = 0
    unchanged: int = 0
    deferred: int = 0
    unreadable: int = 0
    more: bool = False


class CaptureCursor(msgspec.Struct, frozen=True, kw_only=True):
    """The checkpoint of one site's capture, stored as JSON."""

    # The newest date_modified read, in the shop's own clock.
    modified: str | None = None
    # Every history row up to this id has been read.
    history_id: int = 0
    # Orders caught mid-edit, read again by the next poll.
    deferred: tuple[int, ...] = ()
    # Orders recorded unreadable: read again once a retry is asked for.
    unreadable: tuple[int, ...] = ()
    # The last quick_order_id read from a quick-order module's own table.
    quick_after_id: int = 0
    # Quick orders that could not be read, tried again by the next poll.
    quick_deferred: tuple[int, ...] = ()


class _Known(msgspec.Struct, frozen=True):
    """A stream's version and the content hash of its last snapshot event.

    `position` is the stream's last event's (None for an empty stream);
    `unreadable` the field and reason when that event is `OrderUnreadable`.
    """

    version: int
    content_hash: str | None
    position: int | None = None
    unreadable: tuple[str, str] | None = None


class _Poll:
    """A poll in progress, from which each batch's checkpoint comes."""

    def __init__(
        self,
        start: CaptureCursor,
        ceiling: int,
        overlap: int,
        quick: bool,
        retried: set[int],
    ) -> None:
        self.start = start
        self.since = _earlier(start.modified, overlap)
        # Every history row up to here is covered by this poll's candidates;
        # rows added while it runs are left to the next poll.
        self.ceiling = ceiling
        self.modified = start.modified
        self.history_id = start.history_id
        self.retry = sorted(retried.union(start.deferred))
        self.deferred: set[int] = set()
        self.unreadable = set(start.unreadable).difference(retried)
        self.read: set[int] = set()
        self.page_after: tuple[str, int] | None = None
        self.orders_done = False
        # Quick orders of the module's table come after the orders.
        self.quick_done = not quick
        self.quick_after_id = start.quick_after_id
        self.quick_retry = sorted(start.quick_deferred)
        self.quick_deferred: set[int] = set()

    @property
    def done(self) -> bool:
        return self.orders_done and self.quick_done

    def cursor(self) -> CaptureCursor:
        deferred = tuple(sorted(self.deferred.union(self.retry)))
        quick_deferred = tuple(sorted(self.quick_deferred.union(self.quick_retry)))
        return CaptureCursor(
            modified=self.modified,
            history_id=self.history_id,
            deferred=deferred,
            unreadable=tuple(sorted(self.unreadable)),
            quick_after_id=self.quick_after_id,
            quick_deferred=quick_deferred,
        )


class SiteCapture:
    """Turns one site's orders into `OrderPlaced` / `OrderChanged` events.

    Raises `ShopUnavailable` (from `poll_once`) when the shop cannot be read or
    one of the site's own queries fails; nothing of the batch is appended.
    """

    def __init__(
        self,
        site: SiteSettings,
        reader: ShopReader,
        store: EventStore,
        settings: CaptureSettings,
        logger: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._site = site.name
        self._sync_from = parse_sync_from(site.sync_from)
        self._reader = reader
        self._quick = QuickOrderReader(reader, site)
        self._store = store
        self._settings = settings
        self._log = logger.bind(site=site.name)
        self._checkpoint = f"capture:{site.name}"
        self._cursor: CaptureCursor | None = None
        self._poll: _Poll | None = None
        # Last version and snapshot hash per stream, so that an unchanged order
        # costs neither a stream read nor an append.
        self._known: dict[str, _Known] = {}

    @property
    def deferred(self) -> tuple[int, ...]:
        """Orders the last poll found mid-edit, to be read again."""
        return self._cursor.deferred if self._cursor is not None else ()

    async def poll_once(self) -> CaptureResult:
        """Capture one batch of what changed since the checkpoint.

        While `more` is set, the poll has batches left: call again at once.
        Raises `ShopUnavailable` when the shop cannot be read; the next call
        then starts again from the stored checkpoint.
        """
        try:
            return await self._next_batch()
        except BaseException:
            self._poll = None
            raise

    async def _next_batch(self) -> CaptureResult:
        if self._poll is None:
            start = await self._load_cursor()
            retried = await self._retries_asked(start.unreadable)
            ceiling = await self._reader.latest_history_id()
            overlap = self._settings.overlap_seconds
            self._poll = _Poll(start, ceiling, overlap, self._quick.configured, retried)
        poll = self._poll

        if not poll.orders_done:
            result = await self._capture_orders(poll)
        else:
            result = await self._capture_quick_orders(poll)
        if poll.done:
            self._poll = None
        self._log.info("capture batch", **msgspec.structs.asdict(result))
        return result

    async def _retries_asked(self, unreadable: Sequence[int]) -> set[int]:
        """The unreadable orders whose stream has had a retry appended since."""
        retried = set()
        for order_id in unreadable:
            stream = order_stream(self._site, order_id)
            # Read anew: `ocsync retry` appends from another process.
            self._known.pop(stream, None)
            if (await self._last_snapshot(stream)).unreadable is None:
                retried.add(order_id)
        return retried

    async def _capture_orders(self, poll: _Poll) -> CaptureResult:
        size = self._settings.batch_size
        if poll.retry:
            # Orders deferred by the last poll come first, whatever their dates.
            order_ids = poll.retry[:size]
            del poll.retry[:size]
        else:
            order_ids = await self._next_page(poll, size)
        return await self._capture(order_ids, poll)

    async def _next_page(self, poll: _Poll, size: int) -> list[int]:
        candidates = await self._reader.changed_orders(
            poll.since,
            poll.start.history_id,
            self._sync_from,
            size,
            page_after=poll.page_after,
        )
        if candidates:
            last = candidates[-1]
            poll.page_after = (last.date_modified, last.order_id)
            # A NULL date_modified ("") is no time to resume from: the cursor
            # would read the whole shop again at every poll.
            dates = [c.date_modified for c in candidates if c.date_modified]
            if dates:
                newest = max(dates)
                poll.modified = max(poll.modified or newest, newest)
        if len(candidates) < size:
            poll.history_id = max(poll.start.history_id, poll.ceiling)
            poll.orders_done = True

        return [c.order_id for c in candidates if c.order_id not in poll.read]

    async def _load_cursor(self) -> CaptureCursor:
        if self._cursor is None:
            stored = await self._store.checkpoint(self._checkpoint)
            self._cursor = (
                CaptureCursor()
                if stored is None
                else msgspec.json.decode(stored, type=CaptureCursor)
            )
        return self._cursor

    async def _capture(self, order_ids: Sequence[int], poll: _Poll) -> CaptureResult:
        """Read one batch, append its events with the checkpoint, count."""
        deferred_before = len(poll.deferred)
        snapshots, unreadable = await self._read(order_ids)
        poll.read.update(order_ids)
        for order_id in order_ids:
            if order_id in unreadable:
                poll.unreadable.add(order_id)
                continue
            poll.unreadable.discard(order_id)
            if order_id not in snapshots:
                # Deleted in the shop since it was listed (or since deferred).
                about = await self._about(order_id)
                self._log.info("order gone from the shop", **about)

        recorded, unchanged = await self._commit(
            lambda: self._plan(snapshots, unreadable, poll), poll
        )
        placed = sum(isinstance(event.event, OrderPlaced) for event in recorded)
        snapshot_events = sum(
            isinstance(event.event, OrderPlaced | OrderChanged) for event in recorded
        )
        return CaptureResult(
            seen=len(order_ids),
            placed=placed,
            changed=snapshot_events - placed,
            unchanged=unchanged,
            deferred=len(poll.deferred) - deferred_before,
            unreadable=len(unreadable),
            more=not poll.done,
        )

    async def _capture_quick_orders(self, poll: _Poll) -> CaptureResult:
        """Read one batch of the quick-order table, append what is new."""
        retry, poll.quick_retry = poll.quick_retry, []
        placed_from = self._sync_from if isinstance(self._sync_from, dt.date) else None
        batch = await self._quick.read(
            poll.quick_after_id,
            self._settings.batch_size,
            retry=retry,
            placed_from=placed_from,
        )
        poll.quick_after_id = batch.last_id
        poll.quick_done = not batch.more
        for quick_order_id in retry:
            if quick_order_id not in batch.snapshots | batch.unreadable:
                about = await self._about(quick_order_id, "quick_order")
                self._log.info("quick order gone", **about)
        for quick_order_id, reason in sorted(batch.unreadable.items()):
            # Left for the next poll: someone may fix the rows meanwhile.
            about = await self._about(quick_order_id, "quick_order")
            self._log.error("quick order unreadable", **about, error=reason)
            poll.quick_deferred.add(quick_order_id)

        async def plan() -> tuple[list[StreamAppend], int]:
            appends: list[StreamAppend] = []
            for quick_order_id, snapshot in sorted(batch.snapshots.items()):
                stream = order_stream(self._site, quick_order_id, snapshot.kind)
                known = await self._last_snapshot(stream)
                if known.content_hash is None:
                    # A quick order never changes: placed once, never again.
                    placed = OrderPlaced(
                        snapshot=snapshot, content_hash=content_hash(snapshot)
                    )
                    appends.append(StreamAppend(stream, known.version, [placed]))
            return appends, len(batch.snapshots) - len(appends)

        recorded, unchanged = await self._commit(plan, poll)
        return CaptureResult(
            seen=len(batch.snapshots) + len(batch.unreadable),
            placed=len(recorded),
            unchanged=unchanged,
            deferred=len(batch.unreadable),
            more=not poll.done,
        )

    async def _commit(
        self, plan: Callable[[], Awaitable[tuple[list[StreamAppend], int]]], poll: _Poll
    ) -> tuple[list[RecordedEvent], int]:
        """Append what `plan` calls for with the poll's checkpoint, in one append.

        Returns the events recorded and how many orders `plan` found unchanged.
        """
        appends, unchanged = await plan()
        cursor = poll.cursor()
        checkpoint = {self._checkpoint: msgspec.json.encode(cursor).decode()}
        recorded: list[RecordedEvent] = []
        if appends:
            try:
                recorded = await self._store.append(appends, checkpoint)
            except VersionConflict:
                # A projection appended to one of the streams since we cached
                # it: read the streams again and retry once.
                self._log.warning("capture version conflict", attempts_left=1)
                for append in appends:
                    self._known.pop(append.stream, None)
                appends, unchanged = await plan()
                recorded = await self._store.append(appends, checkpoint)
        elif cursor != self._cursor:
            await self._store.set_checkpoints(checkpoint)
        self._cursor = cursor

        for event in recorded:
            if isinstance(event.event, OrderUnreadable):
                unread = event.event
                before = self._known.get(event.stream)
                self._known[event.stream] = _Known(
                    event.version,
                    before.content_hash if before else None,
                    event.position,
                    (unread.field, unread.reason),
                )
                self._log.error(
                    "order unreadable",
                    order_id=unread.order_id,
                    stream=event.stream,
                    position=event.position,
                    field=unread.field,
                    reason=unread.reason,
                )
                continue
            snapshot, digest = _snapshot_of(event.event)
            self._known[event.stream] = _Known(event.version, digest, event.position)
            self._log.info(
                "order captured",
                order_id=snapshot.order_id,
                kind=snapshot.kind,
                stream=event.stream,
                position=event.position,
                event_type=event.type,
            )
        return recorded, unchanged

    async def _read(
        self, order_ids: Sequence[int]
    ) -> tuple[dict[int, OrderSnapshot], dict[int, tuple[str, str]]]:
        """The batch's snapshots, and (field, reason) of each unreadable order."""
        if not order_ids:
            return {}, {}
        try:
            return await self._reader.read_snapshots(order_ids), {}
        except ShopUnavailable:
            raise
        except Exception:
            # One order's bad row (or one our code cannot cope with) must not
            # hold back the rest of the batch.
            return await self._read_one_by_one(order_ids)

    async def _read_one_by_one(
        self, order_ids: Sequence[int]
    ) -> tuple[dict[int, OrderSnapshot], dict[int, tuple[str, str]]]:
        snapshots: dict[int, OrderSnapshot] = {}
        unreadable: dict[int, tuple[str, str]] = {}
        for order_id in order_ids:
            try:
                snapshots.update(await self._reader.read_snapshots([order_id]))
            except ShopDataError as exc:
                unreadable[order_id] = (exc.field, str(exc))
            except ShopUnavailable:
                raise
            except Exception as exc:
                # A bug met by this order alone: recorded like a bad row, so
                # that a restart does not stop at it again.
                about = await self._about(order_id)
                self._log.exception("order read failed with an internal error", **about)
                where = f"site {self._site} order {order_id}"
                unreadable[order_id] = ("", f"{where}: internal error: {exc!r}")
        return snapshots, unreadable

    async def _plan(
        self,
        snapshots: dict[int, OrderSnapshot],
        unreadable: dict[int, tuple[str, str]],
        poll: _Poll,
    ) -> tuple[list[StreamAppend], int]:
        """The appends a batch calls for, and how many orders are unchanged.

        Orders caught mid-edit join the poll's deferred ones; an unreadable
        order gets `OrderUnreadable` unless its stream ends with the same one.
        """
        appends: list[StreamAppend] = []
        unchanged = 0
        for order_id, (field, reason) in sorted(unreadable.items()):
            stream = order_stream(self._site, order_id)
            known = await self._last_snapshot(stream)
            if known.unreadable == (field, reason):
                about = await self._about(order_id)
                self._log.info(
                    "order still unreadable", **about, field=field, reason=reason
                )
                continue
            unread = OrderUnreadable(
                marker=stream, order_id=order_id, field=field, reason=reason
            )
            appends.append(StreamAppend(stream, known.version, [unread]))

        for order_id, snapshot in sorted(snapshots.items()):
            stream = order_stream(self._site, order_id)
            known = await self._last_snapshot(stream)
            confirmed = known.content_hash is not None

            if snapshot.status_id == 0 and not confirmed:
                # Not an order yet (an abandoned confirm step); it becomes one
                # when a status above 0 arrives, by date_modified or history.
                continue
            if snapshot.status_id == 0 or not snapshot.lines:
                # OpenCart 3.0 edits an order by setting status 0, deleting and
                # re-inserting its lines, then restoring the status.
                reason = "back at status 0" if snapshot.status_id == 0 else "no lines"
                about = await self._about(order_id)
                self._log.info("order deferred mid-edit", **about, reason=reason)
                poll.deferred.add(order_id)
                continue

            digest = content_hash(snapshot)
            event: Event
            if not confirmed:
                event = OrderPlaced(snapshot=snapshot, content_hash=digest)
            elif digest != known.content_hash or known.unreadable is not None:
                # After an unreadable spell even the old content is news: the
                # stream must end with a snapshot again.
                event = OrderChanged(snapshot=snapshot, content_hash=digest)
            else:
                unchanged += 1
                continue
            appends.append(StreamAppend(stream, known.version, [event]))

        return appends, unchanged

    async def _about(self, order_id: int, kind: str = "order") -> dict[str, Any]:
        """What a log line about an order names besides the site.

        `position` is the last event of the order's stream: None for an order
        the log has not recorded yet.
        """
        stream = order_stream(self._site, order_id, kind)
        about = {
            "order_id": order_id,
            "stream": stream,
            "position": (await self._last_snapshot(stream)).position,
        }
        if kind != "order":
            about["kind"] = kind
        return about

    async def _last_snapshot(self, stream: str) -> _Known:
        known = self._known.get(stream)
        if known is None:
            events = await self._store.read_stream(stream)
            digests = [
                recorded.event.content_hash
                for recorded in events
                if isinstance(recorded.event, OrderPlaced | OrderChanged)
            ]
            last = events[-1] if events else None
            # The deal projection appends to the stream too (a failed create,
            # a hold): only a snapshot or a retry ends an order's unreadable
            # spell, as `fold` reads it.
            unreadable = None
            for recorded in events:
                match recorded.event:
                    case OrderUnreadable(field=field, reason=reason):
                        unreadable = (field, reason)
                    case OrderPlaced() | OrderChanged() | RetryRequested():
                        unreadable = None
            known = _Known(
                last.version if last else 0,
                digests[-1] if digests else None,
                last.position if last else None,
                unreadable,
            )
            self._known[stream] = known
        return known


def _snapshot_of(event: Event) -> tuple[OrderSnapshot, str]:
    if not isinstance(event, OrderPlaced | OrderChanged):
        raise TypeError(f"capture appends snapshots only, not {type(event).__name__}")
    return event.snapshot, event.content_hash


def _earlier(modified: str | None, seconds: int) -> str | None:
    """The shop-clock time `seconds` before `modified`; None reads from the start."""
    if modified is None:
        return None
    try:
        moment = dt.datetime.strptime(modified, _SHOP_CLOCK)
    except ValueError:
        # A zero date ("0000-00-00 00:00:00") has no earlier: read everything.
        return None
    return (moment - dt.timedelta(seconds=seconds)).isoformat(sep=" ")

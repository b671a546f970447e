"""SiteCapture: shop orders into OrderPlaced / OrderChanged, against a real MariaDB."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from daemon.capture import CaptureCursor, CaptureResult, SiteCapture
from daemon.settings import CaptureSettings
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import (
    DealCreateFailed,
    DealRequested,
    EventStore,
    OrderChanged,
    OrderPlaced,
    OrderUnreadable,
    RecordedEvent,
    StreamAppend,
)
from events.snapshot import OrderSnapshot
from projections.parked import request_retry
from tests.conftest import CASE, TSHIRT, OpenCartShop

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "opencart"


def make_capture(
    shop: OpenCartShop,
    reader: ShopReader,
    store: EventStore,
    *,
    batch_size: int = 200,
    sync_from: int | str = "all",
) -> SiteCapture:
    settings = CaptureSettings(overlap_seconds=300, batch_size=batch_size)
    site = shop.site(sync_from=sync_from)
    return SiteCapture(site, reader, store, settings, structlog.get_logger())


async def poll(capture: SiteCapture) -> CaptureResult:
    """A whole poll, as the run loop does it: batches until none is left."""
    names = ("seen", "placed", "changed", "unchanged", "deferred", "unreadable")
    counts = dict.fromkeys(names, 0)
    while True:
        result = await capture.poll_once()
        for name in counts:
            counts[name] += getattr(result, name)
        if not result.more:
            return CaptureResult(**counts)


async def snapshot_events(store: EventStore) -> list[RecordedEvent]:
    return [
        recorded
        for recorded in await store.read_all(0, 10_000)
        if isinstance(recorded.event, OrderPlaced | OrderChanged)
    ]


def summary(events: list[RecordedEvent]) -> list[tuple[str, str, int]]:
    return [(recorded.type, recorded.stream, recorded.version) for recorded in events]


async def cursor_of(store: EventStore) -> CaptureCursor:
    stored = await store.checkpoint("capture:site_a")
    assert stored is not None
    return msgspec.json.decode(stored, type=CaptureCursor)


async def test_unconfirmed_orders_wait_for_their_first_status(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """C1: 101 and 102 stay at 0, 103 is placed; 102 follows when it gets status 2."""
    for order_id in (101, 102):
        await shop.add_order(order_id, status=0)
    await shop.add_order(103, status=1)
    capture = make_capture(shop, reader, store)

    first = await poll(capture)
    assert (first.placed, first.changed) == (1, 0)
    assert summary(await snapshot_events(store)) == [("OrderPlaced", "site_a:103", 1)]

    # The payment callback, an hour later.
    await shop.add_history(102, 2, at="2026-12-03 19:20:00")
    second = await poll(capture)

    events = await snapshot_events(store)
    assert second.placed == 1
    assert summary(events)[1:] == [("OrderPlaced", "site_a:102", 1)]
    placed = events[1].event
    assert isinstance(placed, OrderPlaced)
    assert placed.snapshot.status_id == 2
    assert await store.streams("site_a:101") == []


async def test_history_row_without_date_modified_is_captured(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """C10: a new history row that leaves date_modified alone is an OrderChanged."""
    await shop.add_order(1, placed_at="2026-12-03 10:00:00")
    await shop.add_order(2, placed_at="2026-12-03 18:20:00")
    capture = make_capture(shop, reader, store)
    await poll(capture)

    # Hours older than the overlap window: only the history row can reveal it.
    await shop.add_history(1, 3, at="2026-12-03 18:40:00", move_modified=False)
    result = await poll(capture)

    events = await snapshot_events(store)
    assert (result.placed, result.changed) == (0, 1)
    assert summary(events)[-1] == ("OrderChanged", "site_a:1", 2)
    changed = events[-1].event
    assert isinstance(changed, OrderChanged)
    assert changed.snapshot.status_id == 3
    assert [row.order_status_id for row in changed.snapshot.history] == [1, 3]
    assert changed.snapshot.order["date_modified"] == "2026-12-03 10:00:00"


async def test_only_a_different_content_appends(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """An unchanged re-poll appends nothing; a changed comment appends OrderChanged."""
    await shop.add_order(1)
    capture = make_capture(shop, reader, store)
    assert (await poll(capture)).placed == 1
    position = await store.last_position()

    again = await poll(capture)
    assert (again.seen, again.unchanged, again.placed, again.changed) == (1, 1, 0, 0)
    assert await store.last_position() == position

    await shop.update_order(
        1, comment="Дзвоніть після 18:00", date_modified="2026-12-03 18:30:00"
    )
    changed = await poll(capture)

    events = await snapshot_events(store)
    assert changed.changed == 1
    assert summary(events) == [
        ("OrderPlaced", "site_a:1", 1),
        ("OrderChanged", "site_a:1", 2),
    ]
    last = events[-1].event
    assert isinstance(last, OrderChanged)
    assert last.snapshot.order["comment"] == "Дзвоніть після 18:00"


async def test_renumbered_lines_are_no_change(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """An edit that deletes and re-inserts the same lines (new ids) appends nothing."""
    await shop.add_order(1)
    capture = make_capture(shop, reader, store)
    await poll(capture)
    before = (await reader.read_snapshots([1]))[1]

    await shop.delete_lines(1)
    await shop.add_lines(1, [TSHIRT, CASE])
    await shop.update_order(1, date_modified="2026-12-03 18:30:00")
    result = await poll(capture)

    after = (await reader.read_snapshots([1]))[1]
    assert after.lines[0].order_product_id != before.lines[0].order_product_id
    assert (result.unchanged, result.changed) == (1, 0)
    assert len(await snapshot_events(store)) == 1


async def test_shop_wide_changes_alone_append_nothing(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """Today's rate, a product renamed, config_tax flipped: no OrderChanged."""
    await shop.add_order(1)
    await shop.add_order(2, currency_id=4, currency_code="UAH", currency_value=45.37)
    capture = make_capture(shop, reader, store)
    assert (await poll(capture)).placed == 2
    position = await store.last_position()

    await shop.execute("UPDATE `oc_currency` SET value = 41.1 WHERE currency_id = 4")
    await shop.execute("UPDATE `oc_currency` SET value = 1.2 WHERE currency_id = 3")
    await shop.execute(
        "UPDATE `oc_product_description` SET name = 'Футболка Нова'"
        " WHERE product_id = 50 AND language_id = 2"
    )
    await shop.execute(
        "UPDATE `oc_setting` SET value = '0'"
        " WHERE store_id = 0 AND `key` = 'config_tax'"
    )
    after = await reader.read_snapshots([1, 2])
    result = await poll(capture)

    # Re-read by the overlap window, and the shop's new facts in what was read.
    assert (result.seen, result.unchanged, result.changed) == (2, 2, 0)
    assert await store.last_position() == position
    assert after[2].currency is not None and after[2].currency.value == "41.10000000"
    assert after[1].shop["config_tax"] == "0"
    assert after[1].catalogue.products[50][2] == "Футболка Нова"


async def test_order_without_lines_waits_for_the_edit_to_finish(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """Seen without lines (first sight or later), an order is deferred, never sent."""
    await shop.add_order(1)
    await shop.add_order(2, lines=[])
    capture = make_capture(shop, reader, store)

    first = await poll(capture)
    assert (first.placed, first.deferred) == (1, 1)
    assert (await cursor_of(store)).deferred == (2,)

    await shop.delete_lines(1)
    await shop.update_order(1, date_modified="2026-12-03 18:30:00")
    middle = await poll(capture)
    assert (middle.placed, middle.changed, middle.deferred) == (0, 0, 2)
    assert (await cursor_of(store)).deferred == (1, 2)

    # Both edits complete; order 1 now holds three T-shirts.
    three = dataclasses.replace(TSHIRT, quantity=3, total="45.0000")
    await shop.add_lines(1, [three, CASE])
    await shop.add_lines(2, [CASE])
    last = await poll(capture)

    assert (last.placed, last.changed, last.deferred) == (1, 1, 0)
    assert summary(await snapshot_events(store))[1:] == [
        ("OrderChanged", "site_a:1", 2),
        ("OrderPlaced", "site_a:2", 1),
    ]
    assert (await cursor_of(store)).deferred == ()


async def test_order_back_at_status_0_waits_for_the_edit_to_finish(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """A 3.0 edit (status 0, lines re-inserted, status back) is sent once, after."""
    await shop.add_order(1)
    capture = make_capture(shop, reader, store)
    await poll(capture)

    # editOrder() voids the order first: a status-0 history row.
    await shop.add_history(1, 0, at="2026-12-03 18:30:00")
    await shop.delete_lines(1)
    middle = await poll(capture)
    assert (middle.deferred, middle.changed) == (1, 0)
    assert len(await snapshot_events(store)) == 1

    await shop.add_lines(1, [TSHIRT, CASE])
    await shop.add_history(1, 2, at="2026-12-03 18:30:01", comment="Додано чохол")
    last = await poll(capture)

    events = await snapshot_events(store)
    assert (last.changed, last.deferred) == (1, 0)
    assert summary(events) == [
        ("OrderPlaced", "site_a:1", 1),
        ("OrderChanged", "site_a:1", 2),
    ]
    changed = events[-1].event
    assert isinstance(changed, OrderChanged)
    assert [row.order_status_id for row in changed.snapshot.history] == [1, 0, 2]


@pytest.mark.parametrize(
    ("sync_from", "expected"),
    [
        (3, ["site_a:3", "site_a:4"]),
        ("2026-12-02", ["site_a:2", "site_a:3", "site_a:4"]),
    ],
)
async def test_sync_from_limits_what_is_sent(
    shop: OpenCartShop,
    reader: ShopReader,
    store: EventStore,
    sync_from: int | str,
    expected: list[str],
) -> None:
    """sync_from as an order id or as a first day leaves older orders alone."""
    days = {
        1: "2026-12-01 23:59:59",
        2: "2026-12-02 00:00:00",
        3: "2026-12-02 09:00:00",
    }
    for order_id in (1, 2, 3, 4):
        await shop.add_order(
            order_id, placed_at=days.get(order_id, "2026-12-03 10:00:00")
        )
    capture = make_capture(shop, reader, store, sync_from=sync_from)

    await poll(capture)
    await shop.add_history(1, 2, at="2026-12-03 12:00:00")
    await poll(capture)

    assert sorted(e.stream for e in await snapshot_events(store)) == expected


async def test_checkpoint_is_stored_with_the_events(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """A new capture on the same log resumes from the stored checkpoint."""
    for order_id in (1, 2, 3):
        await shop.add_order(order_id)
    stopped = make_capture(shop, reader, store, batch_size=2)
    first = await stopped.poll_once()
    assert (first.placed, first.more) == (2, True)
    assert (await cursor_of(store)).modified == "2026-12-03 18:20:00"

    # A new process: one batch was committed with its checkpoint.
    resumed = make_capture(shop, reader, store, batch_size=2)
    await poll(resumed)
    await shop.add_order(4, placed_at="2026-12-03 19:00:00")
    await poll(make_capture(shop, reader, store, batch_size=2))

    events = await snapshot_events(store)
    assert summary(events) == [
        ("OrderPlaced", f"site_a:{order_id}", 1) for order_id in (1, 2, 3, 4)
    ]
    assert await cursor_of(store) == CaptureCursor(
        modified="2026-12-03 19:00:00", history_id=4, deferred=()
    )


async def test_batches_page_through_one_second(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """Five orders stamped in one second, batches of two: all placed, once each."""
    for order_id in range(1, 6):
        await shop.add_order(order_id)
    capture = make_capture(shop, reader, store, batch_size=2)

    results = [await capture.poll_once() for _ in range(3)]

    assert [(r.placed, r.more) for r in results] == [(2, True), (2, True), (1, False)]
    assert len(await snapshot_events(store)) == 5


async def test_version_conflict_reloads_and_retries(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """A projection's append to the stream since caching it costs one retry."""
    await shop.add_order(1)
    capture = make_capture(shop, reader, store)
    await poll(capture)
    request = DealRequested(marker="site_a:1", deal={}, source_position=1)
    await store.append([StreamAppend("site_a:1", 1, [request])])

    await shop.update_order(
        1, comment="Інша адреса", date_modified="2026-12-03 18:30:00"
    )
    with capture_logs() as logs:
        result = await poll(capture)

    assert result.changed == 1
    assert summary(await snapshot_events(store))[-1] == ("OrderChanged", "site_a:1", 3)
    assert any(line["event"] == "capture version conflict" for line in logs)


async def test_unreadable_order_does_not_hold_back_the_batch(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """An unreadable order is recorded once, and read again only after a retry."""
    await shop.insert(
        "currency", currency_id=5, title="Bad", code="BAD", decimal_place="x", value=1.0
    )
    await shop.add_order(1)
    await shop.add_order(2, currency_id=5)
    # A later order moves the cursor's overlap window past orders 1 and 2.
    await shop.add_order(3, modified_at="2026-12-03 19:20:00")
    capture = make_capture(shop, reader, store)

    with capture_logs() as logs:
        first = await poll(capture)
    assert (first.placed, first.unreadable, first.deferred) == (2, 1, 0)
    assert (await cursor_of(store)).unreadable == (2,)
    [recorded] = await store.read_stream("site_a:2")
    assert isinstance(recorded.event, OrderUnreadable)
    assert recorded.event.field == "currency.decimal_place"
    unreadable = [line for line in logs if line["event"] == "order unreadable"]
    assert [line["order_id"] for line in unreadable] == [2]
    assert "currency.decimal_place" in unreadable[0]["reason"]

    # Fixed without the order itself changing: nothing reads it again...
    await shop.execute(
        "UPDATE `oc_currency` SET decimal_place = '2' WHERE currency_id = 5"
    )
    with capture_logs() as logs:
        second = await poll(capture)
    assert (second.placed, second.unreadable) == (0, 0)
    assert not [line for line in logs if line["event"] == "order unreadable"]

    # ...until a retry is asked for, from another process's store handle.
    await request_retry(store, "site_a:2", "fixed the currency")
    third = await poll(capture)
    assert (third.placed, third.unreadable) == (1, 0)
    assert (await cursor_of(store)).unreadable == ()
    assert isinstance((await store.read_stream("site_a:2"))[-1].event, OrderPlaced)


async def test_an_unexpected_error_reading_one_order_records_it_unreadable(
    shop: OpenCartShop,
    reader: ShopReader,
    store: EventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug met reading order 2: logged with its traceback, recorded; others go on."""
    read = ShopReader.read_snapshots

    async def fails_for_order_2(
        self: ShopReader, order_ids: Sequence[int]
    ) -> dict[int, OrderSnapshot]:
        if 2 in order_ids:
            raise KeyError("a bug in the reader")
        return await read(self, order_ids)

    monkeypatch.setattr(ShopReader, "read_snapshots", fails_for_order_2)
    for order_id in (1, 2, 3):
        await shop.add_order(order_id)

    with capture_logs() as logs:
        result = await poll(make_capture(shop, reader, store))

    assert (result.placed, result.unreadable) == (2, 1)
    [recorded] = await store.read_stream("site_a:2")
    assert isinstance(recorded.event, OrderUnreadable)
    assert recorded.event.reason.startswith("site site_a order 2: internal error:")
    failed = "order read failed with an internal error"
    [line] = [line for line in logs if line["event"] == failed]
    assert (line["order_id"], line["exc_info"]) == (2, True)


async def test_unreadable_order_is_recorded_once_per_reason(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """Read again by a shop change with the same fault: no second event."""
    await shop.insert(
        "currency", currency_id=5, title="Bad", code="BAD", decimal_place="x", value=1.0
    )
    await shop.add_order(1, currency_id=5)
    capture = make_capture(shop, reader, store)
    await poll(capture)

    await shop.execute(
        "UPDATE `oc_order` SET date_modified = date_modified + INTERVAL 1 HOUR"
    )
    second = await poll(capture)
    assert (second.seen, second.unreadable) == (1, 1)
    assert len(await store.read_stream("site_a:1")) == 1

    await shop.execute("UPDATE `oc_currency` SET decimal_place = 'y'")
    await shop.execute(
        "UPDATE `oc_order` SET date_modified = date_modified + INTERVAL 1 HOUR"
    )
    await poll(capture)
    events = await store.read_stream("site_a:1")
    assert [type(e.event) for e in events] == [OrderUnreadable, OrderUnreadable]


async def test_an_outcome_after_the_unreadable_record_is_no_retry(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """The projection appending to the stream neither retries nor repeats it."""
    await shop.insert(
        "currency", currency_id=5, title="Bad", code="BAD", decimal_place="x", value=1.0
    )
    await shop.add_order(1, currency_id=5)
    await poll(make_capture(shop, reader, store))
    failed = DealCreateFailed(
        marker="site_a:1", status=503, error="the CRM is down", retryable=True
    )
    await store.append([StreamAppend("site_a:1", 1, [failed])])

    await shop.execute(
        "UPDATE `oc_order` SET date_modified = date_modified + INTERVAL 1 HOUR"
    )
    again = await poll(make_capture(shop, reader, store))
    events = [recorded.event for recorded in await store.read_stream("site_a:1")]

    assert (again.seen, again.unreadable) == (1, 1)
    assert [type(event) for event in events] == [OrderUnreadable, DealCreateFailed]
    assert (await cursor_of(store)).unreadable == (1,)


async def test_logs_one_summary_per_batch_and_a_line_per_event(
    shop: OpenCartShop, reader: ShopReader, store: EventStore
) -> None:
    """Each batch logs its counts; each appended event its order, stream, position."""
    await shop.add_order(1)
    await shop.add_order(2)

    with capture_logs() as logs:
        await poll(make_capture(shop, reader, store))

    captured = [line for line in logs if line["event"] == "order captured"]
    assert [
        (line["site"], line["order_id"], line["stream"], line["position"])
        for line in captured
    ] == [("site_a", 1, "site_a:1", 1), ("site_a", 2, "site_a:2", 2)]
    summaries = [line for line in logs if line["event"] == "capture batch"]
    assert len(summaries) == 1
    assert {key: summaries[0][key] for key in ("site", "seen", "placed", "more")} == {
        "site": "site_a",
        "seen": 2,
        "placed": 2,
        "more": False,
    }


async def test_real_fixture_shop_site_a(make_shop: Any, store: EventStore) -> None:
    """The real OpenCart 3.0.5.1 dump: 8 orders placed, the missing #5 never."""
    shop = await make_shop(dump=FIXTURES / "site_a.sql")
    pool = await open_shop_pool(shop.url, "site_a")
    try:
        capture = make_capture(shop, ShopReader(pool, shop.site()), store)
        result = await poll(capture)
    finally:
        pool.close()
        await pool.wait_closed()

    events = {e.stream: e.event for e in await snapshot_events(store)}
    assert result.placed == 8
    assert sorted(events) == [f"site_a:{n}" for n in (1, 2, 3, 4, 6, 7, 8, 9)]
    first = events["site_a:1"]
    assert isinstance(first, OrderPlaced)
    assert len(first.snapshot.history) == 3
    assert [line.codes["model"] for line in first.snapshot.lines] == [
        "TS-01",
        "CASE-01",
    ]
    fourth = events["site_a:4"]
    assert isinstance(fourth, OrderPlaced)
    assert fourth.snapshot.lines[0].name == 'Монітор Apple Cinema 30"'
    assert fourth.snapshot.catalogue.products[42][2] == 'Монітор Apple Cinema 30"'

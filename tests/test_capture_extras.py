"""Capture with a site's own queries, and sites that are stores of one install."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import structlog

from daemon.capture import CaptureCursor, SiteCapture
from daemon.errors import ShopUnavailable
from daemon.settings import CaptureSettings, SiteSettings
from daemon.shop import ShopReader
from events import EventStore, OrderChanged, OrderPlaced
from tests.conftest import OpenCartShop
from tests.test_capture import poll, snapshot_events, summary

WAYBILLS = """
    CREATE TABLE `np_waybill` (
      `id` int NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `order_id` int NOT NULL,
      `ttn` varchar(32) NOT NULL
    ) DEFAULT CHARSET=utf8mb4
"""
WAYBILL_QUERY = (
    "SELECT order_id, ttn FROM np_waybill WHERE order_id IN %(order_ids)s ORDER BY id"
)


def capture_for(
    site: SiteSettings, pool: Any, store: EventStore, batch_size: int = 200
) -> SiteCapture:
    settings = CaptureSettings(overlap_seconds=300, batch_size=batch_size)
    reader = ShopReader(pool, site)
    return SiteCapture(site, reader, store, settings, structlog.get_logger())


async def test_a_new_waybill_is_an_order_change(
    shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """Extras are part of the snapshot: a waybill added gives OrderChanged."""
    await shop.execute(WAYBILLS)
    await shop.add_order(1)
    site = shop.site(queries={"waybills": WAYBILL_QUERY})
    capture = capture_for(site, shop_pool, store)
    await poll(capture)

    # The module writes the waybill and sets the order to Shipped.
    await shop.execute(
        "INSERT INTO np_waybill (order_id, ttn) VALUES (1, '20450000000001')"
    )
    await shop.add_history(1, 3, at="2026-12-03 19:00:00")
    changed = await poll(capture)
    again = await poll(capture)

    events = await snapshot_events(store)
    assert (changed.changed, again.unchanged) == (1, 1)
    assert summary(events) == [
        ("OrderPlaced", "site_a:1", 1),
        ("OrderChanged", "site_a:1", 2),
    ]
    placed, last = events[0].event, events[1].event
    assert isinstance(placed, OrderPlaced)
    assert isinstance(last, OrderChanged)
    assert placed.snapshot.extras == {}
    assert last.snapshot.extras == {
        "waybills": [{"order_id": "1", "ttn": "20450000000001"}]
    }


async def test_only_the_extra_row_changing_changes_the_hash(
    shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """A corrected waybill number, with nothing else changed, is an OrderChanged."""
    await shop.execute(WAYBILLS)
    await shop.execute(
        "INSERT INTO np_waybill (order_id, ttn) VALUES (1, '20450000000001')"
    )
    await shop.add_order(1)
    capture = capture_for(
        shop.site(queries={"waybills": WAYBILL_QUERY}), shop_pool, store
    )
    await poll(capture)

    await shop.execute("UPDATE np_waybill SET ttn = '20450000000002'")
    # Something makes capture look at the order again (an admin "save").
    await shop.update_order(1, date_modified="2026-12-03 18:30:00")
    result = await poll(capture)

    last = (await snapshot_events(store))[-1].event
    assert result.changed == 1
    assert isinstance(last, OrderChanged)
    assert last.snapshot.extras["waybills"][0]["ttn"] == "20450000000002"


async def test_a_failing_query_stops_the_site_without_losing_its_place(
    shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """A query on a missing table raises ShopUnavailable naming it; once fixed, on."""
    await shop.add_order(1)
    site = shop.site(queries={"waybills": WAYBILL_QUERY})
    capture = capture_for(site, shop_pool, store)

    with pytest.raises(ShopUnavailable, match=r"site site_a: .*queries\.waybills"):
        await poll(capture)
    assert await snapshot_events(store) == []
    assert await store.checkpoint("capture:site_a") is None

    await shop.execute(WAYBILLS)
    result = await poll(capture)
    assert result.placed == 1


async def test_stores_of_one_install_are_sites_of_their_own(
    shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """Two sites on one database, one store each: each captures its own orders."""
    await shop.add_order(1)
    await shop.add_order(2, store_id=1)
    await shop.add_order(3, store_id=1, placed_at="2026-12-03 18:25:00")
    main = capture_for(shop.site("main", store_id=0), shop_pool, store)
    outlet = capture_for(shop.site("outlet", store_id=1), shop_pool, store)

    assert (await poll(main)).placed == 1
    assert (await poll(outlet)).placed == 2
    # Order 2 moves on; only its own site sees it.
    await shop.add_history(2, 3, at="2026-12-03 19:00:00")
    assert ((await poll(main)).changed, (await poll(outlet)).changed) == (0, 1)

    events = await snapshot_events(store)
    assert sorted(summary(events)) == [
        ("OrderChanged", "outlet:2", 2),
        ("OrderPlaced", "main:1", 1),
        ("OrderPlaced", "outlet:2", 1),
        ("OrderPlaced", "outlet:3", 1),
    ]
    outlet_order = events[1].event
    assert isinstance(outlet_order, OrderPlaced)
    assert outlet_order.snapshot.shop["config_tax"] == "0"
    stored = await store.checkpoint("capture:outlet")
    assert stored is not None
    assert msgspec.json.decode(stored, type=CaptureCursor).history_id == 4

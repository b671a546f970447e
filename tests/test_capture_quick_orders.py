"""Quick orders from a module's own table: read, placed once, resumed by checkpoint."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from daemon.capture import CaptureCursor, SiteCapture
from daemon.errors import ShopUnavailable
from daemon.quick_orders import QuickOrderReader
from daemon.settings import CaptureSettings, QuickOrderSettings, SiteSettings
from daemon.shop import ShopReader
from events import EventStore, OrderPlaced
from events.snapshot import Currency, Language, OrderSnapshot
from tests.conftest import OpenCartShop
from tests.test_capture import poll, snapshot_events, summary

# A module that keeps one row per order: name, phone, product, quantity, time.
QUICK_TABLE = """
    CREATE TABLE `oc_quickorder` (
      `id` int NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `name` varchar(64) NOT NULL,
      `phone` varchar(32) NOT NULL,
      `product_id` int NOT NULL,
      `quantity` int NOT NULL DEFAULT 1,
      `created_at` datetime NOT NULL
    ) DEFAULT CHARSET=utf8mb4
"""
QUICK_QUERY = """
    SELECT id AS quick_order_id, name, phone AS telephone, product_id, quantity,
           created_at AS date_added
    FROM oc_quickorder WHERE id > %(after_id)s ORDER BY id
"""


def quick_site(
    shop: OpenCartShop, query: str = QUICK_QUERY, **settings: Any
) -> SiteSettings:
    return shop.site(quick_order=QuickOrderSettings(query=query), **settings)


def capture_for(
    site: SiteSettings, pool: Any, store: EventStore, batch_size: int = 200
) -> SiteCapture:
    settings = CaptureSettings(overlap_seconds=300, batch_size=batch_size)
    reader = ShopReader(pool, site)
    return SiteCapture(site, reader, store, settings, structlog.get_logger())


async def add_quick_order(
    shop: OpenCartShop,
    product_id: int = 50,
    quantity: int = 1,
    *,
    name: str = "Олег",
    phone: str = "0671234567",
    at: str = "2026-12-03 18:40:00",
) -> int:
    return await shop.insert(
        "quickorder",
        name=name,
        phone=phone,
        product_id=product_id,
        quantity=quantity,
        created_at=at,
    )


async def quick_cursor(store: EventStore) -> CaptureCursor:
    stored = await store.checkpoint("capture:site_a")
    assert stored is not None
    return msgspec.json.decode(stored, type=CaptureCursor)


@pytest.fixture
async def quick_shop(shop: OpenCartShop) -> OpenCartShop:
    """The scratch shop with the module's table and prices on its products."""
    await shop.execute(QUICK_TABLE)
    await shop.execute(
        "UPDATE `oc_product` SET price = '15.0000' WHERE product_id = 50"
    )
    await shop.execute("UPDATE `oc_product` SET price = '9.9900' WHERE product_id = 51")
    return shop


def placed_snapshot(event: Any) -> OrderSnapshot:
    assert isinstance(event, OrderPlaced)
    return event.snapshot


async def test_quick_order_becomes_a_snapshot_like_an_order(
    quick_shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """A module row becomes OrderPlaced on site:quick-<id>, after the orders."""
    await quick_shop.add_order(1)
    await add_quick_order(quick_shop, 50, 2, name="Тарас &amp; Co")
    capture = capture_for(quick_site(quick_shop), shop_pool, store)

    result = await poll(capture)

    events = await snapshot_events(store)
    assert result.placed == 2
    assert summary(events) == [
        ("OrderPlaced", "site_a:1", 1),
        ("OrderPlaced", "site_a:quick-1", 1),
    ]
    snapshot = placed_snapshot(events[1].event)
    assert (snapshot.kind, snapshot.order_id, snapshot.site) == (
        "quick_order",
        1,
        "site_a",
    )
    order = snapshot.order
    assert {
        key: order[key]
        for key in (
            "order_id",
            "firstname",
            "telephone",
            "email",
            "comment",
            "order_status_id",
            "currency_code",
            "currency_id",
            "currency_value",
            "total",
            "date_added",
            "store_id",
            "language_id",
        )
    } == {
        "order_id": "1",
        "firstname": "Тарас & Co",
        "telephone": "0671234567",
        "email": "",
        "comment": "",
        "order_status_id": "1",
        "currency_code": "EUR",
        "currency_id": "3",
        "currency_value": "1.00000000",
        "total": "30.0000",
        "date_added": "2026-12-03 18:40:00",
        "store_id": "0",
        "language_id": "2",
    }
    assert order["shipping_code"] == order["payment_method"] == ""
    assert snapshot.status_id == 1

    (line,) = snapshot.lines
    assert (line.product_id, line.name, line.model, line.quantity) == (
        50,
        "Футболка з логотипом",
        "TS-01",
        2,
    )
    assert (line.price, line.total, line.tax) == ("15.0000", "30.0000", "0.0000")
    assert line.codes["ean"] == "4820001"
    assert line.options == []
    assert (snapshot.totals, snapshot.history) == ([], [])
    assert snapshot.currency == Currency(
        currency_id=3,
        code="EUR",
        symbol_left="",
        symbol_right="€",
        decimal_place=2,
        value="1.00000000",
    )
    assert snapshot.shop["config_tax"] == "1"
    assert snapshot.languages == [
        Language(language_id=1, code="en-gb"),
        Language(language_id=2, code="uk-ua"),
    ]
    assert snapshot.catalogue.products == {
        50: {1: "Logo T-shirt", 2: "Футболка з логотипом"}
    }
    assert snapshot.catalogue.order_statuses[1] == {1: "Pending", 2: "Очікує обробки"}
    assert (await quick_cursor(store)).quick_after_id == 1


async def test_rows_sharing_an_id_are_one_order_with_given_prices(
    quick_shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """Several lines, optional email/comment/price; names in the shop's language."""
    await quick_shop.execute(
        "CREATE TABLE oc_cart_quick (order_no int, line int, fio varchar(64),"
        " tel varchar(32), mail varchar(96), note text, product_id int,"
        " qty int, unit_price decimal(15,4) NULL, created datetime)"
    )
    for line, product_id, qty, price in ((1, 51, 1, "8.5000"), (2, 42, 3, None)):
        await quick_shop.insert(
            "cart_quick",
            order_no=7,
            line=line,
            fio="Олена",
            tel="+380501112233",
            mail="olena@example.com",
            note="Передзвоніть &lt;після 18&gt;",
            product_id=product_id,
            qty=qty,
            unit_price=price,
            created="2026-12-03 19:00:00",
        )
    await quick_shop.execute(
        "UPDATE oc_product SET price = '100' WHERE product_id = 42"
    )
    # The shop's catalogue language is English here.
    await quick_shop.execute(
        "UPDATE oc_setting SET value = 'en-gb' WHERE `key` = 'config_language'"
    )
    query = """
        SELECT order_no AS quick_order_id, fio AS name, tel AS telephone,
               mail AS email, note AS comment, product_id, qty AS quantity,
               unit_price AS price, created AS date_added
        FROM oc_cart_quick WHERE order_no > %(after_id)s ORDER BY order_no, line
    """
    capture = capture_for(quick_site(quick_shop, query), shop_pool, store)

    await poll(capture)

    (event,) = await snapshot_events(store)
    assert event.stream == "site_a:quick-7"
    snapshot = placed_snapshot(event.event)
    assert [(ln.name, ln.quantity, ln.price, ln.total) for ln in snapshot.lines] == [
        ("Smartphone case", 1, "8.5000", "8.5000"),
        ('Apple Cinema 30"', 3, "100.0000", "300.0000"),
    ]
    assert [line.codes["model"] for line in snapshot.lines] == ["CASE-01", "AC-30"]
    assert snapshot.lines[0].codes["sku"] == "CASE-SKU-1"
    assert snapshot.order["total"] == "308.5000"
    assert snapshot.order["email"] == "olena@example.com"
    assert snapshot.order["comment"] == "Передзвоніть <після 18>"
    assert snapshot.order["language_id"] == "1"
    assert snapshot.catalogue.products[42] == {
        1: 'Apple Cinema 30"',
        2: 'Монітор Apple Cinema 30"',
    }


async def test_quick_orders_are_placed_once_and_resume_from_the_checkpoint(
    quick_shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """Re-reads never duplicate; a new process goes on past quick_after_id."""
    for _ in range(3):
        await add_quick_order(quick_shop)
    site = quick_site(quick_shop)
    first = capture_for(site, shop_pool, store, batch_size=2)
    results = [await first.poll_once() for _ in range(3)]
    assert [(r.placed, r.more) for r in results] == [(0, True), (2, True), (1, False)]
    assert await quick_cursor(store) == CaptureCursor(quick_after_id=3)

    # The product's price changes: a quick order is never read again.
    await quick_shop.execute("UPDATE oc_product SET price = '20' WHERE product_id = 50")
    assert (await poll(first)).placed == 0

    # A new process: only the fourth is new.
    await add_quick_order(quick_shop, 51, at="2026-12-03 20:00:00")
    resumed = await poll(capture_for(site, shop_pool, store))
    assert (resumed.seen, resumed.placed) == (1, 1)

    # A checkpoint set back (restored from a backup) duplicates nothing.
    back = msgspec.json.encode(CaptureCursor(quick_after_id=1)).decode()
    await store.set_checkpoints({"capture:site_a": back})
    again = await poll(capture_for(site, shop_pool, store))
    assert (again.placed, again.unchanged) == (0, 3)

    events = await snapshot_events(store)
    assert summary(events) == [
        ("OrderPlaced", f"site_a:quick-{quick_id}", 1) for quick_id in (1, 2, 3, 4)
    ]
    assert placed_snapshot(events[0].event).lines[0].price == "15.0000"
    assert (await quick_cursor(store)).quick_after_id == 4


async def test_unreadable_quick_order_waits_and_others_go_on(
    quick_shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """No price and the product gone: logged, deferred, placed once it can be read."""
    await add_quick_order(quick_shop, 77)
    await add_quick_order(quick_shop, 50)
    capture = capture_for(quick_site(quick_shop), shop_pool, store)

    with capture_logs() as logs:
        first = await poll(capture)

    assert (first.placed, first.deferred) == (1, 1)
    assert await quick_cursor(store) == CaptureCursor(
        quick_after_id=2, quick_deferred=(1,)
    )
    (unreadable,) = [line for line in logs if line["event"] == "quick order unreadable"]
    about = (unreadable["order_id"], unreadable["stream"], unreadable["position"])
    assert about == (1, "site_a:quick-1", None)
    assert "product 77 is gone" in unreadable["error"]

    await quick_shop.insert("product", product_id=77, model="NEW-77", price="5")
    second = await poll(capture)

    assert second.placed == 1
    assert await quick_cursor(store) == CaptureCursor(quick_after_id=2)
    events = await snapshot_events(store)
    assert [e.stream for e in events] == ["site_a:quick-2", "site_a:quick-1"]
    assert placed_snapshot(events[1].event).lines[0].model == "NEW-77"


async def test_sync_from_day_skips_older_quick_orders(
    quick_shop: OpenCartShop, shop_pool: Any, store: EventStore
) -> None:
    """Quick orders added before sync_from are read past, never sent."""
    await add_quick_order(quick_shop, at="2026-12-01 23:59:59")
    await add_quick_order(quick_shop, at="2026-12-02 00:00:00")
    site = quick_site(quick_shop, sync_from="2026-12-02")

    await poll(capture_for(site, shop_pool, store))

    assert [e.stream for e in await snapshot_events(store)] == ["site_a:quick-2"]
    assert (await quick_cursor(store)).quick_after_id == 2


@pytest.mark.parametrize(
    ("query", "says"),
    [
        (
            "SELECT id AS quick_order_id, name, product_id, quantity,"
            " created_at AS date_added FROM oc_quickorder WHERE id > %(after_id)s",
            "returns no column telephone",
        ),
        ("SELECT * FROM oc_nowhere WHERE id > %(after_id)s", "1146"),
        (
            "SELECT 'x' AS quick_order_id, name, phone AS telephone, product_id,"
            " quantity, created_at AS date_added FROM oc_quickorder"
            " WHERE id > %(after_id)s",
            "is not a whole number",
        ),
    ],
    ids=["missing column", "missing table", "id not a number"],
)
async def test_wrong_quick_order_query_is_a_clear_error(
    quick_shop: OpenCartShop, shop_pool: Any, query: str, says: str
) -> None:
    """The query's fault is ShopUnavailable naming quick_order.query, even empty."""
    await add_quick_order(quick_shop)
    site = quick_site(quick_shop, query)
    reader = QuickOrderReader(ShopReader(shop_pool, site), site)

    with pytest.raises(ShopUnavailable) as failed:
        await reader.read(0, 10)

    assert "site site_a" in str(failed.value)
    assert "quick_order.query" in str(failed.value)
    assert says in str(failed.value)


async def test_site_of_one_store_gives_quick_orders_its_store(
    quick_shop: OpenCartShop, shop_pool: Any
) -> None:
    """A site naming a store shapes its quick orders with that store's settings."""
    await add_quick_order(quick_shop)
    site = quick_site(quick_shop, store_id=1)
    reader = QuickOrderReader(ShopReader(shop_pool, site), site)

    batch = await reader.read(0, 10, placed_from=dt.date(2026, 12, 3))

    snapshot = batch.snapshots[1]
    assert (batch.last_id, batch.more, batch.unreadable) == (1, False, {})
    assert snapshot.order["store_id"] == "1"
    assert (snapshot.shop["config_tax"], snapshot.shop["config_name"]) == (
        "0",
        "Outlet",
    )

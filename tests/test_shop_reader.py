"""ShopReader against a real MariaDB holding a minimal OpenCart 3.0 schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import aiomysql
import msgspec
import pytest

from daemon.errors import ShopUnavailable, UnsupportedShop
from daemon.settings import DatabaseUrl
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events.snapshot import Currency, HistoryRow, Language
from tests.conftest import CASE, PLACED_AT, TSHIRT, LineSpec, OpenCartShop, OptionSpec

MakeShop = Callable[..., Awaitable[OpenCartShop]]


async def test_snapshot_holds_exact_values_codes_and_catalogue(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """A snapshot keeps MySQL's exact text and everything a deal is built from."""
    await shop.add_order(1, currency_id=4, currency_code="UAH", currency_value="45.37")
    await shop.insert(
        "order_total",
        order_id=1,
        code="shipping",
        title="Доставка",
        value="2.5",
        sort_order=3,
    )

    snapshot = (await reader.read_snapshots([1]))[1]

    assert snapshot.site == "site_a"
    assert snapshot.order_id == 1
    assert snapshot.status_id == 1
    assert snapshot.order["total"] == "45.9900"
    assert snapshot.order["currency_value"] == "45.37000000"
    assert snapshot.order["date_added"] == PLACED_AT
    assert snapshot.order["order_status_id"] == "1"
    assert snapshot.order["payment_code"] == ""

    tshirt, case = snapshot.lines
    assert (tshirt.price, tshirt.total, tshirt.tax, tshirt.quantity) == (
        "15.0000",
        "30.0000",
        "3.0000",
        2,
    )
    assert tshirt.codes == {
        "model": "TS-01",
        "sku": "",
        "upc": "",
        "ean": "4820001",
        "jan": "",
        "isbn": "",
        "mpn": "",
    }
    assert case.codes["sku"] == "CASE-SKU-1"
    assert case.options == []
    assert [
        (o.product_option_id, o.product_option_value_id, o.option_id, o.option_value_id)
        for o in tshirt.options
    ] == [(227, 17, 13, 49), (228, 21, 14, 53)]
    assert [(o.name, o.value, o.type) for o in tshirt.options] == [
        ("Колір", "Чорний", "select"),
        ("Розмір", "Середній (M)", "select"),
    ]

    assert [(t.code, t.value, t.sort_order) for t in snapshot.totals] == [
        ("sub_total", "39.9900", 1),
        ("shipping", "2.5000", 3),
        ("tax", "6.0000", 5),
        ("total", "45.9900", 9),
    ]
    assert snapshot.history == [
        HistoryRow(
            order_history_id=1,
            order_status_id=1,
            notify=False,
            comment="",
            date_added=PLACED_AT,
        )
    ]
    assert snapshot.currency == Currency(
        currency_id=4,
        code="UAH",
        symbol_left="",
        symbol_right=" грн",
        decimal_place=0,
        value="45.37000000",
    )
    assert snapshot.shop == {
        "config_tax": "1",
        "config_timezone": "Europe/Kyiv",
        "config_language": "uk-ua",
        "config_currency": "EUR",
        "config_name": "Техно & Світ",
        "config_processing_status": '["2","1"]',
    }
    assert snapshot.languages == [
        Language(language_id=1, code="en-gb"),
        Language(language_id=2, code="uk-ua"),
    ]

    catalogue = snapshot.catalogue
    assert catalogue.products == {
        50: {1: "Logo T-shirt", 2: "Футболка з логотипом"},
        51: {1: "Smartphone case", 2: "Чохол для смартфона"},
    }
    assert catalogue.options == {
        13: {1: "Color", 2: "Колір"},
        14: {1: "Size", 2: "Розмір"},
    }
    assert catalogue.option_values == {
        49: {1: "Black", 2: "Чорний"},
        53: {1: "Medium", 2: "Середній (M)"},
    }
    assert catalogue.custom_fields == {
        2: {1: "Nova Poshta branch", 2: "Відділення Нової Пошти"}
    }
    assert catalogue.custom_field_values == {1: {1: "Branch No. 1", 2: "Відділення №1"}}
    assert sorted(catalogue.order_statuses) == [1, 2, 3, 7]
    assert catalogue.order_statuses[2] == {1: "Processing", 2: "В обробці"}


async def test_batch_keeps_orders_apart_and_skips_missing_ids(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """One read serves many orders; lines never leak and gone orders are absent."""
    await shop.add_order(1, lines=[TSHIRT])
    await shop.add_order(2, lines=[CASE], store_id=1)

    snapshots = await reader.read_snapshots([2, 1, 99])

    assert sorted(snapshots) == [1, 2]
    assert [line.model for line in snapshots[1].lines] == ["TS-01"]
    assert [line.model for line in snapshots[2].lines] == ["CASE-01"]
    assert snapshots[2].lines[0].options == []
    assert list(snapshots[2].catalogue.products) == [51]
    # The order's own store overrides store 0, key by key.
    assert snapshots[2].shop["config_tax"] == "0"
    assert snapshots[2].shop["config_name"] == "Outlet"
    assert snapshots[2].shop["config_timezone"] == "Europe/Kyiv"
    assert snapshots[1].shop["config_tax"] == "1"
    assert await reader.read_snapshots([]) == {}


async def test_typed_text_is_unescaped_exactly_once(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """C9: HTML-escaped text is unescaped once; raw JSON columns stay as stored."""
    raw_json = '{"1":"\\u0422 &amp; Co","2":"1"}'
    line = LineSpec(
        42,
        "Монітор Apple Cinema 30&quot;",
        "AC-30",
        2,
        "90.0000",
        "180.0000",
        options=[OptionSpec(208, 0, "Текст", "&lt;i&gt;Олександр&lt;/i&gt;", "text")],
    )
    await shop.add_order(
        1,
        lines=[line],
        firstname="Тарас &amp; Co",
        lastname="&amp;amp;",
        comment="&lt;b&gt;ok&lt;/b&gt;",
        payment_company="ТОВ &quot;Ромашка&quot;",
        custom_field=raw_json,
        shipping_custom_field=raw_json,
        shipping_method="Доставка &amp; Co",
    )
    await shop.insert(
        "order_total",
        order_id=1,
        code="coupon",
        title="Купон (A&amp;B)",
        value="-5",
        sort_order=4,
    )
    await shop.add_history(1, 2, at=PLACED_AT, comment="Дзвінок &amp; лист")

    snapshot = (await reader.read_snapshots([1]))[1]

    assert snapshot.order["firstname"] == "Тарас & Co"
    assert snapshot.order["comment"] == "<b>ok</b>"
    assert snapshot.order["lastname"] == "&amp;"
    assert snapshot.order["payment_company"] == 'ТОВ "Ромашка"'
    assert snapshot.order["custom_field"] == raw_json
    assert snapshot.order["shipping_custom_field"] == raw_json
    assert snapshot.order["shipping_method"] == "Доставка &amp; Co"
    assert snapshot.lines[0].name == 'Монітор Apple Cinema 30"'
    assert snapshot.lines[0].options[0].value == "<i>Олександр</i>"
    assert "Купон (A&B)" in [total.title for total in snapshot.totals]
    assert snapshot.history[-1].comment == "Дзвінок & лист"
    assert snapshot.catalogue.products[42] == {
        1: 'Apple Cinema 30"',
        2: 'Монітор Apple Cinema 30"',
    }


async def test_deleted_catalogue_rows_leave_the_order_intact(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """C13: a deleted product keeps its line (empty codes); a gone value gives None."""
    await shop.add_order(1)
    await shop.execute("DELETE FROM `oc_product` WHERE product_id = 51")
    await shop.execute("DELETE FROM `oc_product_description` WHERE product_id = 51")
    await shop.execute(
        "DELETE FROM `oc_product_option_value` WHERE product_option_value_id = 21"
    )

    snapshot = (await reader.read_snapshots([1]))[1]

    tshirt, case = snapshot.lines
    assert (case.product_id, case.name, case.model) == (
        51,
        "Чохол для смартфона",
        "CASE-01",
    )
    assert case.codes == {}
    assert 51 not in snapshot.catalogue.products
    size = tshirt.options[1]
    assert (size.option_id, size.option_value_id, size.value) == (
        14,
        None,
        "Середній (M)",
    )
    assert tshirt.codes["model"] == "TS-01"


async def test_changed_orders_skip_unconfirmed_and_follow_history(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """C1: status-0 rows are no candidates until a history row confirms them."""
    for order_id in (101, 102):
        await shop.add_order(order_id, status=0)
    await shop.add_order(103, status=1)

    first = await reader.changed_orders(None, 0, None, 100)
    assert [(c.order_id, c.status, c.history_id) for c in first] == [(103, 1, 1)]
    assert first[0].date_modified == PLACED_AT
    assert await reader.latest_history_id() == 1

    # A payment callback an hour later; the module leaves date_modified alone.
    await shop.add_history(102, 2, at="2026-12-03 19:20:00", move_modified=False)
    later = await reader.changed_orders("2026-12-03 18:30:00", 1, None, 100)
    assert [(c.order_id, c.status, c.history_id) for c in later] == [(102, 2, 2)]


async def test_changed_orders_honour_sync_from_and_page_by_key(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """sync_from as an order id or a day; pages move on inside one second."""
    await shop.add_order(1, placed_at="2026-11-30 23:59:59")
    for order_id in (2, 3, 4):
        await shop.add_order(order_id, placed_at="2026-12-01 10:00:00")

    def ids(candidates: list[Any]) -> list[int]:
        return [candidate.order_id for candidate in candidates]

    assert ids(await reader.changed_orders(None, 0, 3, 100)) == [3, 4]
    assert ids(await reader.changed_orders(None, 0, dt.date(2026, 12, 1), 100)) == [
        2,
        3,
        4,
    ]

    first = await reader.changed_orders(None, 0, None, 2)
    last = first[-1]
    second = await reader.changed_orders(
        None, 0, None, 2, page_after=(last.date_modified, last.order_id)
    )
    assert (ids(first), ids(second)) == ([1, 2], [3, 4])


async def test_session_refuses_writes(shop: OpenCartShop, shop_pool: Any) -> None:
    """Every pooled connection runs a read-only session: a write is refused."""
    await shop.add_order(1)

    async with shop_pool.acquire() as connection, connection.cursor() as cursor:
        with pytest.raises(aiomysql.MySQLError) as refused:
            await cursor.execute(
                "UPDATE `oc_order` SET comment = 'x' WHERE order_id = 1"
            )

    assert refused.value.args[0] == 1792  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION


async def test_table_prefix_is_honoured(make_shop: MakeShop) -> None:
    """Tables are found under the site's own prefix."""
    shop = await make_shop(prefix="shop2_")
    await shop.add_order(7)
    pool = await open_shop_pool(shop.url, "site_b")
    try:
        reader = ShopReader(pool, shop.site("site_b"))
        snapshots = await reader.read_snapshots([7])
        candidates = await reader.changed_orders(None, 0, None, 10)
    finally:
        pool.close()
        await pool.wait_closed()

    assert snapshots[7].site == "site_b"
    assert [candidate.order_id for candidate in candidates] == [7]


async def test_unreachable_shop_raises_without_the_password(shop: OpenCartShop) -> None:
    """A refused login becomes ShopUnavailable, and the password never shows."""
    wrong = DatabaseUrl(
        user="ocsync_nobody",
        password="s3cret-P@ss",
        host=shop.url.host,
        port=shop.url.port,
        database=shop.url.database,
    )

    with pytest.raises(ShopUnavailable) as unavailable:
        await open_shop_pool(wrong, "site_a")

    assert unavailable.value.site == "site_a"
    assert "s3cret-P@ss" not in str(unavailable.value)
    assert "s3cret-P@ss" not in repr(unavailable.value.__cause__)


async def test_wrong_prefix_raises_shop_unavailable(
    shop: OpenCartShop, shop_pool: Any
) -> None:
    """A MySQL error (here: no such table) is translated at the edge."""
    site = msgspec.structs.replace(shop.site(), table_prefix="nope_")
    reader = ShopReader(shop_pool, site)

    with pytest.raises(ShopUnavailable, match="nope_order"):
        await reader.changed_orders(None, 0, None, 10)


async def reader_for(shop: OpenCartShop, pool: Any, **settings: Any) -> ShopReader:
    return ShopReader(pool, shop.site(**settings))


async def test_store_id_keeps_one_store_of_the_install(
    shop: OpenCartShop, shop_pool: Any
) -> None:
    """A site with store_id reads only that store's orders; None reads them all."""
    await shop.add_order(1)
    await shop.add_order(2, store_id=1, placed_at="2026-12-03 18:21:00")
    outlet = await reader_for(shop, shop_pool, store_id=1)
    main = await reader_for(shop, shop_pool, store_id=0)
    every = await reader_for(shop, shop_pool)

    def ids(candidates: list[Any]) -> list[int]:
        return [candidate.order_id for candidate in candidates]

    assert ids(await outlet.changed_orders(None, 0, None, 10)) == [2]
    assert ids(await main.changed_orders(None, 0, None, 10)) == [1]
    assert ids(await every.changed_orders(None, 0, None, 10)) == [1, 2]
    # A status change found by its history row still keeps to the store.
    await shop.add_history(1, 2, at="2026-12-03 19:00:00", move_modified=False)
    assert ids(await outlet.changed_orders("2026-12-03 18:50:00", 2, None, 10)) == []

    # An order of another store reads as gone, even asked for by id.
    snapshots = await outlet.read_snapshots([1, 2])
    assert sorted(snapshots) == [2]
    assert snapshots[2].shop["config_name"] == "Outlet"
    assert sorted(await every.read_snapshots([1, 2])) == [1, 2]


async def test_file_options_carry_the_uploaded_file_names(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """A file option's value is an upload code; `uploads` names its file, unescaped."""
    code = "0c7d1c4a9e2f6b3a8d5e7f1a2b3c4d5e6f7a8b9c"
    logo = dataclasses.replace(
        CASE, options=[OptionSpec(230, 0, "Ваш макет", code, "file")]
    )
    await shop.add_order(1, lines=[TSHIRT, logo])
    await shop.add_order(2, lines=[CASE])
    await shop.insert("upload", name="Макет &amp; лого.pdf", filename="x", code=code)
    await shop.insert("upload", name="other.png", filename="y", code="f" * 40)

    snapshots = await reader.read_snapshots([1, 2])

    assert snapshots[1].uploads == {code: "Макет & лого.pdf"}
    assert snapshots[1].lines[1].options[0].value == code
    assert snapshots[2].uploads == {}


async def test_catalogue_carries_iso_codes_of_the_order_countries(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """Payment and shipping country ids map to ISO alpha-2, per order."""
    for country_id, name, iso in ((220, "Україна", "UA"), (170, "Poland", "PL")):
        await shop.insert("country", country_id=country_id, name=name, iso_code_2=iso)
    await shop.insert("country", country_id=81, name="Germany", iso_code_2="DE")
    await shop.add_order(1, payment_country_id=220, shipping_country_id=170)
    await shop.add_order(2, payment_country_id=220, shipping_country_id=220)
    await shop.add_order(3)

    snapshots = await reader.read_snapshots([1, 2, 3])

    assert snapshots[1].catalogue.country_codes == {170: "PL", 220: "UA"}
    assert snapshots[2].catalogue.country_codes == {220: "UA"}
    assert snapshots[3].catalogue.country_codes == {}


# A Nova Poshta module's table; `ttn` is varbinary, which the driver hands over
# as bytes.
WAYBILLS = """
    CREATE TABLE `np_waybill` (
      `id` int NOT NULL AUTO_INCREMENT PRIMARY KEY,
      `order_id` int NOT NULL,
      `ttn` varbinary(32) NOT NULL,
      `cost` decimal(15,4) NULL,
      `created_at` datetime NOT NULL,
      `recipient` varchar(64) NULL
    ) DEFAULT CHARSET=utf8mb4
"""


async def test_site_queries_fill_extras_with_exact_text(
    shop: OpenCartShop, shop_pool: Any
) -> None:
    """Each of the site's queries runs once per batch; rows go to their order."""
    await shop.execute(WAYBILLS)
    for order_id, ttn, cost, recipient in (
        (1, "20450000000001", "75.5000", "Тарас &amp; Co"),
        (1, "20450000000002", None, None),
        (2, "20450000000003", "60.0000", "Олена"),
        (9, "20450000000009", "1.0000", "not in the batch"),
    ):
        await shop.execute(
            "INSERT INTO np_waybill (order_id, ttn, cost, created_at, recipient)"
            " VALUES (%s, %s, %s, '2026-12-04 09:30:00', %s)",
            order_id,
            ttn,
            cost,
            recipient,
        )
    for order_id in (1, 2, 3):
        await shop.add_order(order_id)
    queries = {
        "waybills": "SELECT order_id, ttn, cost, created_at, recipient"
        " FROM np_waybill WHERE order_id IN %(order_ids)s ORDER BY id",
        # Written with parentheses, and with a literal % (doubled).
        "first": "SELECT order_id, DATE_FORMAT(created_at, '%%d.%%m') AS day"
        " FROM np_waybill WHERE order_id IN (%(order_ids)s) AND id < 2",
    }
    reader = await reader_for(shop, shop_pool, queries=queries)

    snapshots = await reader.read_snapshots([1, 2, 3])

    assert snapshots[1].extras == {
        "waybills": [
            {
                "order_id": "1",
                "ttn": "20450000000001",
                "cost": "75.5000",
                "created_at": "2026-12-04 09:30:00",
                "recipient": "Тарас & Co",
            },
            {
                "order_id": "1",
                "ttn": "20450000000002",
                "cost": None,
                "created_at": "2026-12-04 09:30:00",
                "recipient": None,
            },
        ],
        "first": [{"order_id": "1", "day": "04.12"}],
    }
    assert [row["ttn"] for row in snapshots[2].extras["waybills"]] == ["20450000000003"]
    assert "first" not in snapshots[2].extras
    assert snapshots[3].extras == {}


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT order_id FROM np_nowhere WHERE order_id IN %(order_ids)s", "1146"),
        ("SELEKT order_id FROM oc_order WHERE order_id IN %(order_ids)s", "1064"),
        ("SELECT total FROM oc_order WHERE order_id IN %(order_ids)s", "order_id"),
        (
            "SELECT order_id FROM oc_order WHERE comment LIKE 'a%'"
            " AND order_id IN %(order_ids)s",
            "%%",
        ),
    ],
    ids=["missing table", "syntax error", "no order_id column", "stray percent"],
)
async def test_failing_site_query_names_site_and_query(
    shop: OpenCartShop, shop_pool: Any, sql: str, says: str
) -> None:
    """A site's query that cannot run is ShopUnavailable naming it; the pool lives."""
    await shop.add_order(1)
    reader = await reader_for(shop, shop_pool, queries={"np_refs": sql})

    with pytest.raises(ShopUnavailable) as failed:
        await reader.read_snapshots([1])

    assert failed.value.site == "site_a"
    assert "queries.np_refs" in str(failed.value)
    assert says in str(failed.value)
    # The next read (another connection of the pool) works as before.
    assert (await reader.latest_history_id()) == 1


async def test_a_shop_without_product_sku_is_named_an_opencart_4_shop(
    shop: OpenCartShop, reader: ShopReader
) -> None:
    """A product table lacking `sku` (as in 4.x): the schema named, not the column."""
    await shop.execute("ALTER TABLE `oc_product` DROP COLUMN `sku`")
    await shop.execute(
        "CREATE TABLE `oc_product_code` (product_id INT, code VARCHAR(64), value TEXT)"
    )

    with pytest.raises(UnsupportedShop) as caught:
        await reader.catalogue_products("uk-ua")

    assert str(caught.value) == (
        "site site_a: OpenCart 4.x schema; only OpenCart 3.0 / ocStore is"
        " supported for now"
    )


async def test_an_unknown_column_in_a_3_0_shop_keeps_its_own_error(
    reader: ShopReader,
) -> None:
    """A bad column on an OpenCart 3.0 shop (a site query's typo): MySQL's error."""
    with pytest.raises(ShopUnavailable) as caught:
        async with reader.connection() as connection, connection.cursor() as cursor:
            await cursor.execute("SELECT no_such_column FROM `oc_order`")

    assert not isinstance(caught.value, UnsupportedShop)
    assert "Unknown column 'no_such_column'" in caught.value.reason

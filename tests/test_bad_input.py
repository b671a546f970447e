"""Bad input from real shops: a correct deal or a parked order, never a crash.

Each test writes a broken order into a scratch shop on the real MariaDB (its
schema altered where OpenCart 4.1 or an old shop differs), captures it with
`SiteCapture` into a SQLite log and projects it with `DealProjection` into the
sandbox CRM on loopback. Every odd order must end as a deal, a parked order
(`DealCreateFailed`, not retryable) or an order capture could not read
(`OrderUnreadable`, listed by `ocsync status`), and what was odd is a log line
naming the site, the order and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import structlog
from structlog.testing import capture_logs

from daemon.capture import CaptureCursor, CaptureResult, SiteCapture
from daemon.settings import (
    CaptureSettings,
    CrmSettings,
    EventLogSettings,
    Settings,
    SiteSettings,
)
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import (
    DealCreated,
    DealCreateFailed,
    DealRequested,
    EventStore,
    OrderPlaced,
    OrderUnreadable,
    order_stream,
)
from projections.audit import audit_order
from projections.deals import DealProjection, DealsResult
from projections.keepincrm.client import KeepinCRMClient
from projections.parked import parked_orders, request_retry
from tests import factories
from tests.conftest import CASE, PLACED_AT, TSHIRT, LineSpec, OpenCartShop, OptionSpec
from tests.projection_support import TOKEN, Crm

SITE = "site_a"
# factories.deal_settings(): CRM fields of the facts these tests look at.
CITY_FIELD = "field_4"
BRANCH_FIELD, FLAT_FIELD, COMPANY_FIELD = "field_6", "field_7", "field_8"


@dataclass
class Outcome:
    """What one capture poll and one projection run did, and what they logged."""

    capture: CaptureResult
    deals: DealsResult
    logs: list[dict[str, Any]]
    store: EventStore
    client: KeepinCRMClient
    settings: Settings

    async def last_event(self, order_id: int) -> Any:
        events = await self.store.read_stream(order_stream(SITE, order_id))
        return events[-1].event if events else None

    async def requested(self, order_id: int) -> dict[str, Any]:
        """The deal body sent for an order whose deal was created."""
        events = await self.store.read_stream(order_stream(SITE, order_id))
        assert isinstance(events[-1].event, DealCreated), events[-1].event
        [body] = [e.event.deal for e in events if isinstance(e.event, DealRequested)]
        return dict(body)

    async def deal(self, order_id: int) -> dict[str, Any]:
        """The CRM's deal of an order, which must have been created."""
        created = await self.last_event(order_id)
        assert isinstance(created, DealCreated), created
        return await self.client.get_deal(created.deal_id)

    async def parked(self, order_id: int, field: str) -> DealCreateFailed:
        """The order's park event, checked to name `field`, and its log line."""
        failed = await self.last_event(order_id)
        assert isinstance(failed, DealCreateFailed), failed
        assert failed.retryable is False
        assert f"field {field}:" in failed.error
        self.line("order parked", order_id, field)
        return failed

    async def unreadable(self, order_id: int, field: str) -> OrderUnreadable:
        """The order's unreadable event, checked to name `field` and be listed."""
        unread = await self.last_event(order_id)
        assert isinstance(unread, OrderUnreadable), unread
        assert unread.field == field
        assert f"order {order_id} field {field}:" in unread.reason
        [listed] = [
            order
            for order in await parked_orders(self.store, self.settings)
            if order.stream == order_stream(SITE, order_id)
        ]
        assert (listed.kind, listed.reason) == ("unreadable", unread.reason)
        return unread

    def line(self, event: str, order_id: int, field: str | None) -> dict[str, Any]:
        """The one log line of `event` for the order (and field, when given)."""
        found = [
            line
            for line in self.logs
            if line["event"] == event
            and line.get("site") == SITE
            and line.get("order_id") == order_id
            and (field is None or line.get("field") == field)
        ]
        assert len(found) == 1, (event, order_id, field, found)
        return found[0]

    def warned(self, order_id: int) -> dict[str, str]:
        """The order's projection warnings, field -> reason."""
        return {
            line["field"]: line["reason"]
            for line in self.logs
            if line["event"] == "order field kept as typed"
            and line.get("site") == SITE
            and line.get("order_id") == order_id
        }


async def sync(
    shop: OpenCartShop,
    store: EventStore,
    crm: Crm,
    tmp_path: Path,
    *,
    batch_size: int = 200,
    **site: Any,
) -> Outcome:
    """One whole capture poll of the shop, then one projection run, logs captured."""
    site_settings = shop.site(SITE, title="Техно Світ", **site)
    url = await crm.serve()
    client = crm.client(url)
    settings = _settings(tmp_path, url, site_settings)
    pool = await open_shop_pool(shop.url, SITE)
    try:
        with capture_logs() as logs:
            capture = SiteCapture(
                site_settings,
                ShopReader(pool, site_settings),
                store,
                CaptureSettings(overlap_seconds=300, batch_size=batch_size),
                structlog.get_logger(),
            )
            polled = await _poll(capture)
            projected = await DealProjection(store, client, settings).run_once()
    finally:
        pool.close()
        await pool.wait_closed()
    return Outcome(polled, projected, logs, store, client, settings)


def _settings(tmp_path: Path, url: str, site: SiteSettings) -> Settings:
    return Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url=url, token=TOKEN),
        capture=CaptureSettings(),
        deals=factories.deal_settings(),
        sites=[site],
        databases={},
    )


async def _poll(capture: SiteCapture) -> CaptureResult:
    names = ("seen", "placed", "changed", "unchanged", "deferred", "unreadable")
    counts = dict.fromkeys(names, 0)
    while True:
        result = await capture.poll_once()
        for name in counts:
            counts[name] += getattr(result, name)
        if not result.more:
            return CaptureResult(**counts)


def custom_fields(deal: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in deal["custom_fields_detailed"]}


def products(deal: dict[str, Any]) -> list[dict[str, Any]]:
    """The deal's lines of catalogue products (not shipping, tax or rounding)."""
    service = {"shipping", "tax", "rounding"}
    return [job for job in deal["jobs"] if job["sku"] not in service]


# 1. Custom field columns that are not valid JSON.


async def test_malformed_json_custom_fields_warn_and_the_deal_is_made(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """Cut-off JSON: the complete answers are read, the column is named in a warning."""
    await shop.add_order(
        1,
        custom_field='{"4": "ТОВ &quot;Ромашка&quot;", "5": ',
        shipping_custom_field='{"2": "1", "3": "кв. 5',
    )
    await shop.add_order(2)

    run = await sync(
        shop,
        store,
        crm,
        tmp_path,
        custom_fields={
            "shipping_custom_field.2": BRANCH_FIELD,
            "shipping_custom_field.3": FLAT_FIELD,
            "custom_field.4": COMPANY_FIELD,
        },
    )

    assert (run.deals.created, run.deals.parked) == (2, 0)
    sent = custom_fields(await run.deal(1))
    assert sent[BRANCH_FIELD] == "Відділення №1"
    assert sent[COMPANY_FIELD] == 'ТОВ "Ромашка"'
    assert FLAT_FIELD not in sent  # its value was cut: nothing to send
    warned = run.warned(1)
    assert warned.keys() == {"custom_field", "shipping_custom_field"}
    assert warned["shipping_custom_field"].startswith("not valid JSON")
    run.line("order field kept as typed", 1, "shipping_custom_field")
    assert run.warned(2) == {}


# 2. Custom fields as PHP serialize() wrote them before OpenCart 2.1.


async def test_php_serialized_custom_fields_are_read(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """A select's value id becomes its label; a broken array is only a warning."""
    flat = "кв. 5"
    serialized = f'a:2:{{i:2;s:1:"1";i:3;s:{len(flat.encode())}:"{flat}";}}'
    await shop.add_order(1, shipping_custom_field=serialized)
    # The byte length is wrong: not readable as PHP wrote it.
    await shop.add_order(2, shipping_custom_field='a:1:{i:2;s:5:"1";}')

    run = await sync(
        shop,
        store,
        crm,
        tmp_path,
        custom_fields={
            "shipping_custom_field.2": BRANCH_FIELD,
            "shipping_custom_field.3": FLAT_FIELD,
        },
    )

    assert run.deals.created == 2
    first = custom_fields(await run.deal(1))
    assert (first[BRANCH_FIELD], first[FLAT_FIELD]) == ("Відділення №1", flat)
    assert run.warned(1) == {}
    second = custom_fields(await run.deal(2))
    assert BRANCH_FIELD not in second
    line = run.line("order field kept as typed", 2, "shipping_custom_field")
    assert "PHP serialize()" in line["reason"]


# 3. NULL in every nullable column, as OpenCart 4.1 creates its tables.

# Columns that tie a row to its order: NULL there makes a row of no order
# (the order then reads as one without it), so they keep their values.
LINKS = {
    "order_product": {"order_id"},
    "order_option": {"order_id", "order_product_id"},
    "order_total": {"order_id"},
}
# NULL where the order cannot be read: recorded unreadable, listed by status.
UNREADABLE = {
    "order.order_status_id",
    "order_product.quantity",
    "order_product.price",
    "order_product.total",
    "order_product.tax",
    "order_total.value",
}
# NULL where the order reads but cannot be a correct deal: parked, naming this.
PARKED = {
    "order.currency_id": "currency_id",
    "order.currency_value": "currency_value",
    "order_total.code": "order_total.code",
}


async def make_nullable(shop: OpenCartShop) -> list[tuple[str, str]]:
    """Make every column but keys nullable, keeping defaults; (table, column)."""
    async with shop.writer.cursor() as cursor:
        await cursor.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, COLUMN_DEFAULT"
            " FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND IS_NULLABLE = 'NO' AND COLUMN_KEY != 'PRI'"
            " AND TABLE_NAME IN ('oc_order', 'oc_order_product', 'oc_order_option',"
            " 'oc_order_total') ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (shop.url.database,),
        )
        rows = await cursor.fetchall()
    columns = []
    for table, column, column_type, default in rows:
        await shop.execute(
            f"ALTER TABLE `{table}` MODIFY `{column}` {column_type}"
            f" NULL DEFAULT {'NULL' if default is None else default}"
        )
        name = table.removeprefix("oc_")
        if column not in LINKS.get(name, set()):
            columns.append((name, column))
    return columns


async def set_null(shop: OpenCartShop, order_id: int, table: str, column: str) -> None:
    await shop.execute(
        f"UPDATE `oc_{table}` SET `{column}` = NULL WHERE order_id = %s", order_id
    )


async def test_null_in_every_nullable_column(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """One order per column NULL, and one with all of them: each deal or parked."""
    columns = await make_nullable(shop)
    assert len(columns) > 40  # the whole order row, not a sample
    for order_id, (table, column) in enumerate(columns, start=1):
        await shop.add_order(order_id)
        await set_null(shop, order_id, table, column)
    everything = len(columns) + 1
    await shop.add_order(everything)
    for table, column in columns:
        await set_null(shop, everything, table, column)

    # Pages of one order, so that a page also ends on a NULL date_modified.
    run = await sync(shop, store, crm, tmp_path, batch_size=1)

    expected_deals = 0
    for order_id, (table, column) in enumerate(columns, start=1):
        name = f"{table}.{column}"
        if name in UNREADABLE:
            unread = await run.unreadable(order_id, name)
            line = run.line("order unreadable", order_id, name)
            assert "NULL" in line["reason"] and line["reason"] == unread.reason
        elif name in PARKED:
            await run.parked(order_id, PARKED[name])
        else:
            expected_deals += 1
            # The body sent, from the log: one CRM read per deal is too slow.
            sent = await run.requested(order_id)
            assert sent["total"] == "45.99", name
            assert len(sent["jobs_attributes"]) == 2, name
            run.line("deal created", order_id, None)
    # All at once: unreadable at its first NULL that matters.
    line = run.line("order unreadable", everything, None)
    assert line["field"] in UNREADABLE
    await run.unreadable(everything, line["field"])

    assert run.deals.created == expected_deals
    assert run.deals.parked == len(PARKED)
    assert run.capture.unreadable == len(UNREADABLE) + 1
    assert run.capture.deferred == 0
    # A deleted product_id reads as a product gone from the catalogue.
    product_id = columns.index(("order_product", "product_id")) + 1
    assert "order_product.product_id" in run.warned(product_id)
    # The cursor moved on to a real time despite the NULL dates.
    stored = await store.checkpoint(f"capture:{SITE}")
    assert stored is not None
    assert msgspec.json.decode(stored, type=CaptureCursor).modified == PLACED_AT


async def test_unreadable_order_becomes_a_deal_after_a_fix_and_a_retry(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """A NULL quantity parks the order; fixed and retried, it becomes a deal."""
    await make_nullable(shop)
    await shop.add_order(1)
    await shop.add_order(2)
    await set_null(shop, 2, "order_product", "quantity")

    first = await sync(shop, store, crm, tmp_path)
    assert first.deals.created == 1
    unread = await first.unreadable(2, "order_product.quantity")
    audit = await audit_order(store, order_stream(SITE, 2), first.settings.deals)
    assert audit is not None
    assert [entry.kind for entry in audit.entries] == ["unreadable"]
    assert unread.reason in audit.entries[0].summary

    # The fix leaves date_modified alone, as a hand-written UPDATE does.
    for line in (TSHIRT, CASE):
        await shop.execute(
            "UPDATE `oc_order_product` SET quantity = %s"
            " WHERE order_id = 2 AND product_id = %s",
            line.quantity,
            line.product_id,
        )
    await request_retry(store, order_stream(SITE, 2), "quantity restored")
    second = await sync(shop, store, crm, tmp_path)

    assert (second.capture.placed, second.capture.unreadable) == (1, 0)
    events = await store.read_stream(order_stream(SITE, 2))
    assert isinstance(events[-3].event, OrderPlaced)
    amounts = [Decimal(str(job["amount"])) for job in products(await second.deal(2))]
    assert amounts == [TSHIRT.quantity, CASE.quantity]
    assert await parked_orders(store, second.settings) == []


# 4. Double-encoded text (old `utf8` shops) and 4-byte characters.


async def double_encode(
    shop: OpenCartShop, table: str, where: str, **text: str
) -> None:
    """Store text as a latin1 connection to a `utf8` table did: its UTF-8 bytes
    read as latin1 and encoded again ("Олена" -> "ÐžÐ»ÐµÐ½Ð°")."""
    for column, value in text.items():
        await shop.execute(
            f"UPDATE `oc_{table}` SET `{column}` ="
            f" CONVERT(CAST(%s AS BINARY) USING latin1) WHERE {where}",
            value,
        )


async def test_double_encoded_text_is_repaired_and_emoji_are_kept(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """Mojibake decodes back with a warning per field; "Олена 🌻" arrives as typed."""
    # Order 4: the same buyer again, to be matched to the client of order 1.
    for order_id in (1, 4):
        await shop.add_order(order_id, lines=[CASE], telephone="+380671234567")
    await double_encode(
        shop,
        "order",
        "order_id IN (1, 4)",
        firstname="Олена",
        lastname="Ґонта",
        shipping_city="Київ",
    )
    await double_encode(shop, "order_product", "order_id IN (1, 4)", name=CASE.name)
    await double_encode(
        shop,
        "product_description",
        "product_id = 51 AND language_id = 2",
        name=CASE.name,
    )
    tshirt = "Футболка з логотипом 🌻"
    await shop.execute(
        "UPDATE `oc_product_description` SET name = %s"
        " WHERE product_id = 50 AND language_id = 2",
        tshirt,
    )
    await shop.add_order(2, lines=[TSHIRT], firstname="Олена 🌻", lastname="Коваленко")
    # Cut by its column's length in the middle of a letter: not one whole.
    await shop.add_order(3, firstname="ÐžÐ»ÐµÐ½Ð", lastname="Коваленко")

    run = await sync(shop, store, crm, tmp_path)

    assert run.deals.created == 4
    first = await run.deal(1)
    assert first["client"]["person"] == "Олена Ґонта"
    assert [job["title"] for job in products(first)] == [CASE.name]
    assert custom_fields(first)[CITY_FIELD] == "Київ"
    warned = run.warned(1)
    assert {"firstname", "lastname", "shipping_city"} <= warned.keys()
    assert "product_description.name" in warned
    assert "'ÐžÐ»ÐµÐ½Ð°' -> 'Олена'" in warned["firstname"]

    second = await run.deal(2)
    assert second["client"]["person"] == "Олена 🌻 Коваленко"
    assert [job["title"] for job in products(second)] == [tshirt]
    assert run.warned(2) == {}

    third = await run.deal(3)
    assert third["client"]["person"] == "ÐžÐ»ÐµÐ½Ð Коваленко"
    line = run.line("order field kept as typed", 3, "firstname")
    assert "kept as stored" in line["reason"]

    # The name the CRM holds is the repaired one, and it is found again.
    run.line("existing client reused", 4, None)
    assert (await run.deal(4))["client_id"] == first["client_id"]


# 5. Language and currency ids the shop does not know.

OLD_NAME = LineSpec(50, "Logo T-shirt", "TS-01", 1, "15.0000", "15.0000")


async def test_an_unknown_language_id_keeps_the_managers_names(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """language_id 99: names still come in Ukrainian from the catalogue, with a note."""
    await shop.add_order(1, lines=[OLD_NAME], language_id=99)

    run = await sync(shop, store, crm, tmp_path)

    deal = await run.deal(1)
    assert [job["title"] for job in products(deal)] == ["Футболка з логотипом"]
    line = run.line("order field kept as typed", 1, "language_id")
    assert "language 99" in line["reason"]


async def test_a_shop_without_the_managers_language_keeps_the_orders_names(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """No uk-ua language row: names fall back to the order's own text, with a note."""
    await shop.execute("DELETE FROM `oc_language` WHERE language_id = 2")
    await shop.add_order(1, lines=[OLD_NAME], language_id=2)

    run = await sync(shop, store, crm, tmp_path)

    deal = await run.deal(1)
    assert [job["title"] for job in products(deal)] == ["Logo T-shirt"]
    assert {"deals.language", "language_id"} <= run.warned(1).keys()


async def test_an_unknown_currency_id_is_parked(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """currency_id 99 has no row: parked naming currency_id; the next order goes."""
    await shop.add_order(1, currency_id=99, currency_code="USD")
    await shop.add_order(2)

    run = await sync(shop, store, crm, tmp_path)

    await run.parked(1, "currency_id")
    assert (run.deals.parked, run.deals.created) == (1, 1)
    assert isinstance(await run.last_event(2), DealCreated)


# 6. Zero and negative quantities.


async def test_zero_and_negative_quantity_are_parked(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """A line of quantity 0 or -1 parks its order naming order_product.quantity."""
    for order_id, quantity in ((1, 0), (2, -1)):
        line = LineSpec(51, CASE.name, CASE.model, quantity, "9.9900", "0.0000")
        await shop.add_order(order_id, lines=[TSHIRT, line])
    await shop.add_order(3)

    run = await sync(shop, store, crm, tmp_path)

    for order_id, quantity in ((1, 0), (2, -1)):
        failed = await run.parked(order_id, "order_product.quantity")
        assert f"quantity {quantity}" in failed.error
    assert (run.deals.parked, run.deals.created) == (2, 1)


# 7. An order of 2,000 lines.


async def test_an_order_of_2000_lines_is_one_deal(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """Every line reaches the one deal, and its total is the total shown."""
    count = 2000
    ids = range(1000, 1000 + count)
    async with shop.writer.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO `oc_product` (product_id, model) VALUES (%s, %s)",
            [(product_id, f"P-{product_id}") for product_id in ids],
        )
        await cursor.executemany(
            "INSERT INTO `oc_product_description` (product_id, language_id, name)"
            " VALUES (%s, 2, %s)",
            [(product_id, f"Товар №{product_id}") for product_id in ids],
        )
    await shop.add_order(1, lines=[], total="2000.0000")
    async with shop.writer.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO `oc_order_product` (order_id, product_id, name, model,"
            " quantity, price, total, tax) VALUES (1, %s, %s, %s, 1, 1, 1, 0)",
            [
                (product_id, f"Item {product_id}", f"P-{product_id}")
                for product_id in ids
            ],
        )
    await shop.execute(
        "UPDATE `oc_order_total` SET value = 2000 WHERE code = 'sub_total'"
    )
    await shop.execute("UPDATE `oc_order_total` SET value = 0 WHERE code = 'tax'")

    run = await sync(shop, store, crm, tmp_path)

    deal = await run.deal(1)
    lines = products(deal)
    assert len(lines) == count
    assert lines[0]["title"] == "Товар №1000"
    assert {line["sku"] for line in lines} == {f"P-{product_id}" for product_id in ids}
    assert Decimal(str(deal["total"])) == Decimal(count)
    assert run.warned(1) == {}


# 8. A comment at its column's limit.


async def test_a_comment_of_64_kib_of_cyrillic_reaches_the_deal(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """65,535 bytes (TEXT's limit) of Cyrillic arrive whole in the deal's comment."""
    comment = "Ж" * 32_767 + "."
    assert len(comment.encode()) == 65_535
    await shop.add_order(1, comment=comment)
    async with shop.writer.cursor() as cursor:
        await cursor.execute("SELECT LENGTH(comment) FROM `oc_order`")
        assert await cursor.fetchone() == (65_535,)

    run = await sync(shop, store, crm, tmp_path)

    deal = await run.deal(1)
    assert f"Коментар покупця: {comment}" in deal["comment"]


# 9. Products and options deleted since the order.

RENAMED = LineSpec(
    product_id=50,
    name="Футболка (стара модель)",
    model="TS-OLD",
    quantity=1,
    price="15.0000",
    total="15.0000",
    options=[
        OptionSpec(227, 17, "Колір", "Графітовий"),
        OptionSpec(228, 21, "Розмір", "Середній (M)"),
    ],
)


async def test_a_deleted_product_is_sent_as_the_order_stored_it(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """Product, options and values gone: name, model and option text of the order."""
    await shop.add_order(1, lines=[RENAMED])
    for table in ("product", "product_description", "product_option"):
        await shop.execute(f"DELETE FROM `oc_{table}` WHERE product_id = 50")
    await shop.execute("DELETE FROM `oc_product_option_value` WHERE product_id = 50")

    run = await sync(shop, store, crm, tmp_path)

    [line] = products(await run.deal(1))
    assert (line["title"], line["sku"]) == ("Футболка (стара модель)", "TS-OLD")
    assert line["comment"] == "Колір: Графітовий; Розмір: Середній (M)"
    warned = run.warned(1)
    assert {"order_product.product_id", "order_option.product_option_id"} <= (
        warned.keys()
    )
    run.line("order field kept as typed", 1, "order_product.product_id")


async def test_a_deleted_option_value_is_sent_as_the_order_stored_it(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """The product stays, one option value is gone: that value as the order has it."""
    await shop.add_order(1, lines=[RENAMED])
    await shop.execute(
        "DELETE FROM `oc_product_option_value` WHERE product_option_value_id = 17"
    )

    run = await sync(shop, store, crm, tmp_path)

    [line] = products(await run.deal(1))
    assert line["title"] == "Футболка з логотипом"  # the catalogue's name
    assert line["comment"] == "Колір: Графітовий; Розмір: Середній (M)"
    assert run.warned(1).keys() == {"order_option.product_option_value_id"}


# 10. A currency row deleted since the order.


async def test_a_currency_deleted_since_the_order_parks_it(
    shop: OpenCartShop, store: EventStore, crm: Crm, tmp_path: Path
) -> None:
    """UAH deleted after the order was placed in it: parked naming currency_id."""
    await shop.add_order(
        1, currency_id=4, currency_code="UAH", currency_value="45.37000000"
    )
    await shop.add_order(2)
    await shop.execute("DELETE FROM `oc_currency` WHERE currency_id = 4")

    run = await sync(shop, store, crm, tmp_path)

    failed = await run.parked(1, "currency_id")
    assert "no longer exists" in failed.error
    assert (run.deals.parked, run.deals.created) == (1, 1)
    assert await run.client.find_deals_by_custom_field("field_1", "site_a:1") == []

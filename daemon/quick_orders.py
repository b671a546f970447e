"""Quick orders ("купити в 1 клік") that a module keeps in its own table.

A site's `quick_order.query` takes `%(after_id)s` and returns one row per line,
with the columns

    quick_order_id  increasing whole number; rows sharing it are one order
    name, telephone, product_id, quantity, date_added
    email, comment  optional
    price           optional: the unit price in the shop's base currency;
                    absent or NULL, the product's price today

Such a table records no currency, tax, address or status. A quick order is
therefore shaped as an order in the shop's base currency (rate 1), status 1
(Pending), with tax 0 on every line: the price is the only amount the module
kept, and it is taken as the amount the buyer was shown.

Values reach these snapshots as exact text like those of ordinary orders
(HTML-unescaped once). A query that fails or lacks a required column is
`ShopUnavailable` naming `quick_order.query`; a quick order whose rows cannot be
read (a quantity that is no number, no price and the product gone) is reported
as unreadable and read again later.

Known limits: the table is read past the last id captured, so a module that
writes one order's rows in separate statements could be read between them, and
an id committed after a higher one was read would be passed over. The modules
seen write one row per order, in one statement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from daemon.errors import ShopDataError, ShopUnavailable
from daemon.opencart30 import quick_order_query
from daemon.settings import SiteSettings
from daemon.shop import ShopContext, ShopReader
from events.snapshot import Line, OrderSnapshot, Row

QUERY_SETTING = "quick_order.query"
REQUIRED_COLUMNS = (
    "quick_order_id",
    "name",
    "telephone",
    "product_id",
    "quantity",
    "date_added",
)

# Order columns a quick order has no value for, kept empty so that the row
# reads like one of OpenCart's own.
_EMPTY_COLUMNS = (
    "lastname",
    "payment_firstname",
    "payment_lastname",
    "payment_company",
    "payment_address_1",
    "payment_address_2",
    "payment_city",
    "payment_postcode",
    "payment_country",
    "payment_zone",
    "payment_method",
    "payment_code",
    "shipping_firstname",
    "shipping_lastname",
    "shipping_company",
    "shipping_address_1",
    "shipping_address_2",
    "shipping_city",
    "shipping_postcode",
    "shipping_country",
    "shipping_zone",
    "shipping_method",
    "shipping_code",
    "custom_field",
    "payment_custom_field",
    "shipping_custom_field",
)
_PLACES = Decimal("0.0001")


class QuickLine(msgspec.Struct, frozen=True, kw_only=True):
    product_id: int
    quantity: int
    # None: the module kept no price, the product's price today applies.
    price: Decimal | None


class QuickOrder(msgspec.Struct, frozen=True, kw_only=True):
    """The rows of one `quick_order_id`, read."""

    quick_order_id: int
    name: str
    telephone: str
    email: str
    comment: str
    date_added: str
    lines: list[QuickLine]


class QuickOrderBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One read of the module's table."""

    snapshots: dict[int, OrderSnapshot]
    # quick_order_id -> why it cannot be read (left for a later poll).
    unreadable: dict[int, str]
    # The highest new quick_order_id this batch took (after_id when none).
    last_id: int
    # More new quick orders wait past this batch.
    more: bool


class QuickOrderReader:
    """Reads one site's quick-order table into snapshots of kind "quick_order"."""

    def __init__(self, reader: ShopReader, site: SiteSettings) -> None:
        self._reader = reader
        self._site = site.name
        self._query = site.quick_order.query if site.quick_order else None

    @property
    def configured(self) -> bool:
        return self._query is not None

    async def read(
        self,
        after_id: int,
        limit: int,
        *,
        retry: Collection[int] = (),
        placed_from: dt.date | None = None,
    ) -> QuickOrderBatch:
        """Quick orders past `after_id`, `limit` at a time, oldest first.

        `retry` names older ones to read again (unreadable before);
        `placed_from` skips those added before that day (they count as read).
        """
        if self._query is None:
            return QuickOrderBatch(
                snapshots={}, unreadable={}, last_id=after_id, more=False
            )

        # Far enough back to see the retried ones again.
        start = min([after_id, *(quick_order_id - 1 for quick_order_id in retry)])
        query = quick_order_query(self._query, start)
        unreadable: dict[int, str] = {}
        async with self._reader.connection() as connection:
            await connection.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            found = await self._reader.site_rows(
                connection, QUERY_SETTING, query, REQUIRED_COLUMNS
            )
            grouped = self._grouped(found)
            newer = sorted(key for key in grouped if key > after_id)
            taken = sorted({*newer[:limit], *(key for key in retry if key in grouped)})

            orders: dict[int, QuickOrder] = {}
            for quick_order_id in taken:
                rows = grouped[quick_order_id]
                if not _placed_since(rows[0], placed_from):
                    continue
                try:
                    orders[quick_order_id] = self._order(quick_order_id, rows)
                except ShopDataError as exc:
                    unreadable[quick_order_id] = str(exc)
            snapshots = await self._snapshots(connection, orders, unreadable)
            await connection.commit()

        return QuickOrderBatch(
            snapshots=snapshots,
            unreadable=unreadable,
            last_id=max([after_id, *newer[:limit]]),
            more=len(newer) > limit,
        )

    async def _snapshots(
        self, connection: Any, orders: dict[int, QuickOrder], unreadable: dict[int, str]
    ) -> dict[int, OrderSnapshot]:
        """Snapshots of the orders; those that cannot be built join `unreadable`."""
        if not orders:
            return {}
        products = {line.product_id for o in orders.values() for line in o.lines}
        context = await self._reader.shop_context(connection, products)

        snapshots = {}
        for quick_order_id, order in orders.items():
            try:
                snapshots[quick_order_id] = self._snapshot(order, context)
            except ShopDataError as exc:
                unreadable[quick_order_id] = str(exc)
        return snapshots

    def _grouped(self, rows: Iterable[Row]) -> dict[int, list[Row]]:
        """Rows by `quick_order_id`, in the query's order within each.

        An id that is not a whole number cannot be told apart from the others:
        the query is wrong, which is `ShopUnavailable`.
        """
        grouped: dict[int, list[Row]] = {}
        for row in rows:
            value = row["quick_order_id"]
            try:
                quick_order_id = int(value or "")
            except ValueError:
                reason = f"quick_order_id {value!r} is not a whole number"
                raise ShopUnavailable(
                    self._site, f"{QUERY_SETTING}: {reason}"
                ) from None
            grouped.setdefault(quick_order_id, []).append(row)
        return grouped

    def _order(self, quick_order_id: int, rows: list[Row]) -> QuickOrder:
        first = rows[0]

        def text(column: str) -> str:
            return first.get(column) or ""

        return QuickOrder(
            quick_order_id=quick_order_id,
            name=text("name"),
            telephone=text("telephone"),
            email=text("email"),
            comment=text("comment"),
            date_added=text("date_added"),
            lines=[_line(self._site, quick_order_id, row) for row in rows],
        )

    def _snapshot(self, order: QuickOrder, context: ShopContext) -> OrderSnapshot:
        lines = _lines(self._site, order, context)
        return OrderSnapshot(
            site=self._site,
            order_id=order.quick_order_id,
            order=_order_columns(order, lines, context),
            lines=lines,
            # The module keeps no total rows and no history.
            totals=[],
            history=[],
            currency=context.currency,
            shop=context.shop,
            languages=context.languages,
            catalogue=context.catalogue(lines),
            kind="quick_order",
        )


def _lines(site: str, order: QuickOrder, context: ShopContext) -> list[Line]:
    """The order's lines, named in the shop's language, priced as given."""
    language_id = context.language_id
    lines: list[Line] = []
    for line in order.lines:
        product = context.products.get(line.product_id)
        if line.price is not None:
            price = line.price
        elif product is not None:
            price = Decimal(product.price)
        else:
            reason = f"no price given and product {line.product_id} is gone"
            raise ShopDataError(site, order.quick_order_id, "price", reason)

        names = context.names["product"].get(line.product_id, {})
        name = names.get(language_id) if language_id is not None else None
        codes = product.codes if product is not None else {}
        lines.append(
            Line(
                # No order_product row exists: the line's place in the order.
                order_product_id=len(lines) + 1,
                product_id=line.product_id,
                name=name if name is not None else next(iter(names.values()), ""),
                model=codes.get("model", ""),
                quantity=line.quantity,
                price=_money(price),
                total=_money(price * line.quantity),
                tax=_money(Decimal(0)),
                codes=codes,
                options=[],
            )
        )
    return lines


def _order_columns(order: QuickOrder, lines: list[Line], context: ShopContext) -> Row:
    """An `order` row for the quick order: base currency, status 1, no address."""
    total = sum((Decimal(line.total) for line in lines), Decimal(0))
    language_id = context.language_id
    currency = context.currency
    columns: Row = {
        "order_id": str(order.quick_order_id),
        "store_id": str(context.store_id),
        "customer_id": "0",
        "firstname": order.name,
        "email": order.email,
        "telephone": order.telephone,
        "comment": order.comment,
        "total": _money(total),
        "order_status_id": "1",
        "language_id": None if language_id is None else str(language_id),
        "currency_id": None if currency is None else str(currency.currency_id),
        "currency_code": context.shop.get("config_currency", ""),
        "currency_value": "1.00000000",
        "date_added": order.date_added,
        "date_modified": order.date_added,
    }
    columns.update(dict.fromkeys(_EMPTY_COLUMNS, ""))
    return columns


def _money(amount: Decimal) -> str:
    """OpenCart's four places, unless the amount holds more (never rounded)."""
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -4:
        return str(amount.quantize(_PLACES))
    return str(amount)


def _placed_since(row: Row, day: dt.date | None) -> bool:
    """Whether `date_added` ("YYYY-MM-DD HH:MM:SS") is on or after the day."""
    return day is None or (row.get("date_added") or "") >= day.isoformat()


def _line(site: str, quick_order_id: int, row: Row) -> QuickLine:
    def number(column: str) -> Decimal:
        value = row[column]
        try:
            amount = Decimal(value or "")
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite() or amount < 0:
            reason = f"{value!r} is not an amount"
            raise ShopDataError(site, quick_order_id, column, reason)
        return amount

    def whole(column: str) -> int:
        amount = number(column)
        if amount != amount.to_integral_value():
            reason = f"{row[column]!r} is not a whole number"
            raise ShopDataError(site, quick_order_id, column, reason)
        return int(amount)

    given = (row.get("price") or "").strip()
    return QuickLine(
        product_id=whole("product_id"),
        quantity=whole("quantity"),
        price=number("price") if given else None,
    )

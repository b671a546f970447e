"""Reading one OpenCart shop's database: which orders changed, and their snapshots.

`ShopReader` runs set-based queries, a few per batch of orders, over the
connections of `daemon.shop_pool`; `daemon.shop_rows` turns their result sets
into snapshots.

Besides OpenCart's own tables, a site may name queries of its own: `queries`
(rows per order, e.g. Nova Poshta waybills, kept in `snapshot.extras`) and
`quick_order.query` (a quick-order module's table, see `daemon.quick_orders`).

Errors: a driver error, and a site's own query that fails or returns the wrong
columns, become `ShopUnavailable` (the message names the setting); a row that
cannot be read as OpenCart data, `ShopDataError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from typing import Any

import aiomysql
import msgspec

from daemon import shop_rows
from daemon.errors import ShopUnavailable
from daemon.opencart30 import OpenCart30, Query, site_query
from daemon.settings import SiteSettings
from daemon.shop_pool import error_reason, fetch, pooled_connection
from events.snapshot import (
    Catalogue,
    Currency,
    Language,
    Line,
    Names,
    OrderSnapshot,
    Row,
)


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """An order that may have changed since the capture's cursor."""

    order_id: int
    status: int
    date_modified: str
    # The newest history row above the cursor, 0 when there is none.
    history_id: int


class Product(msgspec.Struct, frozen=True, kw_only=True):
    """A catalogue `product` row: today's price and its codes."""

    price: str
    # model, sku, upc, ean, jan, isbn, mpn.
    codes: dict[str, str]


class CatalogueProduct(msgspec.Struct, frozen=True, kw_only=True):
    """A product as the shop's catalogue has it now (for the catalogue report)."""

    product_id: int
    enabled: bool
    name: str
    codes: dict[str, str]


class ShopContext(msgspec.Struct, frozen=True, kw_only=True):
    """The shop around orders that are not `order` rows (quick-order tables).

    Settings of the site's store (store 0 underneath), the base currency's row
    (`config_currency`), the languages, and the catalogue of the products.
    """

    store_id: int
    shop: dict[str, str]
    languages: list[Language]
    currency: Currency | None
    products: dict[int, Product]
    names: dict[str, Names]

    @property
    def language_id(self) -> int | None:
        """The shop's default language (4.1 names it config_language_catalog)."""
        code = self.shop.get("config_language_catalog") or self.shop.get(
            "config_language"
        )
        for language in self.languages:
            if language.code == code:
                return language.language_id
        return self.languages[0].language_id if self.languages else None

    def catalogue(self, lines: list[Line]) -> Catalogue:
        """The names a snapshot of these lines carries."""
        return shop_rows.catalogue_of(self.names, lines)


class ShopReader:
    """Set-based reads of one OpenCart 3.0 (or ocStore) shop."""

    def __init__(
        self,
        pool: aiomysql.Pool,
        site: SiteSettings,
        *,
        query_timeout: float | None = None,
    ) -> None:
        self._pool = pool
        # aiomysql has no read timeout of its own: each connection's use is
        # bounded by this instead, so that a hanging shop counts as unavailable.
        self._query_timeout = query_timeout
        self._site = site.name
        self._prefix = site.table_prefix
        self._sql = OpenCart30(site.table_prefix)
        self._store_id = site.store_id
        self._queries = dict(site.queries)

    async def latest_history_id(self) -> int:
        """The newest `order_history` id, 0 when there is none."""
        async with self.connection() as connection:
            rows = await fetch(connection, self._sql.latest_history_id())
        return int(rows[0]["history_id"] or 0)

    async def changed_orders(
        self,
        since_modified: str | None,
        after_history_id: int,
        sync_from: int | dt.date | None,
        limit: int,
        *,
        page_after: tuple[str, int] | None = None,
    ) -> list[Candidate]:
        """Orders confirmed and modified since, or with history rows past the id.

        `since_modified` is in the shop's clock, the overlap already taken off;
        None reads every confirmed order. `sync_from`: None for all, an order
        id, or the first `date_added` day. Candidates come in (date_modified,
        order_id) order; `page_after` is the last pair of the previous page.
        Only orders of the site's store, when it names one.
        """
        query = self._sql.changed_orders(
            since_modified=since_modified,
            after_history_id=after_history_id,
            sync_from=sync_from,
            page_after=page_after,
            limit=limit,
            store_id=self._store_id,
        )
        async with self.connection() as connection:
            rows = await fetch(connection, query)

        # 4.1 columns are nullable: a NULL status is listed by its history rows
        # only (and found unreadable when read); a NULL date_modified is "", which
        # sorts first, as MySQL sorts NULL.
        return [
            Candidate(
                order_id=int(row["order_id"]),
                status=int(row["order_status_id"] or 0),
                date_modified=str(row["date_modified"] or ""),
                history_id=int(row["history_id"] or 0),
            )
            for row in rows
        ]

    async def read_snapshots(
        self, order_ids: Collection[int]
    ) -> dict[int, OrderSnapshot]:
        """The whole snapshot of each order that still exists, in a few queries.

        An order of another store than the site's counts as gone. Raises
        `ShopUnavailable` when one of the site's `queries` fails.
        """
        ids = sorted(set(order_ids))
        if not ids:
            return {}

        sql = self._sql
        extras: dict[int, dict[str, list[Row]]] = {}
        async with self.connection() as connection:
            # One view of the shop for the batch where the tables allow it
            # (InnoDB); MyISAM ignores it, which is why capture defers edits.
            await connection.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            orders = sql.orders(ids, self._store_id)
            rows = {"orders": await fetch(connection, orders)}
            found = shop_rows.column_ids(rows["orders"], "order_id")
            if found:
                rows["lines"] = await fetch(connection, sql.lines(found))
                rows["options"] = await fetch(connection, sql.options(found))
                rows["totals"] = await fetch(connection, sql.totals(found))
                rows["history"] = await fetch(connection, sql.history(found))
                currency_ids = shop_rows.column_ids(rows["orders"], "currency_id")
                rows["currencies"] = await fetch(
                    connection, sql.currencies(currency_ids)
                )
                stores = sorted({0, *shop_rows.column_ids(rows["orders"], "store_id")})
                rows["settings"] = await fetch(connection, sql.settings(stores))
                rows["languages"] = await fetch(connection, sql.languages())
                names = sql.catalogue_names(
                    shop_rows.column_ids(rows["lines"], "product_id"),
                    shop_rows.column_ids(rows["options"], "option_id"),
                    shop_rows.column_ids(rows["options"], "option_value_id"),
                )
                rows["names"] = await fetch(connection, names)
                uploads = shop_rows.upload_codes(rows["options"])
                rows["uploads"] = (
                    await fetch(connection, sql.uploads(uploads)) if uploads else []
                )
                countries = shop_rows.country_ids(rows["orders"])
                rows["countries"] = (
                    await fetch(connection, sql.country_codes(countries))
                    if countries
                    else []
                )
                extras = await self._extras(connection, found)
            await connection.commit()

        return shop_rows.Snapshots(self._site, sql).build(rows, extras) if found else {}

    async def shop_context(
        self, connection: Any, product_ids: Collection[int]
    ) -> ShopContext:
        """Settings, base currency, languages and the products' catalogue rows."""
        sql = self._sql
        store_id = self._store_id or 0
        ids = sorted(set(product_ids))
        rows = {
            "settings": await fetch(connection, sql.settings(sorted({0, store_id}))),
            "languages": await fetch(connection, sql.languages()),
            "products": await fetch(connection, sql.products(ids)),
            "names": await fetch(connection, sql.catalogue_names(ids, [], [])),
        }
        settings = shop_rows.grouped(rows["settings"], "store_id")
        shop = shop_rows.shop_settings(settings.get(0, []), settings.get(store_id))
        base = sql.currency_by_code(shop.get("config_currency", ""))
        currency = None
        for row in await fetch(connection, base):
            places = row["decimal_place"]
            if not str(places).isdigit():
                reason = f"currency {row['code']}: decimal_place {places!r} is not a"
                raise ShopUnavailable(self._site, f"{reason} whole number")
            currency = shop_rows.currency_of(row, int(places))

        return ShopContext(
            store_id=store_id,
            shop=shop,
            languages=shop_rows.languages_of(rows["languages"]),
            currency=currency,
            products={
                int(row["product_id"]): Product(
                    price=str(row["price"] or "0"),
                    codes={
                        code: shop_rows.unescaped(row[f"code_{code}"])
                        for code in sql.product_codes
                    },
                )
                for row in rows["products"]
            },
            names=shop_rows.names_of(rows["names"]),
        )

    async def _extras(
        self, connection: Any, order_ids: list[int]
    ) -> dict[int, dict[str, list[Row]]]:
        """The rows of each of the site's `queries`, by order and query name.

        Rows keep the query's order; a query that found nothing for an order
        leaves no key, so that a new query changes only the orders it concerns.
        """
        extras: dict[int, dict[str, list[Row]]] = defaultdict(dict)
        wanted = set(order_ids)
        for name, text in self._queries.items():
            setting = f"queries.{name}"
            found = await self.site_rows(
                connection, setting, site_query(text, order_ids), ("order_id",)
            )
            for row in found:
                value = row["order_id"]
                try:
                    order_id = int(value or "")
                except ValueError:
                    reason = f"{setting}: order_id {value!r} is not an order id"
                    raise ShopUnavailable(self._site, reason) from None
                if order_id in wanted:
                    extras[order_id].setdefault(name, []).append(row)
        return extras

    async def site_rows(
        self,
        connection: Any,
        setting: str,
        query: Query,
        required: Collection[str],
    ) -> list[Row]:
        """Rows of a query the site wrote, as exact text; failures name `setting`."""
        async with connection.cursor(aiomysql.DictCursor) as cursor:
            try:
                # Bound first, so that a stray `%` is told apart from SQL errors.
                text = cursor.mogrify(query.sql, query.params)
            except (KeyError, ValueError, TypeError) as exc:
                reason = (
                    f"{setting}: its parameters cannot be bound ({exc!r}); "
                    "a literal % is written %%"
                )
                raise ShopUnavailable(self._site, reason) from exc
            try:
                await cursor.execute(text)
                rows = await cursor.fetchall()
            except aiomysql.MySQLError as exc:
                reason = f"{setting} failed: {error_reason(exc)}"
                raise ShopUnavailable(self._site, reason) from exc
            columns = {column[0] for column in cursor.description or ()}

        missing = [column for column in required if column not in columns]
        if missing:
            reason = f"{setting} returns no column {', '.join(missing)}"
            raise ShopUnavailable(self._site, reason)
        return [shop_rows.site_row(row) for row in rows]

    async def catalogue_products(self, language_code: str) -> list[CatalogueProduct]:
        """Every product of the shop, with its codes and its name in a language."""
        query = self._sql.catalogue_products(language_code)
        async with self.connection() as connection:
            rows = await fetch(connection, query)
        return [
            CatalogueProduct(
                product_id=int(row["product_id"]),
                enabled=bool(row["status"]),
                name=shop_rows.unescaped(row["name"]),
                codes={
                    code: shop_rows.unescaped(row[f"code_{code}"])
                    for code in self._sql.product_codes
                },
            )
            for row in rows
        ]

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A pooled connection; driver errors in the block become ShopUnavailable."""
        return pooled_connection(
            self._pool, self._site, self._prefix, self._query_timeout
        )

"""Reading one OpenCart shop's database: which orders changed, and their snapshots.

The shop is read, never written: every connection of the pool runs a read-only
session. Values reach the snapshot as the exact text MySQL sent (DECIMAL
`"15.0000"`, DATETIME `"2026-12-03 18:20:18"`, NULL `None`): the pool's decoders
leave numbers and dates as text, so nothing passes through a float. Text that
OpenCart stored HTML-escaped is unescaped once here.

Besides OpenCart's own tables, a site may name queries of its own: `queries`
(rows per order, e.g. Nova Poshta waybills, kept in `snapshot.extras`) and
`quick_order.query` (a quick-order module's table, see `daemon.quick_orders`).

Errors: a driver error, and a site's own query that fails or returns the wrong
columns, become `ShopUnavailable` (the message names the setting); a row that
cannot be read as OpenCart data, `ShopDataError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import html
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any

import aiomysql
import msgspec
import pymysql  # type: ignore[import-untyped]  # no stubs; aiomysql wraps it

from daemon.errors import ShopDataError, ShopUnavailable
from daemon.opencart30 import OpenCart30, Query, site_query
from daemon.settings import DatabaseUrl, SiteSettings
from daemon.shop_schema import schema_error
from daemon.shop_tls import ensure_encrypted, shop_tls_context
from events.snapshot import (
    Catalogue,
    Currency,
    HistoryRow,
    Language,
    Line,
    LineOption,
    Names,
    OrderSnapshot,
    Row,
    TotalRow,
)

# Without a decoder, pymysql hands over the server's own text: money and dates.
_TYPE = pymysql.FIELD_TYPE
_VERBATIM_TYPES = {_TYPE.DECIMAL, _TYPE.NEWDECIMAL, _TYPE.FLOAT, _TYPE.DOUBLE}
_VERBATIM_TYPES |= {_TYPE.DATE, _TYPE.DATETIME, _TYPE.TIMESTAMP, _TYPE.TIME}
_DECODERS = {
    field_type: decoder
    for field_type, decoder in pymysql.converters.decoders.items()
    if field_type not in _VERBATIM_TYPES
}
_DRIVER_ERRORS = (aiomysql.MySQLError, OSError)

# A result row as the cursor gives it: column name -> value.
_Row = dict[str, Any]


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
        return _catalogue(self.names, lines)


async def open_shop_pool(db: DatabaseUrl, site: str) -> aiomysql.Pool:
    """A small pool of read-only utf8mb4 connections to one shop's database."""
    try:
        pool = await aiomysql.create_pool(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password,
            db=db.database,
            charset="utf8mb4",
            autocommit=True,
            init_command="SET SESSION TRANSACTION READ ONLY",
            conv=_DECODERS,
            connect_timeout=10,
            minsize=1,
            maxsize=2,
            # Below MySQL's wait_timeout, so an idle shop never hangs up on us.
            pool_recycle=3600,
            ssl=shop_tls_context(db),
        )
        await ensure_encrypted(pool, db, site)
    except _DRIVER_ERRORS as exc:
        raise ShopUnavailable(site, _reason(exc, db.password)) from exc
    return pool


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
        # bounded here instead, so that a hanging shop counts as unavailable.
        self._query_timeout = query_timeout
        self._site = site.name
        self._prefix = site.table_prefix
        self._sql = OpenCart30(site.table_prefix)
        self._store_id = site.store_id
        self._queries = dict(site.queries)

    async def latest_history_id(self) -> int:
        """The newest `order_history` id, 0 when there is none."""
        async with self.connection() as connection:
            rows = await _fetch(connection, self._sql.latest_history_id())
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
            rows = await _fetch(connection, query)

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
            rows = {"orders": await _fetch(connection, orders)}
            found = _ids(rows["orders"], "order_id")
            if found:
                rows["lines"] = await _fetch(connection, sql.lines(found))
                rows["options"] = await _fetch(connection, sql.options(found))
                rows["totals"] = await _fetch(connection, sql.totals(found))
                rows["history"] = await _fetch(connection, sql.history(found))
                currency_ids = _ids(rows["orders"], "currency_id")
                rows["currencies"] = await _fetch(
                    connection, sql.currencies(currency_ids)
                )
                stores = sorted({0, *_ids(rows["orders"], "store_id")})
                rows["settings"] = await _fetch(connection, sql.settings(stores))
                rows["languages"] = await _fetch(connection, sql.languages())
                names = sql.catalogue_names(
                    _ids(rows["lines"], "product_id"),
                    _ids(rows["options"], "option_id"),
                    _ids(rows["options"], "option_value_id"),
                )
                rows["names"] = await _fetch(connection, names)
                uploads = _upload_codes(rows["options"])
                rows["uploads"] = (
                    await _fetch(connection, sql.uploads(uploads)) if uploads else []
                )
                countries = _country_ids(rows["orders"])
                rows["countries"] = (
                    await _fetch(connection, sql.country_codes(countries))
                    if countries
                    else []
                )
                extras = await self._extras(connection, found)
            await connection.commit()

        return _Snapshots(self._site, sql).build(rows, extras) if found else {}

    async def shop_context(
        self, connection: Any, product_ids: Collection[int]
    ) -> ShopContext:
        """Settings, base currency, languages and the products' catalogue rows."""
        sql = self._sql
        store_id = self._store_id or 0
        ids = sorted(set(product_ids))
        rows = {
            "settings": await _fetch(connection, sql.settings(sorted({0, store_id}))),
            "languages": await _fetch(connection, sql.languages()),
            "products": await _fetch(connection, sql.products(ids)),
            "names": await _fetch(connection, sql.catalogue_names(ids, [], [])),
        }
        settings = _group(rows["settings"], "store_id")
        shop = _shop_settings(settings.get(0, []), settings.get(store_id))
        base = sql.currency_by_code(shop.get("config_currency", ""))
        currency = None
        for row in await _fetch(connection, base):
            places = row["decimal_place"]
            if not str(places).isdigit():
                reason = f"currency {row['code']}: decimal_place {places!r} is not a"
                raise ShopUnavailable(self._site, f"{reason} whole number")
            currency = _currency(row, int(places))

        return ShopContext(
            store_id=store_id,
            shop=shop,
            languages=_languages(rows["languages"]),
            currency=currency,
            products={
                int(row["product_id"]): Product(
                    price=str(row["price"] or "0"),
                    codes={
                        code: _unescaped(row[f"code_{code}"])
                        for code in sql.product_codes
                    },
                )
                for row in rows["products"]
            },
            names=_names(rows["names"]),
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
                reason = f"{setting} failed: {_reason(exc)}"
                raise ShopUnavailable(self._site, reason) from exc
            columns = {column[0] for column in cursor.description or ()}

        missing = [column for column in required if column not in columns]
        if missing:
            reason = f"{setting} returns no column {', '.join(missing)}"
            raise ShopUnavailable(self._site, reason)
        return [_site_row(row) for row in rows]

    async def catalogue_products(self, language_code: str) -> list[CatalogueProduct]:
        """Every product of the shop, with its codes and its name in a language."""
        query = self._sql.catalogue_products(language_code)
        async with self.connection() as connection:
            rows = await _fetch(connection, query)
        return [
            CatalogueProduct(
                product_id=int(row["product_id"]),
                enabled=bool(row["status"]),
                name=_unescaped(row["name"]),
                codes={
                    code: _unescaped(row[f"code_{code}"])
                    for code in self._sql.product_codes
                },
            )
            for row in rows
        ]

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; driver errors in the block become ShopUnavailable."""
        try:
            connection = await self._pool.acquire()
        except _DRIVER_ERRORS as exc:
            raise ShopUnavailable(self._site, _reason(exc)) from exc

        try:
            async with asyncio.timeout(self._query_timeout):
                yield connection
        except TimeoutError as exc:
            connection.close()
            reason = f"no answer within {self._query_timeout:g} s"
            raise ShopUnavailable(self._site, reason) from exc
        except _DRIVER_ERRORS as exc:
            unsupported = await schema_error(connection, self._site, self._prefix, exc)
            connection.close()
            raise unsupported or ShopUnavailable(self._site, _reason(exc)) from exc
        except BaseException:
            # Interrupted mid-result (a cancel): its state is unknown, drop it.
            connection.close()
            raise
        finally:
            await self._pool.release(connection)


async def _fetch(connection: Any, query: Query) -> list[_Row]:
    async with connection.cursor(aiomysql.DictCursor) as cursor:
        await cursor.execute(query.sql, query.params)
        return list(await cursor.fetchall())


def _reason(exc: BaseException, password: str = "") -> str:
    reason = str(exc) or type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    return reason


class _Snapshots:
    """Turns the result sets of one batch into snapshots."""

    def __init__(self, site: str, sql: OpenCart30) -> None:
        self.site = site
        self.sql = sql

    def build(
        self, rows: dict[str, list[_Row]], extras: dict[int, dict[str, list[Row]]]
    ) -> dict[int, OrderSnapshot]:
        options = _group(rows["options"], "order_product_id")
        lines: dict[int, list[Line]] = defaultdict(list)
        for row in rows["lines"]:
            line_options = options.get(row["order_product_id"], [])
            lines[int(row["order_id"])].append(self._line(row, line_options))
        totals = _group(rows["totals"], "order_id")
        history = _group(rows["history"], "order_id")
        currencies = {row["currency_id"]: row for row in rows["currencies"]}
        settings = _group(rows["settings"], "store_id")
        languages = _languages(rows["languages"])
        names = _names(rows["names"])
        uploads = {
            _unescaped(row["code"]): _unescaped(row["name"]) for row in rows["uploads"]
        }
        countries = {
            int(row["country_id"]): _unescaped(row["iso_code_2"])
            for row in rows["countries"]
        }

        snapshots = {}
        for row in rows["orders"]:
            order_id = int(row["order_id"])
            if row["order_status_id"] is None:
                # Neither confirmed nor abandoned (0): a row someone left half
                # written, read again by the next poll.
                raise ShopDataError(
                    self.site, order_id, "order.order_status_id", "NULL, not a status"
                )
            order_lines = lines.get(order_id, [])
            country_codes = {
                key: countries[key] for key in _country_ids([row]) if key in countries
            }
            snapshots[order_id] = OrderSnapshot(
                site=self.site,
                order_id=order_id,
                order=_order_columns(row, self.sql.raw_order_columns),
                lines=order_lines,
                totals=[self._total(total) for total in totals.get(order_id, [])],
                history=[self._history(item) for item in history.get(order_id, [])],
                currency=self._currency(order_id, currencies.get(row["currency_id"])),
                shop=_shop_settings(settings.get(0, []), settings.get(row["store_id"])),
                languages=languages,
                catalogue=_catalogue(names, order_lines, country_codes),
                uploads=_order_uploads(order_lines, uploads),
                extras=extras.get(order_id, {}),
            )

        return snapshots

    def _line(self, row: _Row, options: list[_Row]) -> Line:
        order_id = int(row["order_id"])
        codes: dict[str, str] = {}
        if row["catalogue_product_id"] is not None:
            codes = {
                code: html.unescape(str(row[f"code_{code}"] or ""))
                for code in self.sql.product_codes
            }

        table = "order_product."
        return Line(
            order_product_id=self._int(row, "order_product_id", order_id, table),
            # NULL (4.1) as OpenCart's 0, "none": no catalogue row is found, and
            # the order's own name, model and option text stand in for it.
            product_id=self._int(row, "product_id", order_id, table, null_as=0),
            name=_unescaped(row["name"]),
            model=_unescaped(row["model"]),
            quantity=self._int(row, "quantity", order_id, table),
            price=self._money(row, "price", order_id, table),
            total=self._money(row, "total", order_id, table),
            tax=self._money(row, "tax", order_id, table),
            codes=codes,
            options=[self._option(option, order_id) for option in options],
        )

    def _option(self, row: _Row, order_id: int) -> LineOption:
        table = "order_option."
        return LineOption(
            order_option_id=self._int(row, "order_option_id", order_id, table),
            product_option_id=self._int(
                row, "product_option_id", order_id, table, null_as=0
            ),
            product_option_value_id=self._int(
                row, "product_option_value_id", order_id, table, null_as=0
            ),
            # INT columns arrive as int, or None when the catalogue row is gone.
            option_id=row["option_id"],
            option_value_id=row["option_value_id"],
            name=_unescaped(row["name"]),
            value=_unescaped(row["value"]),
            type=str(row["type"] or ""),
        )

    def _total(self, row: _Row) -> TotalRow:
        order_id = int(row["order_id"])
        table = "order_total."
        return TotalRow(
            code=str(row["code"] or ""),
            title=_unescaped(row["title"]),
            value=self._money(row, "value", order_id, table),
            # 4.1's default; the query orders NULLs first, then by row id.
            sort_order=self._int(row, "sort_order", order_id, table, null_as=0),
        )

    def _history(self, row: _Row) -> HistoryRow:
        order_id = int(row["order_id"])
        table = "order_history."
        return HistoryRow(
            order_history_id=self._int(row, "order_history_id", order_id, table),
            order_status_id=self._int(row, "order_status_id", order_id, table),
            notify=bool(row["notify"]),
            comment=_unescaped(row["comment"]),
            date_added=str(row["date_added"] or ""),
        )

    def _currency(self, order_id: int, row: _Row | None) -> Currency | None:
        if row is None:
            return None
        places = self._int(row, "decimal_place", order_id, "currency.")
        return _currency(row, places)

    def _int(
        self,
        row: _Row,
        column: str,
        order_id: int,
        table: str = "",
        *,
        null_as: int | None = None,
    ) -> int:
        value = row[column]
        if value is None and null_as is not None:
            return null_as
        try:
            return int(value)
        except (TypeError, ValueError):
            reason = f"{value!r} is not a whole number"
            if value is None:
                reason = "NULL, not a whole number"
            raise ShopDataError(self.site, order_id, table + column, reason) from None

    def _money(self, row: _Row, column: str, order_id: int, table: str = "") -> str:
        value = row[column]
        if value is None:
            field = table + column
            raise ShopDataError(self.site, order_id, field, "NULL, not an amount")
        return str(value)


def _languages(rows: list[_Row]) -> list[Language]:
    return [
        Language(language_id=int(row["language_id"]), code=str(row["code"]))
        for row in rows
    ]


def _currency(row: _Row, decimal_place: int) -> Currency:
    return Currency(
        currency_id=int(row["currency_id"]),
        code=str(row["code"] or ""),
        symbol_left=_unescaped(row["symbol_left"]),
        symbol_right=_unescaped(row["symbol_right"]),
        decimal_place=decimal_place,
        value=str(row["value"] or ""),
    )


def _upload_codes(options: Iterable[_Row]) -> list[str]:
    """The upload codes that file options hold, as stored."""
    codes = {_column_text(row["value"]) for row in options if row["type"] == "file"}
    return sorted(code for code in codes if code)


def _order_uploads(lines: list[Line], uploads: dict[str, str]) -> dict[str, str]:
    codes = {
        option.value
        for line in lines
        for option in line.options
        if option.type == "file"
    }
    return {code: uploads[code] for code in sorted(codes) if code in uploads}


def _country_ids(orders: Iterable[_Row]) -> list[int]:
    """Payment and shipping country ids (4.1 may leave them NULL, 0 is none)."""
    ids = {
        int(row[column])
        for row in orders
        for column in ("payment_country_id", "shipping_country_id")
        if row.get(column)
    }
    return sorted(ids)


def _site_row(row: _Row) -> Row:
    """A row of a site's own query: exact text, HTML-unescaped once, NULL None."""
    converted: Row = {}
    for column, value in row.items():
        text = _column_text(value)
        converted[str(column)] = None if text is None else html.unescape(text)
    return converted


def _ids(rows: Iterable[_Row], column: str) -> list[int]:
    return sorted({int(row[column]) for row in rows if row[column] is not None})


def _group(rows: list[_Row], column: str) -> dict[Any, list[_Row]]:
    grouped: dict[Any, list[_Row]] = defaultdict(list)
    for row in rows:
        grouped[row[column]].append(row)
    return grouped


def _order_columns(row: _Row, raw_columns: frozenset[str]) -> Row:
    columns: Row = {}
    for column, value in row.items():
        text = _column_text(value)
        if text is not None and column not in raw_columns:
            text = html.unescape(text)
        columns[column] = text
    return columns


def _shop_settings(store_zero: list[_Row], own: list[_Row] | None) -> dict[str, str]:
    shop: dict[str, str] = {}
    for row in [*store_zero, *(own or [])]:
        value = _column_text(row["value"])
        if value is None:
            continue
        # Serialized values are JSON, unescaped when interpreted; the rest is
        # text the admin typed.
        shop[str(row["key"])] = value if row["serialized"] else html.unescape(value)
    return shop


def _names(rows: list[_Row]) -> dict[str, Names]:
    names: dict[str, Names] = defaultdict(dict)
    for row in rows:
        by_language = names[str(row["kind"])].setdefault(int(row["id"]), {})
        by_language[int(row["language_id"])] = _unescaped(row["name"])
    return names


def _catalogue(
    names: dict[str, Names],
    lines: list[Line],
    country_codes: dict[int, str] | None = None,
) -> Catalogue:
    products = {line.product_id for line in lines}
    options = {option.option_id for line in lines for option in line.options}
    values = {option.option_value_id for line in lines for option in line.options}

    def only(kind: str, ids: set[int | None] | set[int]) -> Names:
        return {key: value for key, value in names[kind].items() if key in ids}

    return Catalogue(
        products=only("product", products),
        options=only("option", options),
        option_values=only("option_value", values),
        custom_fields=names["custom_field"],
        custom_field_values=names["custom_field_value"],
        order_statuses=names["order_status"],
        country_codes=country_codes or {},
    )


def _column_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _unescaped(value: Any) -> str:
    text = _column_text(value)
    return "" if text is None else html.unescape(text)

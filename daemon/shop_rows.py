"""OpenCart rows as snapshot values: the reader's result sets become `OrderSnapshot`s.

Values keep the exact text MySQL sent (DECIMAL `"15.0000"`, NULL `None`); text
that OpenCart stored HTML-escaped is unescaped once here. A row that cannot be
read as OpenCart data raises `ShopDataError`, naming the order and the field.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from daemon.errors import ShopDataError
from daemon.opencart30 import OpenCart30
from daemon.shop_pool import CursorRow
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


class Snapshots:
    """Turns the result sets of one batch into snapshots."""

    def __init__(self, site: str, sql: OpenCart30) -> None:
        self.site = site
        self.sql = sql

    def build(
        self, rows: dict[str, list[CursorRow]], extras: dict[int, dict[str, list[Row]]]
    ) -> dict[int, OrderSnapshot]:
        """The snapshot of each order in `rows`, by order id."""
        options = grouped(rows["options"], "order_product_id")
        lines: dict[int, list[Line]] = defaultdict(list)
        for row in rows["lines"]:
            line_options = options.get(row["order_product_id"], [])
            lines[int(row["order_id"])].append(self._line(row, line_options))
        totals = grouped(rows["totals"], "order_id")
        history = grouped(rows["history"], "order_id")
        currencies = {row["currency_id"]: row for row in rows["currencies"]}
        settings = grouped(rows["settings"], "store_id")
        languages = languages_of(rows["languages"])
        names = names_of(rows["names"])
        uploads = {
            unescaped(row["code"]): unescaped(row["name"]) for row in rows["uploads"]
        }
        countries = {
            int(row["country_id"]): unescaped(row["iso_code_2"])
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
                key: countries[key] for key in country_ids([row]) if key in countries
            }
            snapshots[order_id] = OrderSnapshot(
                site=self.site,
                order_id=order_id,
                order=_order_columns(row, self.sql.raw_order_columns),
                lines=order_lines,
                totals=[self._total(total) for total in totals.get(order_id, [])],
                history=[self._history(item) for item in history.get(order_id, [])],
                currency=self._currency(order_id, currencies.get(row["currency_id"])),
                shop=shop_settings(settings.get(0, []), settings.get(row["store_id"])),
                languages=languages,
                catalogue=catalogue_of(names, order_lines, country_codes),
                uploads=_order_uploads(order_lines, uploads),
                extras=extras.get(order_id, {}),
            )

        return snapshots

    def _line(self, row: CursorRow, options: list[CursorRow]) -> Line:
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
            name=unescaped(row["name"]),
            model=unescaped(row["model"]),
            quantity=self._int(row, "quantity", order_id, table),
            price=self._money(row, "price", order_id, table),
            total=self._money(row, "total", order_id, table),
            tax=self._money(row, "tax", order_id, table),
            codes=codes,
            options=[self._option(option, order_id) for option in options],
        )

    def _option(self, row: CursorRow, order_id: int) -> LineOption:
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
            name=unescaped(row["name"]),
            value=unescaped(row["value"]),
            type=str(row["type"] or ""),
        )

    def _total(self, row: CursorRow) -> TotalRow:
        order_id = int(row["order_id"])
        table = "order_total."
        return TotalRow(
            code=str(row["code"] or ""),
            title=unescaped(row["title"]),
            value=self._money(row, "value", order_id, table),
            # 4.1's default; the query orders NULLs first, then by row id.
            sort_order=self._int(row, "sort_order", order_id, table, null_as=0),
        )

    def _history(self, row: CursorRow) -> HistoryRow:
        order_id = int(row["order_id"])
        table = "order_history."
        return HistoryRow(
            order_history_id=self._int(row, "order_history_id", order_id, table),
            order_status_id=self._int(row, "order_status_id", order_id, table),
            notify=bool(row["notify"]),
            comment=unescaped(row["comment"]),
            date_added=str(row["date_added"] or ""),
        )

    def _currency(self, order_id: int, row: CursorRow | None) -> Currency | None:
        if row is None:
            return None
        places = self._int(row, "decimal_place", order_id, "currency.")
        return currency_of(row, places)

    def _int(
        self,
        row: CursorRow,
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

    def _money(
        self, row: CursorRow, column: str, order_id: int, table: str = ""
    ) -> str:
        value = row[column]
        if value is None:
            field = table + column
            raise ShopDataError(self.site, order_id, field, "NULL, not an amount")
        return str(value)


def languages_of(rows: list[CursorRow]) -> list[Language]:
    """The shop's languages, as the `language` rows list them."""
    return [
        Language(language_id=int(row["language_id"]), code=str(row["code"]))
        for row in rows
    ]


def currency_of(row: CursorRow, decimal_place: int) -> Currency:
    """A `currency` row, its decimal places already read as a whole number."""
    return Currency(
        currency_id=int(row["currency_id"]),
        code=str(row["code"] or ""),
        symbol_left=unescaped(row["symbol_left"]),
        symbol_right=unescaped(row["symbol_right"]),
        decimal_place=decimal_place,
        value=str(row["value"] or ""),
    )


def upload_codes(options: Iterable[CursorRow]) -> list[str]:
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


def country_ids(orders: Iterable[CursorRow]) -> list[int]:
    """Payment and shipping country ids (4.1 may leave them NULL, 0 is none)."""
    ids = {
        int(row[column])
        for row in orders
        for column in ("payment_country_id", "shipping_country_id")
        if row.get(column)
    }
    return sorted(ids)


def site_row(row: CursorRow) -> Row:
    """A row of a site's own query: exact text, HTML-unescaped once, NULL None."""
    converted: Row = {}
    for column, value in row.items():
        text = _column_text(value)
        converted[str(column)] = None if text is None else html.unescape(text)
    return converted


def column_ids(rows: Iterable[CursorRow], column: str) -> list[int]:
    """The distinct ids of a column, NULLs left out, in order."""
    return sorted({int(row[column]) for row in rows if row[column] is not None})


def grouped(rows: list[CursorRow], column: str) -> dict[Any, list[CursorRow]]:
    """The rows by the value of a column, each group in the rows' order."""
    grouped: dict[Any, list[CursorRow]] = defaultdict(list)
    for row in rows:
        grouped[row[column]].append(row)
    return grouped


def _order_columns(row: CursorRow, raw_columns: frozenset[str]) -> Row:
    columns: Row = {}
    for column, value in row.items():
        text = _column_text(value)
        if text is not None and column not in raw_columns:
            text = html.unescape(text)
        columns[column] = text
    return columns


def shop_settings(
    store_zero: list[CursorRow], own: list[CursorRow] | None
) -> dict[str, str]:
    """The `setting` rows of store 0, overridden by the store's own ones."""
    shop: dict[str, str] = {}
    for row in [*store_zero, *(own or [])]:
        value = _column_text(row["value"])
        if value is None:
            continue
        # Serialized values are JSON, unescaped when interpreted; the rest is
        # text the admin typed.
        shop[str(row["key"])] = value if row["serialized"] else html.unescape(value)
    return shop


def names_of(rows: list[CursorRow]) -> dict[str, Names]:
    """Catalogue names by kind, id and language (rows of `catalogue_names`)."""
    names: dict[str, Names] = defaultdict(dict)
    for row in rows:
        by_language = names[str(row["kind"])].setdefault(int(row["id"]), {})
        by_language[int(row["language_id"])] = unescaped(row["name"])
    return names


def catalogue_of(
    names: dict[str, Names],
    lines: list[Line],
    country_codes: dict[int, str] | None = None,
) -> Catalogue:
    """The names a snapshot of these lines carries, and its country codes."""
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


def unescaped(value: Any) -> str:
    """A column as text, HTML-unescaped once; NULL becomes ""."""
    text = _column_text(value)
    return "" if text is None else html.unescape(text)

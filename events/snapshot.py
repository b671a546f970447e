"""The facts of one order as its shop held them at capture time.

A snapshot carries everything any setting may later select, so that a projection
(and a replay with other settings) never has to ask the shop again: every order
column, every product code of every line, the options with their ids, the totals,
the history, the currency row, the shop settings that decided how prices were
shown, and the catalogue names in every language of the shop.

Money and every other column value stay the exact strings MySQL returned
(``"15.0000"``); text is already HTML-unescaped once. ``None`` is SQL NULL.
"""

from __future__ import annotations

import hashlib

import msgspec

# Column values as MySQL returned them, keyed by column name.
Row = dict[str, str | None]
# Catalogue names: entity id -> language id -> name.
Names = dict[int, dict[int, str]]


class LineOption(msgspec.Struct, frozen=True, kw_only=True):
    """One `order_option` row: a chosen value (a checkbox gives one per tick)."""

    order_option_id: int
    product_option_id: int
    product_option_value_id: int
    # Catalogue ids resolved through product_option / product_option_value;
    # None when the catalogue row is gone since the order.
    option_id: int | None
    option_value_id: int | None
    name: str
    value: str
    type: str


class Line(msgspec.Struct, frozen=True, kw_only=True):
    """One `order_product` row with the product's codes from the catalogue."""

    order_product_id: int
    product_id: int
    name: str
    model: str
    quantity: int
    price: str
    total: str
    tax: str
    # model, sku, upc, ean, jan, isbn, mpn as the product row holds them now;
    # empty when the product was deleted from the shop.
    codes: dict[str, str]
    options: list[LineOption]


class TotalRow(msgspec.Struct, frozen=True, kw_only=True):
    """One `order_total` row, in the shop's display order."""

    code: str
    title: str
    value: str
    sort_order: int


class HistoryRow(msgspec.Struct, frozen=True, kw_only=True):
    """One `order_history` row."""

    order_history_id: int
    order_status_id: int
    notify: bool
    comment: str
    date_added: str


class Currency(msgspec.Struct, frozen=True, kw_only=True):
    """The order's `currency` row (its `value` is today's rate: never for money)."""

    currency_id: int
    code: str
    symbol_left: str
    symbol_right: str
    decimal_place: int
    value: str


class Language(msgspec.Struct, frozen=True, kw_only=True):
    language_id: int
    code: str


class Catalogue(msgspec.Struct, frozen=True, kw_only=True):
    """Names the order refers to, in every language of the shop."""

    products: Names = {}
    options: Names = {}
    option_values: Names = {}
    custom_fields: Names = {}
    custom_field_values: Names = {}
    order_statuses: Names = {}
    # country_id -> ISO 3166-1 alpha-2 (`country.iso_code_2`), for country
    # names in the managers' language.
    country_codes: dict[int, str] = {}


class OrderSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One order of one site, complete enough to build its deal from."""

    site: str
    order_id: int
    order: Row
    lines: list[Line]
    totals: list[TotalRow]
    history: list[HistoryRow]
    currency: Currency | None
    # Shop settings from `setting` (store 0 and the order's store), e.g.
    # config_tax, config_timezone, config_language, config_currency.
    shop: dict[str, str]
    languages: list[Language]
    catalogue: Catalogue
    # "order" for an `order` row; "quick_order" for a row of a quick-order
    # module's own table (read by the site's `quick_order.query`).
    kind: str = "order"
    # Upload codes of file options -> the file name the buyer uploaded.
    uploads: dict[str, str] = {}
    # Rows the site's own queries (`sites[].queries`) returned for this order,
    # by query name: Nova Poshta references, checkout module tables, ...
    extras: dict[str, list[Row]] = {}

    @property
    def status_id(self) -> int:
        return int(self.order.get("order_status_id") or 0)


# Columns that move without the order's content changing: an admin "save"
# with nothing edited still bumps date_modified.
_VOLATILE_COLUMNS = frozenset({"date_modified"})

_encoder = msgspec.json.Encoder(order="sorted")


def content_hash(snapshot: OrderSnapshot) -> str:
    """A digest of what the order says, blind to ids an admin edit renumbers.

    OpenCart 3.0 deletes and re-inserts every line on edit, so
    `order_product_id` (and `order_option_id`) change while the order does not.
    """
    order = {k: v for k, v in snapshot.order.items() if k not in _VOLATILE_COLUMNS}
    lines = [
        msgspec.structs.replace(
            line,
            order_product_id=0,
            options=[
                msgspec.structs.replace(option, order_option_id=0)
                for option in line.options
            ],
        )
        for line in snapshot.lines
    ]
    stable = msgspec.structs.replace(snapshot, order=order, lines=lines)

    # Catalogue names are keyed by int ids; sorting needs str keys.
    builtins = msgspec.to_builtins(stable, str_keys=True)

    return hashlib.sha256(_encoder.encode(builtins)).hexdigest()

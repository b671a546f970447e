"""The facts of one order as its shop held them at capture time.

A snapshot carries everything any setting may later select, so that a projection
(and a replay with other settings) never has to ask the shop again: every order
column, every product code of every line, the options with their ids, the totals,
the history, the currency row, the shop settings that decided how prices were
shown, and the catalogue names in every language of the shop.

Only the order's own facts make its content (`content_hash`): the shop-wide ones
are read with every snapshot but change no order. The display facts of an
order's first snapshot are the ones its later snapshots are shown with
(`shown_as_first`), so a setting changed since never re-prices an old order.

Money and every other column value stay the exact strings MySQL returned
(``"15.0000"``); text is already HTML-unescaped once. ``None`` is SQL NULL.
"""

from __future__ import annotations

import hashlib
from typing import Any

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
# Facts of the whole shop, read with the order but not part of it: today's
# currency rate, the settings, the catalogue's names and the languages.
_SHOP_WIDE = ("currency", "shop", "languages", "catalogue")
# A line's product codes and an option's catalogue ids are read from the
# catalogue as it is now; the ids an admin edit renumbers.
_LINE_NOT_ORDER = ("order_product_id", "codes")
_OPTION_NOT_ORDER = ("order_option_id", "option_id", "option_value_id")

_encoder = msgspec.json.Encoder(order="sorted")


def content_hash(snapshot: OrderSnapshot) -> str:
    """A digest of what the order itself says, so that only its change shows.

    Left out: `date_modified`; the ids OpenCart 3.0 renumbers when it deletes
    and re-inserts every line on edit (`order_product_id`, `order_option_id`);
    and whatever belongs to the shop rather than the order (the currency
    row, the settings, the catalogue's names and codes, the languages), which
    a re-read of a recent order would otherwise take for an order change.
    """
    order: dict[str, Any] = msgspec.to_builtins(snapshot, str_keys=True)
    for part in _SHOP_WIDE:
        del order[part]
    order["order"] = {
        column: value
        for column, value in snapshot.order.items()
        if column not in _VOLATILE_COLUMNS
    }
    for line in order["lines"]:
        for key in _LINE_NOT_ORDER:
            del line[key]
        for option in line["options"]:
            for key in _OPTION_NOT_ORDER:
                del option[key]

    return hashlib.sha256(_encoder.encode(order)).hexdigest()


def shown_as_first(snapshot: OrderSnapshot, first: OrderSnapshot) -> OrderSnapshot:
    """A later snapshot with the display facts of the order's first one.

    The shop settings (`config_tax`) and the currency row (decimal places,
    code, symbols) decided how the customer saw the prices when the order was
    placed; a shop that changes them since must not re-price an old order
    when it changes. The catalogue's names and codes stay the newest: a later
    snapshot exists only because the order changed, and newer names are fine.
    The first row is kept while the order keeps its currency; an order an
    admin moved to another currency, or whose first snapshot had no currency
    row (deleted before the order was seen), has only the newer row to go by.
    """
    currency = snapshot.currency
    same_currency = first.order.get("currency_id") == snapshot.order.get("currency_id")
    if same_currency and first.currency is not None:
        currency = first.currency
    if snapshot.shop == first.shop and snapshot.currency == currency:
        return snapshot
    return msgspec.structs.replace(snapshot, shop=first.shop, currency=currency)

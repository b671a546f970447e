"""The content hash that decides whether a re-read order changed."""

import msgspec

from events.snapshot import (
    Catalogue,
    HistoryRow,
    Language,
    content_hash,
    shown_as_first,
)
from tests.factories import (
    UKRAINIAN,
    currency,
    line,
    money_currency,
    option,
    snapshot,
)


def test_renumbered_lines_hash_the_same() -> None:
    """An admin edit renumbers order_product_id and order_option_id: no change."""
    before = snapshot(
        lines=[line(order_product_id=1, options=[option("Колір", "Red")])]
    )
    renumbered = msgspec.structs.replace(
        before,
        lines=[
            msgspec.structs.replace(
                before.lines[0],
                order_product_id=9,
                options=[
                    msgspec.structs.replace(
                        before.lines[0].options[0], order_option_id=4
                    )
                ],
            )
        ],
    )

    assert content_hash(renumbered) == content_hash(before)


def test_date_modified_alone_is_no_change() -> None:
    """Saving an order without editing it moves only date_modified."""
    before = snapshot(order={"date_modified": "2026-12-03 18:20:55"})
    after = snapshot(order={"date_modified": "2026-12-03 19:00:00"})

    assert content_hash(after) == content_hash(before)


def test_a_changed_quantity_history_or_query_row_is_a_change() -> None:
    """What the order itself says (lines, history, its query rows) changes the hash."""
    base = snapshot()
    history = HistoryRow(
        order_history_id=7,
        order_status_id=3,
        notify=False,
        comment="",
        date_added="2026-12-04 09:00:00",
    )

    assert content_hash(snapshot(lines=[line(quantity=2)])) != content_hash(base)
    with_history = msgspec.structs.replace(base, history=[history])
    assert content_hash(with_history) != content_hash(base)
    waybill = msgspec.structs.replace(base, extras={"np": [{"ttn": "2045"}]})
    assert content_hash(waybill) != content_hash(base)


def test_shop_wide_facts_are_no_change() -> None:
    """Today's rate, settings, catalogue names and codes, languages: no change."""
    base = snapshot()
    shop_changed = msgspec.structs.replace(
        base,
        currency=currency(value="41.10000000"),
        shop={**base.shop, "config_tax": "0", "config_timezone": "UTC"},
        catalogue=Catalogue(products={50: {UKRAINIAN: "Нова назва"}}),
        languages=[Language(language_id=UKRAINIAN, code="uk-ua")],
        lines=[line(codes={"model": "TS-01", "sku": "TS-NEW"})],
    )

    assert content_hash(shop_changed) == content_hash(base)


def test_later_snapshot_is_shown_with_the_first_ones_display_facts() -> None:
    """config_tax and the currency row of the first snapshot; names of the newest."""
    first = snapshot(config_tax="0", currency_row=currency(places=2))
    renamed = Catalogue(products={50: {UKRAINIAN: "Нова назва"}})
    later = snapshot(
        config_tax="1",
        currency_row=currency(places=0, value="41.10000000"),
        catalogue=renamed,
        lines=[line(quantity=3)],
    )

    shown = shown_as_first(later, first)

    assert shown.shop == first.shop
    assert shown.currency == first.currency
    assert (shown.catalogue, shown.lines) == (renamed, later.lines)


def test_an_order_moved_to_another_currency_keeps_the_newer_row() -> None:
    """The first snapshot's row is of a currency the order no longer has."""
    first = snapshot(
        order={"currency_id": "4"}, currency_row=currency(places=0), config_tax="0"
    )
    later = snapshot(
        order={"currency_id": "3", "currency_code": "EUR"},
        currency_row=money_currency("EUR", right="€"),
    )

    shown = shown_as_first(later, first)

    assert shown.currency == later.currency
    assert shown.shop == first.shop

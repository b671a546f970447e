"""The content hash that decides whether a re-read order changed."""

import msgspec

from events.snapshot import Catalogue, content_hash
from tests.factories import line, option, snapshot


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


def test_a_changed_quantity_or_name_is_a_change() -> None:
    """What the deal shows (quantity, catalogue names) changes the hash."""
    base = snapshot()

    assert content_hash(snapshot(lines=[line(quantity=2)])) != content_hash(base)
    renamed = snapshot(catalogue=Catalogue(products={50: {2: "Нова назва"}}))
    assert content_hash(renamed) != content_hash(base)

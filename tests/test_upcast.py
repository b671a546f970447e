"""Reading stored events written under an older schema of their type.

No type has needed an upcaster yet, so these tests pretend: CatalogueLinked is
at schema version 2 (or 3), and its v1 called the article `sku`.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from events import (
    SCHEMA_VERSIONS,
    CatalogueLinked,
    DealCreated,
    DealUpdated,
    SqliteEventStore,
    StreamAppend,
    UnknownEventType,
)
from events.types import encode
from events.upcast import UPCASTERS, decode_stored
from projections.order_state import deal_after

V1_PAYLOAD = b'{"type":"CatalogueLinked","sku":"TEA-01","material_id":77}'


def sku_to_article(fields: dict[str, Any]) -> dict[str, Any]:
    fields["article"] = fields.pop("sku")
    return fields


def name_to_title(fields: dict[str, Any]) -> dict[str, Any]:
    fields["title"] = fields.pop("name", None)
    return fields


@pytest.fixture
def catalogue_linked_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMA_VERSIONS, "CatalogueLinked", 2)
    monkeypatch.setitem(UPCASTERS, ("CatalogueLinked", 1), sku_to_article)


def insert_row(path: Path, type: str, schema_version: int, payload: bytes) -> None:
    """Write a row as older code (or another program) would have."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "INSERT INTO events VALUES (1, 'article:TEA-01', 1, ?, ?, ?, ?)",
            (type, schema_version, "2024-05-01T10:00:00+00:00", payload),
        )


def test_current_payload_decodes_directly() -> None:
    """A payload at the current schema version decodes into its event."""
    event = DealCreated(marker="shop:1001", deal_id=9001, status=1)

    current = SCHEMA_VERSIONS["DealCreated"]

    assert decode_stored("DealCreated", current, encode(event)) == event


@pytest.mark.usefixtures("catalogue_linked_v2")
def test_older_payload_is_upcast() -> None:
    """A v1 payload goes through its upcaster and decodes as the current type."""
    event = decode_stored("CatalogueLinked", 1, V1_PAYLOAD)

    assert event == CatalogueLinked(article="TEA-01", material_id=77)


def test_upcasters_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A payload two versions behind goes through both upcasters, in order."""
    monkeypatch.setitem(SCHEMA_VERSIONS, "CatalogueLinked", 3)
    monkeypatch.setitem(UPCASTERS, ("CatalogueLinked", 1), sku_to_article)
    monkeypatch.setitem(UPCASTERS, ("CatalogueLinked", 2), name_to_title)
    payload = b'{"type":"CatalogueLinked","sku":"TEA-01","material_id":77,"name":"Tea"}'

    event = decode_stored("CatalogueLinked", 1, payload)

    assert event == CatalogueLinked(article="TEA-01", material_id=77, title="Tea")


def test_missing_upcaster_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older payload with no upcaster for its version cannot be read."""
    monkeypatch.setitem(SCHEMA_VERSIONS, "CatalogueLinked", 2)

    with pytest.raises(UnknownEventType, match="no upcaster from CatalogueLinked v1"):
        decode_stored("CatalogueLinked", 1, V1_PAYLOAD)


def test_newer_schema_is_unknown() -> None:
    """A payload written by newer code than this one cannot be read."""
    with pytest.raises(UnknownEventType, match="up to schema version 1"):
        decode_stored("DealRequested", 2, b'{"type":"DealRequested"}')


def test_unknown_type_names_position_and_stream() -> None:
    """An unknown type is refused with the row's position and stream."""
    with pytest.raises(UnknownEventType, match=r"position 7 in stream 'shop:1001'"):
        decode_stored("OrderVanished", 1, b"{}", position=7, stream="shop:1001")


def test_payload_that_does_not_fit_is_unknown() -> None:
    """A payload missing fields of its schema version is refused, not half-read."""
    with pytest.raises(UnknownEventType, match="does not fit"):
        decode_stored("RetryRequested", 1, b'{"type":"RetryRequested"}')


def test_payload_of_another_type_is_unknown() -> None:
    """A payload whose tag disagrees with the row's type is refused."""
    payload = encode(DealCreated(marker="shop:1001", deal_id=9001, status=1))

    with pytest.raises(UnknownEventType, match="holds a DealCreated"):
        decode_stored("CatalogueLinked", 1, payload)


async def test_store_reads_rows_of_older_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store upcasts old rows and records new ones at the current version."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    insert_row(store.path, "CatalogueLinked", 1, V1_PAYLOAD)
    monkeypatch.setitem(SCHEMA_VERSIONS, "CatalogueLinked", 2)
    monkeypatch.setitem(UPCASTERS, ("CatalogueLinked", 1), sku_to_article)

    try:
        relinked = CatalogueLinked(article="TEA-01", material_id=78)
        await store.append([StreamAppend("article:TEA-01", 1, [relinked])])
        old, new = await store.read_stream("article:TEA-01")
    finally:
        await store.close()

    assert old.event == CatalogueLinked(article="TEA-01", material_id=77)
    assert old.schema_version == 1
    assert new.event == relinked
    assert new.schema_version == 2


async def test_store_names_unreadable_row(tmp_path: Path) -> None:
    """Reading a row of an unknown type fails with its position and stream."""
    store = await SqliteEventStore.open(tmp_path / "events.db")
    insert_row(store.path, "OrderVanished", 1, b'{"type":"OrderVanished"}')

    try:
        with pytest.raises(UnknownEventType, match="position 1 in stream 'article:"):
            await store.read_all()
    finally:
        await store.close()


def test_deal_outcomes_written_before_line_ids_read_as_unknown_ids() -> None:
    """v1 DealCreated and DealUpdated payloads decode with `line_ids` None."""
    created = b'{"type":"DealCreated","marker":"shop:1","deal_id":5,"status":201}'
    updated = (
        b'{"type":"DealUpdated","marker":"shop:1","deal_id":5,"deal":{},'
        b'"changes":{"title":"A"},"status":200,"source_position":3}'
    )

    assert decode_stored("DealCreated", 1, created) == DealCreated(
        marker="shop:1", deal_id=5, status=201, line_ids=None
    )
    event = decode_stored("DealUpdated", 1, updated)
    assert isinstance(event, DealUpdated) and event.line_ids is None


def test_a_v2_comment_correction_keeps_the_lines_the_crm_had() -> None:
    """v2 recorded commented lines as sent; v3 keeps them apart, lines as before."""
    line = {"amount": 1, "product_attributes": {"sku": "NEW"}}
    updated = (
        b'{"type":"DealUpdated","marker":"shop:1","deal_id":5,"deal":'
        b'{"jobs_attributes":[{"amount":1,"product_attributes":{"sku":"NEW"}}]},'
        b'"changes":'
        b'{"comment_added":"ocsync: ..."},"status":200,"source_position":3}'
    )
    before = {"jobs_attributes": [{"amount": 1, "product_attributes": {"sku": "OLD"}}]}

    event = decode_stored("DealUpdated", 2, updated)

    assert isinstance(event, DealUpdated)
    assert event.commented_lines == [line]
    assert deal_after(before, event) == before

"""Parked orders listed and retried; deals relinked to orders from the CRM."""

from __future__ import annotations

from pathlib import Path

import pytest

from events import DealRelinked, EventStore, open_event_store
from projections.deals import CrmUnavailable
from projections.parked import (
    NothingToRetry,
    UnknownOrder,
    parked_orders,
    render_parked,
    request_retry,
)
from projections.relink import relink
from tests import factories
from tests.projection_support import Crm, events_of, place, projection, settings_for


async def test_a_refused_order_is_listed_with_its_reason(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A 422 leaves the order parked; status lists it with the CRM's words."""
    url = await crm.serve(unknown_article="refuse", catalogue=[])
    deals, _ = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await deals.run_once()

    [parked] = await parked_orders(store, settings_for(tmp_path, url))

    assert (parked.stream, parked.kind, parked.status) == ("site_a:1", "parked", 422)
    assert "TS-01" in parked.reason


async def test_a_retry_after_the_fix_sends_the_parked_order(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """retry: after the catalogue gains the item, the parked order becomes a deal."""
    refusing = await crm.serve(unknown_article="refuse", catalogue=[])
    deals, _ = projection(crm, store, tmp_path, refusing)
    await place(store, factories.snapshot())
    await deals.run_once()
    fixed = await crm.serve(
        unknown_article="refuse",
        catalogue=[{"sku": "TS-01", "title": "Футболка", "price": 15}],
    )
    deals, client = projection(crm, store, tmp_path, fixed)

    untouched = await deals.run_once()
    await request_retry(store, "site_a:1", "catalogue fixed")
    retried = await deals.run_once()

    assert untouched.created == 0
    assert retried.created == 1
    assert len([d async for d in client.list_deals()]) == 1
    assert await parked_orders(store, settings_for(tmp_path, fixed)) == []


async def test_retrying_an_unknown_order_is_an_error(store: EventStore) -> None:
    """A marker the log does not hold is refused by name."""
    with pytest.raises(UnknownOrder, match="site_a:404"):
        await request_retry(store, "site_a:404")


async def test_a_lost_log_is_relinked_and_no_second_deal_is_made(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """relink finds each deal by its marker; the re-captured order corrects it."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await place(store, factories.snapshot(order_id=2))
    await deals.run_once()

    # The log is lost: a new, empty one.
    fresh = await open_event_store("sqlite:///restored.db", tmp_path)
    try:
        result = await relink(fresh, client, settings_for(tmp_path, url))
        again = await relink(fresh, client, settings_for(tmp_path, url))
        restored, _ = projection(crm, fresh, tmp_path, url)
        await place(fresh, factories.snapshot(lines=[factories.line(quantity=2)]))
        await place(fresh, factories.snapshot(order_id=2))
        after = await restored.run_once()
        relinked = await events_of(fresh, "site_a:1")
    finally:
        await fresh.close()

    assert (result.linked, again.linked, again.already) == (2, 0, 2)
    assert isinstance(relinked[0], DealRelinked)
    assert after.created == 0
    assert len([d async for d in client.list_deals()]) == 2
    [deal] = [d async for d in client.list_deals(title_eq="№1 Техно Світ")]
    products = [job for job in deal["jobs"] if job["sku"] == "TS-01"]
    assert [job["amount"] for job in products] == [2]


async def test_a_new_log_finds_existing_deals_and_makes_no_second_one(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A fresh log over a CRM that has the deals: found by marker, nothing resent."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    # 681 x 2 against 1 361 shown: a discount of 1, read back with its kind.
    case = factories.line(product_id=51, name="Чохол", model="CASE-01")
    first = factories.snapshot(lines=[factories.line(), case])
    await place(store, first)
    await deals.run_once()

    fresh = await open_event_store("sqlite:///fresh.db", tmp_path)
    try:
        again, _ = projection(crm, fresh, tmp_path, url)
        await place(fresh, first)
        result = await again.run_once()
        events = await events_of(fresh, "site_a:1")
    finally:
        await fresh.close()

    assert (result.created, result.found, result.updated) == (0, 1, 0)
    assert [type(event).__name__ for event in events] == [
        "OrderPlaced",
        "DealRelinked",
    ]
    assert len([d async for d in client.list_deals()]) == 1


async def test_orders_the_crm_never_got_are_listed_as_pending(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The CRM down: status says which captured orders were not sent yet."""
    deals, _ = projection(crm, store, tmp_path, "http://127.0.0.1:9/v1")
    await place(store, factories.snapshot())
    await place(store, factories.snapshot(order_id=2))
    with pytest.raises(CrmUnavailable):
        await deals.run_once()

    listed = await parked_orders(store, settings_for(tmp_path, "http://127.0.0.1:9/v1"))

    assert sorted((order.stream, order.kind) for order in listed) == [
        ("site_a:1", "pending"),
        ("site_a:2", "pending"),
    ]
    assert render_parked(listed).startswith("2 captured order(s) not yet sent")


async def test_retrying_an_order_whose_deal_is_fine_is_refused(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Nothing failed: retry says so instead of pretending."""
    url = await crm.serve()
    deals, _ = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await deals.run_once()

    with pytest.raises(NothingToRetry, match="its deal 1 is in step"):
        await request_retry(store, "site_a:1")

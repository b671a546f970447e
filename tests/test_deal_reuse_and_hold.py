"""Creating a deal: reusing a known CRM client, holding unlinked articles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from events import DealCreateFailed, EventStore
from tests import factories
from tests.projection_support import Crm, events_of, place, projection


async def existing_client(client: Any, person: str, phone: str) -> int:
    """A client the CRM already has, made through a deal of its own."""
    deal_id = await client.create_deal(
        {
            "title": "Давня угода",
            "total": 1,
            "client_attributes": {"person": person, "phones": [phone]},
        }
    )
    return int((await client.get_deal(deal_id))["client"]["id"])


async def client_of_order(client: Any, title: str) -> int:
    [deal] = [d async for d in client.list_deals(title_eq=title)]
    return int((await client.get_deal(int(deal["id"])))["client"]["id"])


async def test_a_known_client_with_the_same_phone_and_name_is_reused(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """phone_and_name: the same phone and the name in another order: one card."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    known = await existing_client(client, "коваленко олена", "+380671234567")

    await place(store, factories.snapshot())
    await deals.run_once()

    assert await client_of_order(client, "№1 Техно Світ") == known


async def test_a_family_sharing_a_phone_is_not_merged(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """phone_and_name: the same phone, another name: a new client, never a merge."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    known = await existing_client(client, "Петро Коваленко", "+380671234567")

    await place(store, factories.snapshot())
    await deals.run_once()

    assert await client_of_order(client, "№1 Техно Світ") != known


async def test_client_match_phone_takes_the_phone_alone(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """client_match = "phone", the CRM's own habit: the phone decides."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url, client_match="phone")
    known = await existing_client(client, "Петро Коваленко", "+380671234567")

    await place(store, factories.snapshot())
    await deals.run_once()

    assert await client_of_order(client, "№1 Техно Світ") == known


async def test_a_client_card_typed_with_a_trunk_zero_is_found_by_phone(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A card holding `067 123 45 67` is the buyer's `+380671234567`: reused."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    known = await existing_client(client, "Олена Коваленко", "067 123 45 67")

    await place(store, factories.snapshot())
    await deals.run_once()

    assert await client_of_order(client, "№1 Техно Світ") == known


async def test_an_unlinked_article_holds_the_deal_until_the_item_exists(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """hold: no CRM item for TS-01, no deal; once the item exists, one deal."""
    empty = await crm.serve(catalogue=[])
    deals, client = projection(crm, store, tmp_path, empty, unlinked_articles="hold")
    await place(store, factories.snapshot())

    held = await deals.run_once()
    again = await deals.run_once()
    stocked = await crm.serve(
        catalogue=[{"sku": "TS-01", "title": "Футболка", "price": 15}]
    )
    deals, client = projection(crm, store, tmp_path, stocked, unlinked_articles="hold")
    released = await deals.run_once()

    failures = [
        e for e in await events_of(store, "site_a:1") if isinstance(e, DealCreateFailed)
    ]
    assert (held.held, held.created) == (1, 0)
    assert (again.held, len(failures)) == (1, 1)  # said once, not every run
    assert "TS-01" in failures[0].error and failures[0].retryable
    assert released.created == 1
    assert len([d async for d in client.list_deals()]) == 1

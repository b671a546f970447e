"""The deal projection: order events in a real log become deals in the sandbox CRM.

Every test appends snapshots to a SQLite event log and runs
`DealProjection.run_once` against the KeepinCRM sandbox served on loopback.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from structlog.testing import capture_logs

import projections.deals
from events import (
    DealCreated,
    DealCreateFailed,
    DealRequested,
    EventStore,
    OrderPlaced,
)
from events.snapshot import OrderSnapshot
from projections.deal_totals import is_service_article
from projections.deals import CHECKPOINT, CrmUnavailable
from projections.parked import parked_orders
from tests import factories
from tests.projection_support import (
    CLOSED_PORT_URL,
    MARKER_FIELD,
    Crm,
    all_deals,
    as_stored,
    deal_of,
    deals_marked,
    events_of,
    place,
    projection,
    request_deal,
    settings_for,
    with_marker,
)


def containment_filter() -> Middleware:
    """Match the custom-field filter by containment, as the live CRM's `jcont` may."""
    prefix = "q[custom_fields_jcont]["

    @web.middleware
    async def contains(
        request: web.Request,
        handler: Handler,
    ) -> web.StreamResponse:
        wanted = {
            key[len(prefix) : -1]: value
            for key, value in request.query.items()
            if key.startswith(prefix)
        }
        if request.method != "GET" or not wanted:
            return await handler(request)

        rest = {k: v for k, v in request.query.items() if not k.startswith(prefix)}
        response = await handler(
            request.clone(rel_url=request.rel_url.with_query(rest))
        )
        assert isinstance(response, web.Response) and response.text is not None
        page = json.loads(response.text)
        page["items"] = [
            deal
            for deal in page["items"]
            if all(
                any(
                    f["name"] == name and value in (f["value"] or "")
                    for f in deal["custom_fields_detailed"]
                )
                for name, value in wanted.items()
            )
        ]
        return web.json_response(page)

    return contains


def lose_answers(count: int) -> Middleware:
    """Drop the connection after the CRM stored a new deal, `count` times (C14)."""
    left = [count]

    @web.middleware
    async def drop(
        request: web.Request,
        handler: Handler,
    ) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and response.status == 201 and left[0] > 0:
            left[0] -= 1
            assert request.transport is not None
            request.transport.close()
        return response

    return drop


async def test_a_new_order_becomes_one_deal(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """OrderPlaced -> DealRequested (marker, body) -> DealCreated; checkpoint at end."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    snapshot = factories.snapshot()
    placed = await place(store, snapshot)

    result = await deals.run_once()
    placed_event, requested, created = await events_of(store, "site_a:1")
    [crm_deal] = await all_deals(client)

    assert result.created == 1
    assert isinstance(placed_event, OrderPlaced)
    assert isinstance(requested, DealRequested)
    assert requested.marker == "site_a:1"
    assert requested.source_position == placed.position
    assert requested.deal == as_stored(deal_of(snapshot, tmp_path))
    assert isinstance(created, DealCreated)
    assert created.marker == "site_a:1"
    assert created.deal_id == crm_deal["id"]
    assert created.status == 201
    assert await store.checkpoint(CHECKPOINT) == str(await store.last_position())


async def test_a_second_run_creates_nothing(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Once the deal is recorded, running again sends and appends nothing."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await deals.run_once()
    position = await store.last_position()

    again = await deals.run_once()

    assert again.created == again.found == again.parked == 0
    assert await store.last_position() == position
    assert len(await all_deals(client)) == 1


async def test_the_crm_deal_carries_the_marker_and_the_line_price_sent(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The deal read back has the marker field, the article and the price as sent."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    # Two decimal places: 15.0000 EUR at 45.37 is shown as 680.55.
    snapshot = factories.snapshot(currency_row=factories.currency(places=2))
    await place(store, snapshot)

    await deals.run_once()
    [*_, created] = await events_of(store, "site_a:1")
    crm_deal = await client.get_deal(created.deal_id)
    [job] = crm_deal["jobs"]

    assert {"name": MARKER_FIELD, "value": "site_a:1"} in crm_deal[
        "custom_fields_detailed"
    ]
    assert job["sku"] == "TS-01"
    assert Decimal(str(job["price"])) == Decimal("680.55")
    sent = deal_of(snapshot, tmp_path)["jobs_attributes"][0]["product_attributes"]
    assert Decimal(str(job["price"])) == sent["price"]


async def test_a_refused_deal_is_parked_and_the_next_order_still_goes(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A 422 parks the order (not retryable, with the reason); the next is created."""
    known = [{"sku": "CASE-01", "title": "Чохол для смартфона", "price": 100}]
    url = await crm.serve(unknown_article="refuse", catalogue=known)
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot(order_id=1))
    case = factories.line(product_id=51, name="Чохол для смартфона", model="CASE-01")
    await place(store, factories.snapshot(order_id=2, lines=[case]))

    result = await deals.run_once()
    *_, failed = await events_of(store, "site_a:1")
    *_, created = await events_of(store, "site_a:2")

    assert (result.parked, result.created) == (1, 1)
    assert isinstance(failed, DealCreateFailed)
    assert failed.marker == "site_a:1"
    assert failed.status == 422
    assert failed.retryable is False
    assert "unknown article 'TS-01'" in failed.error
    assert isinstance(created, DealCreated)
    assert await deals_marked(client, "site_a:1") == []
    assert await deals_marked(client, "site_a:2") == [created.deal_id]


async def test_a_second_run_leaves_a_parked_order_alone(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A refused order is not sent again by the next run."""
    url = await crm.serve(unknown_article="refuse", catalogue=[])
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await deals.run_once()
    before = await events_of(store, "site_a:1")

    again = await deals.run_once()

    assert again.parked == again.created == 0
    assert await events_of(store, "site_a:1") == before
    assert await all_deals(client) == []


@pytest.mark.parametrize(
    ("broken", "field_name"),
    [
        pytest.param(
            factories.snapshot(order_id=1, with_currency=False),
            "currency_id",
            id="no-currency-row",
        ),
        pytest.param(
            factories.snapshot(order_id=1, lines=[factories.line(quantity=0)]),
            "order_product.quantity",
            id="quantity-zero",
        ),
    ],
)
async def test_an_order_that_cannot_be_mapped_is_parked_and_others_go_on(
    crm: Crm,
    store: EventStore,
    tmp_path: Path,
    broken: OrderSnapshot,
    field_name: str,
) -> None:
    """A mapping error parks the order with status 0 naming the field; no request."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, broken)
    await place(store, factories.snapshot(order_id=2))

    result = await deals.run_once()
    placed, failed = await events_of(store, "site_a:1")
    *_, created = await events_of(store, "site_a:2")

    assert (result.parked, result.created) == (1, 1)
    assert isinstance(placed, OrderPlaced)
    assert isinstance(failed, DealCreateFailed)
    assert failed.status == 0
    assert failed.retryable is False
    assert f"field {field_name}" in failed.error
    assert isinstance(created, DealCreated)
    assert [deal["id"] for deal in await all_deals(client)] == [created.deal_id]


async def test_an_unexpected_error_parks_that_order_alone(
    crm: Crm, store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug met by one order parks it, logged with its traceback; others go on."""
    mapping = projections.deals.deal_with_warnings

    def fails_for_order_2(snapshot: OrderSnapshot, *args: Any) -> Any:
        if snapshot.order_id == 2:
            raise ZeroDivisionError("a bug in the mapping")
        return mapping(snapshot, *args)

    monkeypatch.setattr(projections.deals, "deal_with_warnings", fails_for_order_2)
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    for order_id in (1, 2, 3):
        await place(store, factories.snapshot(order_id=order_id))

    with capture_logs() as logs:
        result = await deals.run_once()

    assert (result.created, result.parked) == (2, 1)
    *_, failed = await events_of(store, "site_a:2")
    assert isinstance(failed, DealCreateFailed)
    assert failed.retryable is False
    assert failed.error.startswith("site site_a order 2: internal error:")
    assert "a bug in the mapping" in failed.error
    [line] = [
        line for line in logs if line["event"] == "order failed with an internal error"
    ]
    assert (line["log_level"], line["exc_info"]) == ("error", True)
    for order_id in (1, 3):
        *_, created = await events_of(store, f"site_a:{order_id}")
        assert isinstance(created, DealCreated)
        assert await deals_marked(client, f"site_a:{order_id}") == [created.deal_id]
    assert await deals_marked(client, "site_a:2") == []
    parked = await parked_orders(store, settings_for(tmp_path, url))
    assert [(order.stream, order.kind) for order in parked] == [("site_a:2", "parked")]


async def test_a_lost_answer_is_settled_by_the_deal_the_crm_already_has(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """C14: a request with no answer and a deal with its marker: that deal is it."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    snapshot = factories.snapshot()
    placed = await place(store, snapshot)
    deal = deal_of(snapshot, tmp_path)
    await request_deal(store, placed, deal)
    existing = await client.create_deal(deal)

    result = await deals.run_once()
    *_, created = await events_of(store, "site_a:1")

    assert (result.found, result.created) == (1, 0)
    assert isinstance(created, DealCreated)
    assert created.deal_id == existing
    assert created.status == 200
    assert await deals_marked(client, "site_a:1") == [existing]
    assert await store.checkpoint(CHECKPOINT) == str(await store.last_position())


async def test_a_lost_answer_is_settled_even_when_the_newer_snapshot_cannot_map(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """C14: the CRM has the deal; a later snapshot without currency does not park it."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    snapshot = factories.snapshot()
    placed = await place(store, snapshot)
    deal = deal_of(snapshot, tmp_path)
    await request_deal(store, placed, deal)
    existing = await client.create_deal(deal)
    # Captured again after the shop deleted the order's currency row.
    await place(store, factories.snapshot(with_currency=False))

    result = await deals.run_once()
    *_, outcome = await events_of(store, "site_a:1")

    assert (result.found, result.parked) == (1, 0)
    assert outcome == DealCreated(
        marker="site_a:1", deal_id=existing, status=200, found=True
    )
    assert await deals_marked(client, "site_a:1") == [existing]


async def test_a_request_with_no_answer_and_no_deal_creates_one(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A request the CRM never got: looked up, not found, created exactly once."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    snapshot = factories.snapshot()
    placed = await place(store, snapshot)
    await request_deal(store, placed, deal_of(snapshot, tmp_path))

    result = await deals.run_once()
    *_, created = await events_of(store, "site_a:1")

    assert (result.found, result.created) == (0, 1)
    assert isinstance(created, DealCreated)
    assert created.status == 201
    assert await deals_marked(client, "site_a:1") == [created.deal_id]


async def test_a_connection_dropped_after_the_crm_stored_the_deal(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """C14 for real: the answer is lost, the next pass finds the stored deal."""
    url = await crm.serve(middlewares=[lose_answers(1)])
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())

    first = await deals.run_once()
    *_, lost = await events_of(store, "site_a:1")
    [stored] = await deals_marked(client, "site_a:1")
    result = await deals.run_once()
    *_, created = await events_of(store, "site_a:1")

    assert first.failed == ["site_a:1"]  # the CRM answers: set aside, not stuck
    assert isinstance(lost, DealCreateFailed)
    assert (lost.status, lost.retryable) == (0, True)
    assert (result.found, result.created) == (1, 0)
    assert isinstance(created, DealCreated)
    assert created.deal_id == stored
    assert await deals_marked(client, "site_a:1") == [stored]


async def test_a_crash_before_the_answer_then_a_change_corrects_the_deal_found(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Killed after the CRM stored the deal; the order changed: found, corrected."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    first = factories.snapshot(lines=[factories.line(quantity=1)])
    placed = await place(store, first)
    request = deal_of(first, tmp_path)
    await request_deal(store, placed, request)
    stored = await client.create_deal(request)  # the answer never reached the log
    await place(store, factories.snapshot(lines=[factories.line(quantity=3)]))

    result = await deals.run_once()
    [job, *_] = (await client.get_deal(stored))["jobs"]

    assert (result.found, result.created, result.updated) == (1, 0, 1)
    assert await deals_marked(client, "site_a:1") == [stored]
    assert Decimal(str(job["amount"])) == 3


async def test_a_marker_that_only_contains_the_orders_is_not_taken(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A deal marked site_a:12 is not order site_a:1's, even if the filter says so."""
    url = await crm.serve(middlewares=[containment_filter()])
    deals, client = projection(crm, store, tmp_path, url)
    other = with_marker(deal_of(factories.snapshot(order_id=12), tmp_path), "site_a:12")
    other_id = await client.create_deal(other)
    snapshot = factories.snapshot(order_id=1)
    placed = await place(store, snapshot)
    await request_deal(store, placed, deal_of(snapshot, tmp_path))

    result = await deals.run_once()
    *_, created = await events_of(store, "site_a:1")

    assert (result.found, result.created) == (0, 1)
    assert isinstance(created, DealCreated)
    assert created.deal_id != other_id
    # The loose filter does offer both deals for site_a:1.
    assert await deals_marked(client, "site_a:1") == [other_id, created.deal_id]


async def test_an_unreachable_crm_stops_the_run_and_the_order_goes_later(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """CrmUnavailable, checkpoint before the order; the next run creates it once."""
    down, _ = projection(crm, store, tmp_path, CLOSED_PORT_URL)
    placed = await place(store, factories.snapshot())

    with pytest.raises(CrmUnavailable):
        await down.run_once()
    checkpoint = int(await store.checkpoint(CHECKPOINT) or 0)
    url = await crm.serve()
    up, client = projection(crm, store, tmp_path, url)
    result = await up.run_once()
    *_, created = await events_of(store, "site_a:1")

    assert checkpoint < placed.position
    assert result.created == 1
    assert isinstance(created, DealCreated)
    assert await deals_marked(client, "site_a:1") == [created.deal_id]
    assert len(await all_deals(client)) == 1


async def test_only_the_newest_snapshot_becomes_a_deal(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """OrderPlaced then OrderChanged before any run: one deal, from the newer."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot(lines=[factories.line(quantity=1)]))
    newer = factories.snapshot(lines=[factories.line(quantity=3)])
    changed = await place(store, newer)

    result = await deals.run_once()
    requests = [
        event
        for event in await events_of(store, "site_a:1")
        if isinstance(event, DealRequested)
    ]
    [crm_deal] = await all_deals(client)
    [job, *service] = (await client.get_deal(crm_deal["id"]))["jobs"]

    assert result.created == 1
    assert all(is_service_article(line["sku"]) for line in service)
    assert [request.source_position for request in requests] == [changed.position]
    assert Decimal(str(job["amount"])) == 3


async def test_a_change_to_an_order_with_a_deal_creates_nothing(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """An OrderChanged after DealCreated corrects that deal, never a second one."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await deals.run_once()
    await place(store, factories.snapshot(lines=[factories.line(quantity=2)]))
    changed_at = await store.last_position()

    result = await deals.run_once()

    assert (result.created, result.updated) == (0, 1)
    assert await store.last_position() == changed_at + 1
    assert await store.checkpoint(CHECKPOINT) == str(changed_at + 1)
    assert len(await all_deals(client)) == 1


async def test_one_article_on_two_sites_is_one_catalogue_item(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """C12: sku empty, model AC-30 on both sites: two deals, one catalogue item."""
    url = await crm.serve(unknown_article="create")
    # The article is the sku, falling back to the model when the sku is empty.
    deals, client = projection(crm, store, tmp_path, url, article_fields=("sku",))
    monitor = factories.line(
        product_id=42,
        name='Монітор Apple Cinema 30"',
        model="AC-30",
        codes={"model": "AC-30", "sku": ""},
    )
    first = factories.snapshot(lines=[monitor])
    await place(store, first)
    await place(store, msgspec.structs.replace(first, site="site_b"))

    result = await deals.run_once()
    skus = [
        job["sku"]
        for deal in await all_deals(client)
        for job in (await client.get_deal(deal["id"]))["jobs"]
    ]
    materials = [item async for item in client.list_materials()]

    assert result.created == 2
    assert skus == ["AC-30", "AC-30"]
    assert [item["sku"] for item in materials] == ["AC-30"]


def failing_for(title: str, failing: list[bool]) -> Middleware:
    """Answer a bare 500 to every create of the deal with this title, while on."""

    @web.middleware
    async def refuse(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            failing[0]
            and request.method == "POST"
            and request.path.endswith("/agreements")
        ):
            body = await request.json()
            if body.get("title") == title:
                return web.Response(status=500, text="Internal Server Error")
        return await handler(request)

    return refuse


async def test_one_deal_the_crm_keeps_failing_holds_up_no_other_order(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A bare 500 for one deal while the CRM is up: the others go on, it waits."""
    failing = [True]
    url = await crm.serve(middlewares=[failing_for("№1 Техно Світ", failing)])
    deals, client = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())
    await place(store, factories.snapshot(order_id=2))

    first = await deals.run_once()
    second = await deals.run_once()
    failing[0] = False
    mended = await deals.run_once()
    failures = [
        event
        for event in await events_of(store, "site_a:1")
        if isinstance(event, DealCreateFailed)
    ]

    assert (first.created, first.failed) == (1, ["site_a:1"])
    assert (second.created, second.failed) == (0, ["site_a:1"])
    assert [f.retryable for f in failures] == [True, True]  # waiting, never parked
    assert mended.created == 1
    assert len(await all_deals(client)) == 2


async def test_a_lost_answer_falls_back_to_the_title_when_no_marker_matches(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The marker filter finds nothing; the one deal with the exact title is it."""
    url = await crm.serve()
    deals, client = projection(crm, store, tmp_path, url)
    placed = await place(store, factories.snapshot())
    deal = deal_of(factories.snapshot(), tmp_path)
    await request_deal(store, placed, deal)
    # The CRM made the deal, but its marker field did not stick.
    unmarked = {**deal, "custom_fields": []}
    existing = await client.create_deal(unmarked)

    result = await deals.run_once()
    [created] = [
        event
        for event in await events_of(store, "site_a:1")
        if isinstance(event, DealCreated)
    ]

    assert (result.found, result.created) == (1, 0)
    assert created.deal_id == existing
    assert len(await all_deals(client)) == 1

"""What the CRM really answered, in the log and the audit: status and attempts.

A create that took a second attempt says so; a deal found by its marker after
a lost answer is recorded as found, not as created.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from events import DealCreated, EventStore
from events.upcast import decode_stored
from projections.audit import audit_order, render_audit
from projections.keepincrm.transport import Answered
from tests import factories
from tests.projection_support import Crm, events_of, place, projection
from tests.test_deal_projection import lose_answers


def busy_once(method: str) -> Middleware:
    """Answer the first `method` request with a 429 asking for no wait."""
    left = [1]

    @web.middleware
    async def busy(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == method and left[0] > 0:
            left[0] -= 1
            return web.json_response(
                {"message": "Too many requests"},
                status=429,
                headers={"Retry-After": "0"},
            )
        return await handler(request)

    return busy


async def test_the_client_returns_the_status_and_the_attempts_it_took(
    crm: Crm,
) -> None:
    """A POST refused once with 429 comes back 201 on attempt 2; a PATCH 200 on 1."""
    client = crm.client(await crm.serve(middlewares=[busy_once("POST")]))

    created = await client.create_deal_answered({"title": "Замовлення", "total": 1})
    patched = await client.update_deal(created.deal_id, {"comment": "Оплачено"})

    assert (created.status, created.attempts) == (201, 2)
    assert patched == Answered(status=200, attempts=1)


async def test_a_create_records_the_crms_status_and_attempts(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """DealCreated and the audit carry the real answer: 201, attempt 2."""
    url = await crm.serve(middlewares=[busy_once("POST")])
    deals, _ = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())

    await deals.run_once()
    [created] = [
        e for e in await events_of(store, "site_a:1") if isinstance(e, DealCreated)
    ]
    audit = await audit_order(store, "site_a:1", factories.deal_settings())
    assert audit is not None

    assert (created.status, created.attempts, created.found) == (201, 2, False)
    assert f"deal {created.deal_id} created (status 201, attempt 2)" in render_audit(
        audit
    )


async def test_a_deal_found_by_its_marker_is_shown_as_found(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The create's answer lost: the next pass records the deal as found."""
    url = await crm.serve(middlewares=[lose_answers(1)])
    deals, _ = projection(crm, store, tmp_path, url)
    await place(store, factories.snapshot())

    await deals.run_once()
    await deals.run_once()
    [created] = [
        e for e in await events_of(store, "site_a:1") if isinstance(e, DealCreated)
    ]
    audit = await audit_order(store, "site_a:1", factories.deal_settings())
    assert audit is not None

    assert created.found
    assert f"deal {created.deal_id} found in the CRM by its marker" in render_audit(
        audit
    )


def test_a_v2_marker_match_reads_as_found() -> None:
    """v2 wrote 200 only for a deal found by its marker: it upcasts as found."""
    found = b'{"type":"DealCreated","marker":"shop:1","deal_id":5,"status":200}'
    made = b'{"type":"DealCreated","marker":"shop:1","deal_id":6,"status":201}'

    assert decode_stored("DealCreated", 2, found) == DealCreated(
        marker="shop:1", deal_id=5, status=200, found=True
    )
    assert decode_stored("DealCreated", 2, made) == DealCreated(
        marker="shop:1", deal_id=6, status=201
    )

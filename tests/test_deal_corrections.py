"""Orders edited after their deal exists: the deal is corrected in place.

Status changes move the stage through the site's map; a stage a manager moved
by hand, and lines a manager added, are left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from daemon.settings import CaptureSettings, CrmSettings, EventLogSettings, Settings
from events import DealUpdated, DealUpdateFailed, EventStore
from events.snapshot import OrderSnapshot
from projections.audit import audit_order, render_audit_json
from projections.deal_corrections import ocsync_lines
from projections.deal_totals import is_service_article
from projections.deals import CrmUnavailable, DealProjection
from projections.keepincrm.client import KeepinCRMClient
from projections.parked import parked_orders
from projections.replay import replay_deals
from projections.replay_report import render_deals_replay
from tests import factories
from tests.projection_support import TOKEN, Crm, events_of, place

STAGES = {"1": 101, "2": 102, "3": 103, "7": 107}


def corrections_settings(
    tmp_path: Path, url: str, deals: dict[str, Any] | None = None, **site: Any
) -> Settings:
    values: dict[str, Any] = {"stages": STAGES, "failed_statuses": (7,)}
    values.update(site)
    return Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url=url, token=TOKEN),
        capture=CaptureSettings(),
        deals=factories.deal_settings(client_match="never", **(deals or {})),
        sites=[factories.site(**values)],
        databases={},
    )


async def synced(
    crm: Crm,
    store: EventStore,
    tmp_path: Path,
    snapshot: OrderSnapshot,
    deals: dict[str, Any] | None = None,
    **site: Any,
) -> tuple[DealProjection, KeepinCRMClient, int]:
    """A deal already made for the snapshot; the projection and its deal id."""
    url = await crm.serve()
    client = crm.client(url)
    settings = corrections_settings(tmp_path, url, deals, **site)
    projection = DealProjection(store, client, settings)
    await place(store, snapshot)
    await projection.run_once()
    [summary] = [deal async for deal in client.list_deals()]
    return projection, client, int(summary["id"])


def products(deal: dict[str, Any]) -> list[tuple[str, int]]:
    """The deal's lines but shipping, tax and rounding: (article, quantity)."""
    return [
        (job["sku"], job["amount"])
        for job in deal["jobs"]
        if not is_service_article(job["sku"])
    ]


def with_status(snapshot: OrderSnapshot, status: int, **order: str) -> OrderSnapshot:
    columns = {**snapshot.order, "order_status_id": str(status), **order}
    return factories.snapshot(
        lines=list(snapshot.lines), order=columns, total=snapshot.order["total"] or ""
    )


async def test_a_new_deal_starts_at_the_stage_of_its_status(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Status 1 maps to stage 101 at creation."""
    _, client, deal_id = await synced(crm, store, tmp_path, factories.snapshot())

    deal = await client.get_deal(deal_id)

    assert deal["stage"]["id"] == 101


async def test_edited_lines_replace_the_deals_lines_without_duplicates(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Quantity 1 -> 3 and a line added: the deal shows exactly the new lines."""
    deals, client, deal_id = await synced(crm, store, tmp_path, factories.snapshot())
    case = factories.line(product_id=51, name="Чохол", model="CASE-01")
    edited = factories.snapshot(lines=[factories.line(quantity=3), case])

    await place(store, edited)
    result = await deals.run_once()
    deal = await client.get_deal(deal_id)

    assert result.updated == 1
    assert products(deal) == [("TS-01", 3), ("CASE-01", 1)]
    assert len([d async for d in client.list_deals()]) == 1


async def test_an_edit_that_changes_nothing_for_the_deal_sends_nothing(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """A new snapshot differing only in a column the deal does not show: no PATCH."""
    original = factories.snapshot()
    deals, _, _ = await synced(crm, store, tmp_path, original)
    before = await store.last_position()

    await place(store, factories.snapshot(order={"user_agent": "Mozilla/6.0"}))
    result = await deals.run_once()

    assert (result.updated, result.unchanged) == (0, 1)
    assert await store.last_position() == before + 1  # the OrderChanged alone


async def test_a_status_change_moves_the_stage_and_is_recorded(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """C10's other half: status 1 -> 3 moves the deal to stage 103."""
    original = factories.snapshot()
    deals, client, deal_id = await synced(crm, store, tmp_path, original)

    await place(store, with_status(original, 3))
    await deals.run_once()
    deal = await client.get_deal(deal_id)
    update = [
        e for e in await events_of(store, "site_a:1") if isinstance(e, DealUpdated)
    ]

    assert deal["stage"]["id"] == 103
    assert update[-1].changes == {"stage_id": 103}


async def test_a_stage_moved_by_a_manager_stays_when_only_lines_change(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """ocsync moves the stage only when the shop's status changes."""
    original = factories.snapshot()
    deals, client, deal_id = await synced(crm, store, tmp_path, original)
    await client.update_deal(deal_id, {"stage_id": 150})

    await place(store, factories.snapshot(lines=[factories.line(quantity=2)]))
    await deals.run_once()
    deal = await client.get_deal(deal_id)

    assert deal["stage"]["id"] == 150
    assert deal["jobs"][0]["amount"] == 2


async def test_a_cancel_status_closes_the_deal_as_failed(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Status 7 (a failed status) moves to its stage and closes the deal failed."""
    original = factories.snapshot()
    deals, client, deal_id = await synced(crm, store, tmp_path, original)

    await place(store, with_status(original, 7))
    await deals.run_once()
    deal = await client.get_deal(deal_id)

    assert (deal["stage"]["id"], deal["result"]) == (107, "failed")


async def test_lines_a_manager_added_stay(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Only lines ocsync sent are replaced; a hand-made line survives the edit."""
    deals, client, deal_id = await synced(crm, store, tmp_path, factories.snapshot())
    extra = {
        "amount": 1,
        "title": "Монтаж",
        "product_attributes": {"sku": "SERVICE-1", "title": "Монтаж", "price": 100},
    }
    await client.update_deal(deal_id, {"jobs_attributes": [extra]})

    await place(store, factories.snapshot(lines=[factories.line(quantity=4)]))
    await deals.run_once()
    deal = await client.get_deal(deal_id)

    assert sorted(products(deal)) == [("SERVICE-1", 1), ("TS-01", 4)]


async def test_running_again_after_a_correction_sends_nothing(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The correction is remembered: a second run finds nothing to change."""
    deals, _, _ = await synced(crm, store, tmp_path, factories.snapshot())
    await place(store, factories.snapshot(lines=[factories.line(quantity=2)]))
    await deals.run_once()
    after_first = await store.last_position()

    result = await deals.run_once()

    assert result.updated == 0
    assert await store.last_position() == after_first


async def test_a_change_to_an_unmapped_status_leaves_the_stage(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Status 1 -> 5 (not in the map): the stage a manager chose stays."""
    original = factories.snapshot()
    deals, client, deal_id = await synced(crm, store, tmp_path, original, stage_id=100)
    await client.update_deal(deal_id, {"stage_id": 150})

    await place(store, with_status(original, 5))
    await deals.run_once()
    deal = await client.get_deal(deal_id)

    assert deal["stage"]["id"] == 150


# An order line whose sku and model differ: the article follows the setting.
SKU_LINE = factories.line(codes={"model": "TS-01", "sku": "TS-SKU"})


async def test_a_managers_line_with_ocsyncs_article_survives_a_replay(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """sku -> model: ocsync's TS-SKU line is replaced, the manager's TS-SKU stays."""
    snapshot = factories.snapshot(lines=[SKU_LINE])
    _, client, deal_id = await synced(
        crm, store, tmp_path, snapshot, {"article_fields": ("sku",)}
    )
    gift = {
        "amount": 1,
        "title": "Футболка в подарунок",
        "product_attributes": {"sku": "TS-SKU", "title": "Футболка", "price": 0},
    }
    await client.update_deal(deal_id, {"jobs_attributes": [gift]})
    url = crm.servers[0].make_url("/v1")
    fixed = corrections_settings(tmp_path, str(url), {"article_fields": ("model",)})

    result = await replay_deals(store, fixed, client)
    deal = await client.get_deal(deal_id)

    assert result.changed == 1
    assert sorted(
        (job["sku"], job["title"])
        for job in deal["jobs"]
        if not is_service_article(job["sku"])
    ) == [("TS-01", "Футболка з логотипом"), ("TS-SKU", "Футболка в подарунок")]


def test_without_recorded_ids_only_as_many_lines_as_were_sent_are_ocsyncs() -> None:
    """No ids known: lines holding what ocsync sent, one per line sent, are its own."""
    sent = [
        {
            "amount": 2,
            "title": "Футболка",
            "product_attributes": {
                "sku": "TS-01",
                "title": "Футболка",
                "price": "15.00",
            },
        }
    ]
    current = [
        {"id": 1, "sku": "TS-01", "title": "Футболка", "amount": 2, "price": 15},
        {"id": 2, "sku": "TS-01", "title": "Футболка", "amount": 2, "price": 15},
        {"id": 3, "sku": "TS-01", "title": "Футболка", "amount": 1, "price": 0},
    ]

    assert ocsync_lines(current, None, sent, []) == [1]
    assert ocsync_lines(current, [2], sent, []) == [2]


@web.middleware
async def jobs_without_ids(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Answer deals in the read shape of the API notes: lines carry no `id`."""
    response = await handler(request)
    if request.method != "GET" or not isinstance(response, web.Response):
        return response
    assert response.body is not None and isinstance(response.body, bytes)
    shown = json.loads(response.body)
    if isinstance(shown, dict) and isinstance(shown.get("jobs"), list):
        for job in shown["jobs"]:
            job.pop("id", None)
    return web.json_response(shown, status=response.status)


async def test_lines_without_ids_refuse_the_correction_and_the_run_goes_on(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """No jobs[].id: the correction is parked, naming the deal and the way out."""
    url = await crm.serve(middlewares=[jobs_without_ids])
    client = crm.client(url)
    settings = corrections_settings(tmp_path, url)
    deals = DealProjection(store, client, settings)
    await place(store, factories.snapshot())
    await deals.run_once()
    [summary] = [deal async for deal in client.list_deals()]

    await place(store, factories.snapshot(lines=[factories.line(quantity=2)]))
    await place(store, factories.snapshot(order_id=2))
    result = await deals.run_once()
    deal = await client.get_deal(int(summary["id"]))
    [failure] = [
        e for e in await events_of(store, "site_a:1") if isinstance(e, DealUpdateFailed)
    ]
    [parked] = await parked_orders(store, settings)

    assert (result.parked, result.created) == (1, 1)
    assert products(deal) == [("TS-01", 1)]
    assert f"site_a:1: deal {summary['id']}" in failure.error
    assert 'deals.line_update = "comment"' in failure.error
    assert not failure.retryable
    assert (parked.stream, parked.kind) == ("site_a:1", "correction")


async def test_commented_lines_are_still_corrected_by_a_later_replace_replay(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """comment, comment again (nothing sent), then replace: the lines are right."""
    snapshot = factories.snapshot(lines=[SKU_LINE])
    _, client, deal_id = await synced(
        crm, store, tmp_path, snapshot, {"article_fields": ("sku",)}
    )
    url = str(crm.servers[0].make_url("/v1"))

    def fixed(line_update: str) -> Settings:
        deals = {"article_fields": ("model",), "line_update": line_update}
        return corrections_settings(tmp_path, url, deals)

    commented = await replay_deals(store, fixed("comment"), client)
    after_comment = await client.get_deal(deal_id)
    position = await store.last_position()
    again = await replay_deals(store, fixed("comment"), client)
    unchanged_position = await store.last_position()
    replaced = await replay_deals(store, fixed("replace"), client)
    after_replace = await client.get_deal(deal_id)

    assert commented.changed == 1
    assert products(after_comment) == [("TS-SKU", 1)]
    assert len(after_comment["comments"]) == 1
    assert (again.changed, unchanged_position) == (0, position)
    assert replaced.changed == 1
    assert products(after_replace) == [("TS-01", 1)]
    assert len(after_replace["comments"]) == 1


async def test_a_fixed_stage_map_moves_a_deal_still_at_ocsyncs_stage(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Status 1 mapped 101 -> 111: the replay moves the deal, once."""
    _, client, deal_id = await synced(crm, store, tmp_path, factories.snapshot())
    url = str(crm.servers[0].make_url("/v1"))
    fixed = corrections_settings(tmp_path, url, stages={**STAGES, "1": 111})

    planned = await replay_deals(store, fixed, client, dry_run=True)
    moved = await replay_deals(store, fixed, client)
    again = await replay_deals(store, fixed, client)
    deal = await client.get_deal(deal_id)

    assert "stage_id: 101 -> 111" in render_deals_replay(planned)
    assert (moved.changed, again.changed) == (1, 0)
    assert deal["stage"]["id"] == 111


async def test_a_fixed_stage_map_leaves_a_stage_a_manager_moved(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """The manager moved the deal to 150: the replay leaves it and says why."""
    _, client, deal_id = await synced(crm, store, tmp_path, factories.snapshot())
    await client.update_deal(deal_id, {"stage_id": 150})
    url = str(crm.servers[0].make_url("/v1"))
    fixed = corrections_settings(tmp_path, url, stages={**STAGES, "1": 111})

    planned = await replay_deals(store, fixed, client, dry_run=True)
    replayed = await replay_deals(store, fixed, client)
    deal = await client.get_deal(deal_id)

    assert "stage left: moved by a manager" in render_deals_replay(planned)
    assert [left.stream for left in replayed.stages_left] == ["site_a:1"]
    assert (replayed.changed, deal["stage"]["id"]) == (0, 150)


def failing_patches(failing: list[bool]) -> Middleware:
    """Answer PATCH with 503 while `failing[0]` is set."""

    @web.middleware
    async def fail(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "PATCH" and failing[0]:
            return web.json_response({"message": "busy"}, status=503)
        return await handler(request)

    return fail


async def test_audit_json_shows_the_lines_sent_and_a_correction_that_failed(
    crm: Crm, store: EventStore, tmp_path: Path
) -> None:
    """Removed ids and added lines of the PATCH; a 503 during replay is recorded."""
    failing = [False]
    url = await crm.serve(middlewares=[failing_patches(failing)])
    client = crm.client(url)
    first = corrections_settings(tmp_path, url, {"article_fields": ("sku",)})
    await place(store, factories.snapshot(lines=[SKU_LINE]))
    await DealProjection(store, client, first).run_once()
    [summary] = [deal async for deal in client.list_deals()]
    created_ids = [job["id"] for job in (await client.get_deal(summary["id"]))["jobs"]]
    fixed = corrections_settings(tmp_path, url, {"article_fields": ("model",)})

    await replay_deals(store, fixed, client)
    failing[0] = True
    moved_source = corrections_settings(
        tmp_path, url, {"article_fields": ("model",)}, source_id=99
    )
    with pytest.raises(CrmUnavailable):
        await replay_deals(store, moved_source, client)
    audit = await audit_order(store, "site_a:1", fixed.deals)
    assert audit is not None
    entries = json.loads(render_audit_json(audit))["entries"]

    [corrected] = [e for e in entries if e["kind"] == "correction"]
    assert corrected["removed_line_ids"] == created_ids
    added = [line.split(" × ")[0] for line in corrected["added_lines"]]
    assert "TS-01" in added and "TS-SKU" not in added
    [failed] = [e for e in entries if e["kind"] == "correction_failure"]
    assert failed["status"] == 503 and failed["deal_id"] == summary["id"]

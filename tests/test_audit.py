"""`ocsync audit`: one order's story read back from the log, as text or JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec

from events import (
    DealCreated,
    DealCreateFailed,
    DealRelinked,
    DealRequested,
    Event,
    EventStore,
    RetryRequested,
    StreamAppend,
)
from events.snapshot import Catalogue, HistoryRow
from projections.audit import audit_order, render_audit
from tests import factories
from tests.conftest import OpenCartShop
from tests.e2e_support import SandboxCrm
from tests.projection_support import place
from tests.test_replay import ocsync, synced


async def test_audit_json_tells_a_changed_order_from_capture_to_correction(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """Snapshot, request, answer, changed snapshot, correction: times and positions."""
    config = await synced(shops, sandbox.url, tmp_path, "model")
    await shops["site_a"].execute(
        "UPDATE `oc_order` SET shipping_city = 'Бровари', date_modified = NOW()"
        " WHERE order_id = 1"
    )
    second = await ocsync(config, "run", "--once")
    assert second.code == 0, second.err

    ran = await ocsync(config, "audit", "site_a:1", "--json")
    audit = json.loads(ran.out)

    assert ran.code == 0, ran.err
    assert set(audit) == {"stream", "site", "order_id", "deal_id", "entries"}
    assert (audit["stream"], audit["site"], audit["order_id"]) == (
        "site_a:1",
        "site_a",
        1,
    )
    entries = audit["entries"]
    assert [(e["type"], e["kind"]) for e in entries] == [
        ("OrderPlaced", "snapshot"),
        ("DealRequested", "request"),
        ("DealCreated", "answer"),
        ("OrderChanged", "snapshot"),
        ("DealUpdated", "correction"),
    ]
    positions = [entry["position"] for entry in entries]
    assert positions == sorted(positions)
    for entry in entries:
        assert dt.datetime.fromisoformat(entry["recorded_at"]).tzinfo is not None
        assert entry["summary"]

    placed, _, created, changed, corrected = entries
    assert created["deal_id"] == audit["deal_id"] and created["status"] == 201
    assert placed["changes"] == []
    assert [line["article"] for line in placed["lines"]] == ["TS-01", "CASE-01"]
    assert {
        "part": "order",
        "field": "shipping_city",
        "old": "Київ",
        "new": "Бровари",
    } in changed["changes"]
    assert corrected["deal_id"] == audit["deal_id"]
    assert corrected["source_position"] == changed["position"]
    assert corrected["fields"]["custom_fields.field_8"] == {
        "old": "Київ",
        "new": "Бровари",
    }


async def test_a_request_shows_the_discount_that_makes_its_total(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """site_a #3: lines 4 469, coupon: the request says total 4033 after 436 off."""
    config = await synced(shops, sandbox.url, tmp_path, "model")

    ran = await ocsync(config, "audit", "site_a:3", "--json")
    [request] = [e for e in json.loads(ran.out)["entries"] if e["kind"] == "request"]

    assert ran.code == 0, ran.err
    assert (request["total"], request["discount"]) == ("4033", "436")  # exact
    assert "total 4033 UAH after a discount of 436 UAH" in request["summary"]


async def test_an_unknown_order_exits_1_and_says_so(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """No such order: exit 1; a catalogue stream or a bare number: exit 2."""
    config = await synced(shops, sandbox.url, tmp_path, "model")

    missing = await ocsync(config, "audit", "site_a:404")
    article = await ocsync(config, "audit", "article:TS-01", "--json")
    unsplit = await ocsync(config, "audit", "17")

    assert missing.code == 1, missing.err
    assert "no order 'site_a:404' in the event log" in missing.err
    # A catalogue stream is no order; `17` names no site at all.
    assert article.code == 2 and "'article:TS-01' is not SITE:ORDER_ID" in article.err
    assert unsplit.code == 2 and "'17' is not SITE:ORDER_ID" in unsplit.err
    assert (missing.out, article.out, unsplit.out) == ("", "", "")


async def test_a_timeline_lists_changes_failures_and_the_deal(
    store: EventStore,
) -> None:
    """Lines, status, totals and history compared; a refusal and a retry shown."""
    statuses = {1: {2: "Очікує обробки"}, 2: {2: "В обробці"}}
    first = factories.snapshot(catalogue=Catalogue(order_statuses=statuses))
    placed = await place(store, first)
    await _append(
        store,
        DealRequested(marker="site_a:1", deal={"title": "№1"}, source_position=1),
        DealCreateFailed(
            marker="site_a:1", status=422, error="phones: invalid", retryable=False
        ),
        RetryRequested(marker="site_a:1", reason="phone fixed in the shop"),
    )
    history = HistoryRow(
        order_history_id=5,
        order_status_id=2,
        notify=False,
        comment="Підтверджено телефоном",
        date_added="2026-12-03 18:30:00",
    )
    edited = msgspec.structs.replace(
        factories.snapshot(
            lines=[factories.line(quantity=3)],
            order={"order_status_id": "2"},
            catalogue=Catalogue(order_statuses=statuses),
        ),
        history=[history],
    )
    changed = await place(store, edited)
    await _append(
        store,
        DealCreated(marker="site_a:1", deal_id=77, status=201),
        DealRelinked(marker="site_a:1", deal_id=78, deal={"title": "№1"}),
    )

    audit = await audit_order(store, "site_a:1", factories.deal_settings())
    assert audit is not None
    text = render_audit(audit)

    assert audit.deal_id == 78
    assert [e.kind for e in audit.entries] == [
        "snapshot",
        "request",
        "failure",
        "retry",
        "snapshot",
        "answer",
        "relink",
    ]
    assert audit.entries[0].position == placed.position
    assert audit.entries[4].position == changed.position
    changes = {(c["part"], c["field"]) for c in audit.entries[4].details["changes"]}
    assert ("status", "order_status_id") in changes
    assert ("history", "5") in changes
    assert ("totals", "total") in changes
    assert 'status: "1 (Очікує обробки)" -> "2 (В обробці)"' in text.replace(
        "status.order_status_id", "status"
    )
    assert "lines - TS-01 × 1 @ 15.0000" in text
    assert "lines + TS-01 × 3 @ 15.0000" in text
    assert "create failed (status 422), parked: phones: invalid" in text
    assert "retry requested: phone fixed in the shop" in text
    assert "deal 78 found in the CRM by its marker" in text


async def _append(store: EventStore, *events: Event) -> None:
    version = await store.stream_version("site_a:1")
    await store.append([StreamAppend("site_a:1", version, events)])

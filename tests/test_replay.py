"""`ocsync replay`: deals and catalogue links follow a settings fix, from the log.

The real fixture shops are synced into the sandbox CRM with one setting, the
setting is fixed, and the replay (run as its own process, as an operator would)
corrects the deals in place: only what changed, never a second deal, and a
second replay sends nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from daemon.settings import load_settings
from events import (
    CatalogueLinked,
    DealUpdated,
    EventLogUnavailable,
    EventStore,
    RecordedEvent,
    SqliteEventStore,
    StreamAppend,
    article_stream,
)
from projections.deal_totals import is_service_article
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import create_sandbox_app
from projections.replay import replay_deals
from projections.replay_gaps import UncapturedData
from tests.conftest import OpenCartShop
from tests.e2e_support import (
    MARKER_FIELD,
    REPO,
    TOKEN,
    SandboxCrm,
    write_settings,
)
from tests.orders_md import shown_orders

# The two products whose sku differs from their model, and the synced orders
# that hold them (site_a:5 has them too, but is never confirmed).
SKU_TO_MODEL = {"MGN63UA/A": "MB-01", "MQ3D2UA/A": "IPH-01"}
# Requests a minute: the sandbox needs no account-wide limit.
FAST = 60_000
AFFECTED = {"site_a:2": ["MB-01"], "site_b:2": ["MB-01"], "site_b:4": ["IPH-01"]}


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def ocsync(config: Path, *args: str, env: dict[str, str] | None = None) -> Ran:
    """`ocsync --config FILE ARGS...` as its own process; code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "--config",
        str(config),
        *args,
        cwd=REPO,
        env={**os.environ, "E2E_CRM_TOKEN": TOKEN, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return Ran(process.returncode or 0, out.decode(), err.decode())


def edit(config: Path, old: str, new: str, count: int = 1) -> None:
    """Change the settings file as an operator would; `old` must be there."""
    text = config.read_text(encoding="utf-8")
    assert text.count(old) == count, f"{old!r} in {text}"
    config.write_text(text.replace(old, new), encoding="utf-8")


def site_block(config: Path, site: str, extra: str) -> None:
    """Add `extra` TOML lines to one site's [[sites]] table."""
    edit(config, f'name = "{site}"\n', f'name = "{site}"\n{extra}\n')


def settings_file(
    shops: dict[str, OpenCartShop], crm_url: str, tmp_path: Path, article: str = "model"
) -> Path:
    """The end-to-end settings, with a rate limit no test has to wait for."""
    config = write_settings(tmp_path / "settings.toml", shops, crm_url, article)
    text = config.read_text(encoding="utf-8")
    if "requests_per_minute" not in text:
        edit(config, "timeout = 10\n", f"timeout = 10\nrequests_per_minute = {FAST}\n")
    return config


def client(crm_url: str, token: str = TOKEN) -> KeepinCRMClient:
    return KeepinCRMClient(crm_url, token, requests_per_minute=FAST)


async def crm_deals(crm_url: str) -> dict[str, dict[str, Any]]:
    """Every deal in the sandbox, read back, by its marker; one deal each."""
    async with client(crm_url) as crm:
        ids = [int(deal["id"]) async for deal in crm.list_deals()]
        deals = [await crm.get_deal(deal_id) for deal_id in ids]
    by_marker: dict[str, dict[str, Any]] = {}
    for deal in deals:
        fields = {f["name"]: f["value"] for f in deal["custom_fields_detailed"]}
        marker = fields[MARKER_FIELD]
        assert marker not in by_marker, f"two deals for {marker}"
        by_marker[marker] = deal
    return by_marker


async def synced(
    shops: dict[str, OpenCartShop], crm_url: str, tmp_path: Path, article: str
) -> Path:
    """Settings written and every fixture order sent; the settings file."""
    config = settings_file(shops, crm_url, tmp_path, article)
    first = await ocsync(config, "run", "--once")
    assert first.code == 0, first.err
    return config


async def log_position(tmp_path: Path) -> int:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        return await store.last_position()
    finally:
        await store.close()


async def stream_events(tmp_path: Path, stream: str) -> list[Any]:
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        return [record.event for record in await store.read_stream(stream)]
    finally:
        await store.close()


def block_of(output: str, marker: str) -> str:
    """One deal's part of the replay output: its heading and indented lines."""
    lines = output.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith(f"{marker}  ")]
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return "\n".join(lines[start:end])


def articles(deal: dict[str, Any]) -> list[str]:
    """The articles of the deal's product lines (not shipping, tax, rounding)."""
    return [job["sku"] for job in deal["jobs"] if not is_service_article(job["sku"])]


def shown_models() -> dict[str, list[str]]:
    """Each confirmed order's lines' models, as the storefront showed them."""
    return {
        f"{order.site}:{order.order_id}": [line.model for line in order.lines]
        for order in shown_orders()
        if order.site in ("site_a", "site_b") and order.confirmed
    }


async def test_an_article_switch_is_replayed_onto_the_existing_deals(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """sku -> model: dry run lists the 3 deals, the replay fixes them, then nothing."""
    config = await synced(shops, sandbox.url, tmp_path, "sku")
    before = await crm_deals(sandbox.url)
    assert articles(before["site_b:2"]) == ["MGN63UA/A"]
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')

    position = await log_position(tmp_path)
    dry = await ocsync(config, "replay", "deals", "--dry-run")
    assert dry.code == 0, dry.err
    assert await log_position(tmp_path) == position
    assert await crm_deals(sandbox.url) == before

    for marker, models in AFFECTED.items():
        block = block_of(dry.out, marker)
        for model in models:
            sku = next(s for s, m in SKU_TO_MODEL.items() if m == model)
            assert f"old  {sku} × 1" in block, block
            assert f"new  {model} × 1" in block, block
    assert "3 deals would change, 11 unchanged" in dry.out
    assert "0 orders skipped" in dry.out

    replay = await ocsync(config, "replay", "deals")
    after = await crm_deals(sandbox.url)
    assert replay.code == 0, replay.err
    assert "3 deals corrected" in replay.out
    assert {m: d["id"] for m, d in after.items()} == {
        m: d["id"] for m, d in before.items()
    }
    assert {marker: articles(deal) for marker, deal in after.items()} == shown_models()
    for marker in set(before) - set(AFFECTED):
        assert after[marker] == before[marker], marker

    position = await log_position(tmp_path)
    again = await ocsync(config, "replay", "deals")
    assert again.code == 0, again.err
    assert "0 deals corrected, 14 unchanged" in again.out
    assert await log_position(tmp_path) == position

    audit = await ocsync(config, "audit", "site_b:2")
    assert audit.code == 0, audit.err
    assert "DealUpdated" in audit.out
    assert "old line: MGN63UA/A × 1" in audit.out
    assert "new line: MB-01 × 1" in audit.out


async def test_a_wrong_source_is_replayed_onto_that_sites_deals(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """site_a sent with source 99, fixed to 21: its 8 deals move, site_b's stay."""
    config = settings_file(shops, sandbox.url, tmp_path)
    edit(config, "source_id = 21", "source_id = 99")
    first = await ocsync(config, "run", "--once")
    assert first.code == 0, first.err
    before = await crm_deals(sandbox.url)
    edit(config, "source_id = 99", "source_id = 21")

    dry = await ocsync(config, "replay", "deals", "--dry-run")
    replay = await ocsync(config, "replay", "deals")
    after = await crm_deals(sandbox.url)
    again = await ocsync(config, "replay", "deals")
    audit = await ocsync(config, "audit", "site_a:1")

    assert dry.out.count("source_id: 99 -> 21") == 8, dry.out
    assert "8 deals corrected, 6 unchanged" in replay.out, replay.err
    assert {m: d["source"]["id"] for m, d in after.items()} == {
        m: 21 if m.startswith("site_a:") else 22 for m in before
    }
    assert {m: d["id"] for m, d in after.items()} == {
        m: d["id"] for m, d in before.items()
    }
    assert {m: d["jobs"] for m, d in after.items()} == {
        m: d["jobs"] for m, d in before.items()
    }
    assert "0 deals corrected, 14 unchanged" in again.out
    assert "source_id: 99 -> 21" in audit.out


async def test_a_tax_setting_flipped_since_never_reprices_a_changed_order(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """site_b's config_tax 0 -> 1, then #1 changes: its lines stay as the buyer saw."""
    config = await synced(shops, sandbox.url, tmp_path, "model")
    before = (await crm_deals(sandbox.url))["site_b:1"]
    site_b = shops["site_b"]
    await site_b.execute(
        "UPDATE `oc_setting` SET value = '1'"
        " WHERE store_id = 0 AND `key` = 'config_tax'"
    )
    await site_b.execute(
        "UPDATE `oc_order` SET shipping_city = 'Стрий' WHERE order_id = 1"
    )
    await site_b.add_history(1, 2, at="2026-12-05 10:00:00")

    run = await ocsync(config, "run", "--once")
    after = (await crm_deals(sandbox.url))["site_b:1"]
    replay = await ocsync(config, "replay", "deals")
    events = await stream_events(tmp_path, "site_b:1")

    assert run.code == 0, run.err
    assert [type(event).__name__ for event in events][-2:] == [
        "OrderChanged",
        "DealUpdated",
    ]
    fields = {f["name"]: f["value"] for f in after["custom_fields_detailed"]}
    assert fields["field_8"] == "Стрий"
    assert "tax" in [job["sku"] for job in before["jobs"]]
    assert after["jobs"] == before["jobs"]
    assert replay.code == 0, replay.err
    assert "0 deals corrected, 14 unchanged" in replay.out


async def test_the_comment_strategy_leaves_the_lines_and_comments_once(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """line_update = "comment": lines stay, one comment lists the right ones."""
    config = await synced(shops, sandbox.url, tmp_path, "sku")
    before = await crm_deals(sandbox.url)
    edit(
        config,
        'article_fields = ["sku"]',
        'article_fields = ["model"]\nline_update = "comment"',
    )

    replay = await ocsync(config, "replay", "deals")
    after = await crm_deals(sandbox.url)
    again = await ocsync(config, "replay", "deals")
    final = await crm_deals(sandbox.url)
    audit = await ocsync(config, "audit", "site_b:4")

    assert "3 deals corrected" in replay.out, replay.err
    assert {m: d["jobs"] for m, d in after.items()} == {
        m: d["jobs"] for m, d in before.items()
    }
    for marker, deal in final.items():
        notes = [comment["note"] for comment in deal["comments"]]
        if marker not in AFFECTED:
            assert notes == [], marker
            continue
        [note] = notes
        for model in shown_models()[marker]:
            assert f" {model} — " in note, note
        assert not any(sku in note for sku in SKU_TO_MODEL), note
    assert "0 deals corrected, 14 unchanged" in again.out
    [update] = [
        e
        for e in await stream_events(tmp_path, "site_b:4")
        if isinstance(e, DealUpdated)
    ]
    assert "jobs_attributes" not in update.changes
    assert update.changes["comment_added"] == final["site_b:4"]["comments"][0]["note"]
    assert "comment added:" in audit.out


@pytest.fixture
async def catalogue_crm(tmp_path: Path) -> AsyncIterator[SandboxCrm]:
    """A sandbox whose catalogue already has items under the shops' models."""
    catalogue = tmp_path / "catalogue.json"
    items = [
        {"sku": "MB-01", "title": "MacBook", "price": "500"},
        {"sku": "IPH-01", "title": "iPhone", "price": "101"},
    ]
    catalogue.write_text(json.dumps(items), encoding="utf-8")
    store = tmp_path / "catalogue-crm.db"
    server = TestServer(
        create_sandbox_app(store, TOKEN, catalogue, "create"), host="127.0.0.1"
    )
    await server.start_server()
    yield SandboxCrm(url=str(server.make_url("/v1")), store=store)
    await server.close()


async def test_a_catalogue_replay_relinks_the_switched_articles_once(
    shops: dict[str, OpenCartShop], catalogue_crm: SandboxCrm, tmp_path: Path
) -> None:
    """After sku -> model, MB-01 and IPH-01 link to their items; again: nothing."""
    config = await synced(shops, catalogue_crm.url, tmp_path, "sku")
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')
    async with client(catalogue_crm.url) as crm:
        items = {m["sku"]: m["id"] async for m in crm.list_materials()}

    dry = await ocsync(config, "replay", "catalogue", "--dry-run")
    position = await log_position(tmp_path)
    replay = await ocsync(config, "replay", "catalogue")
    again = await ocsync(config, "replay", "catalogue")

    assert dry.code == replay.code == again.code == 0, replay.err
    assert "2 articles would be relinked" in dry.out
    assert f"MB-01: never linked -> item {items['MB-01']} (MacBook)" in replay.out
    assert "2 articles relinked" in replay.out
    assert "0 articles relinked" in again.out
    assert await log_position(tmp_path) == position + 2
    for model in ("MB-01", "IPH-01"):
        [link] = await stream_events(tmp_path, article_stream(model))
        assert link == CatalogueLinked(
            article=model, material_id=items[model], title=link.title
        )


async def test_settings_needing_uncaptured_data_are_refused_before_sending(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """A query never run at capture, an order column the shop lacks: exit 2."""
    config = await synced(shops, sandbox.url, tmp_path, "model")
    before = await crm_deals(sandbox.url)
    position = await log_position(tmp_path)
    query = (
        "SELECT order_id, 'x' AS branch FROM oc_order WHERE order_id IN %(order_ids)s"
    )
    site_block(
        config,
        "site_b",
        f'branch_from = "query:np.branch"\nqueries = {{ np = "{query}" }}\n'
        'custom_fields = { "order.subscription_id" = "field_9" }',
    )
    # A change that would be sent, were the settings not refused.
    edit(config, "source_id = 22", "source_id = 23")

    dry = await ocsync(config, "replay", "deals", "--dry-run")
    replay = await ocsync(config, "replay", "deals")
    site_a_only = await ocsync(config, "replay", "deals", "--site", "site_a")
    nowhere = await ocsync(config, "replay", "deals", "--site", "site_z")

    assert (dry.code, replay.code) == (2, 2), replay.err
    orders = ", ".join(f"site_b:{n}" for n in range(1, 7))
    assert 'sites[1].branch_from = "query:np.branch": ' in replay.err
    assert "sites[1].queries.np: the query 'np' was not run" in replay.err
    assert f"orders {orders}" in replay.err
    assert 'sites[1].custom_fields."order.subscription_id": the captured order' in (
        replay.err
    )
    assert replay.out == ""
    assert await crm_deals(sandbox.url) == before
    assert await log_position(tmp_path) == position
    assert site_a_only.code == 0, site_a_only.err
    assert "0 deals corrected, 8 unchanged" in site_a_only.out
    assert nowhere.code == 2 and "no site named 'site_z'" in nowhere.err


async def test_from_limits_the_replay_to_newer_snapshots(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """--from POSITION: only orders whose newest snapshot is at or after it."""
    config = await synced(shops, sandbox.url, tmp_path, "sku")
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')
    settings = load_settings(config, {"E2E_CRM_TOKEN": TOKEN})
    store: EventStore = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        site_b = [
            record
            for record in await store.read_all(limit=10_000)
            if record.stream == "site_b:2" and record.type == "OrderPlaced"
        ]
        [placed] = site_b
        result = await replay_deals(
            store, settings, None, from_position=placed.position, dry_run=True
        )
        everything = await replay_deals(store, settings, None, dry_run=True)
    finally:
        await store.close()

    assert [c.stream for c in result.corrections] == ["site_b:2", "site_b:4"]
    assert result.unchanged == 3  # site_b 3, 5 and 6
    assert len(everything.corrections) == 3


async def test_a_refusal_names_every_order_and_sends_nothing(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """UncapturedData carries each setting and the orders it cannot serve."""
    config = await synced(shops, sandbox.url, tmp_path, "model")
    site_block(config, "site_a", 'custom_fields = { "order.transaction_id" = "f9" }')
    settings = load_settings(config, {"E2E_CRM_TOKEN": TOKEN})
    store = await SqliteEventStore.open(tmp_path / "events.db")
    try:
        async with client(sandbox.url) as crm:
            with pytest.raises(UncapturedData) as refused:
                await replay_deals(store, settings, crm)
    finally:
        await store.close()

    [gap] = refused.value.gaps
    assert gap.setting == 'sites[0].custom_fields."order.transaction_id"'
    assert gap.orders == tuple(f"site_a:{n}" for n in (1, 2, 3, 4, 6, 7, 8, 9))


class AnswerLost(SqliteEventStore):
    """A log whose appends fail: as if ocsync died just after the CRM answered."""

    async def append(
        self,
        appends: Sequence[StreamAppend],
        checkpoints: Mapping[str, str] | None = None,
    ) -> list[RecordedEvent]:
        if appends:
            raise EventLogUnavailable("simulated: the process died here")
        return await super().append(appends, checkpoints)


@pytest.mark.parametrize("line_update", ["replace", "comment"])
async def test_a_replay_interrupted_after_the_crm_answered_leaves_no_duplicate(
    shops: dict[str, OpenCartShop],
    sandbox: SandboxCrm,
    tmp_path: Path,
    line_update: str,
) -> None:
    """Killed between the CRM's answer and the log: the next replay mends it."""
    config = await synced(shops, sandbox.url, tmp_path, "sku")
    edit(
        config,
        'article_fields = ["sku"]',
        f'article_fields = ["model"]\nline_update = "{line_update}"',
    )
    settings = load_settings(config, {"E2E_CRM_TOKEN": TOKEN})
    crashing = await AnswerLost.open(tmp_path / "events.db")
    try:
        async with client(sandbox.url) as crm:
            with pytest.raises(EventLogUnavailable):
                await replay_deals(crashing, settings, crm, site="site_b")
    finally:
        await crashing.close()

    again = await ocsync(config, "replay", "deals")
    deal = (await crm_deals(sandbox.url))["site_b:2"]

    assert again.code == 0, again.err
    expected = ["MB-01"] if line_update == "replace" else ["MGN63UA/A"]
    assert articles(deal) == expected
    assert len(deal["comments"]) == (line_update == "comment")

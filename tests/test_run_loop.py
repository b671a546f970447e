"""The daemon's loops in-process, against a real shop and log: what they survive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from structlog.testing import capture_logs

from daemon import run
from daemon.capture import CaptureResult, SiteCapture
from daemon.errors import ShopUnavailable
from daemon.settings import (
    CaptureSettings,
    CrmSettings,
    EventLogSettings,
    Settings,
)
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import DealCreated, DealUpdated, EventStore
from projections.deals import DealProjection, DealsResult
from tests import factories
from tests.conftest import OpenCartShop
from tests.projection_support import Crm, place, settings_for

# A bound on waiting for the loop, not a timing under test.
_PATIENCE_SECONDS = 30
log = structlog.get_logger()


async def test_a_watcher_goes_on_after_an_unexpected_error(
    shop: OpenCartShop,
    store: EventStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in one poll is logged with its traceback; the next poll captures."""
    site = shop.site()
    settings = Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url="http://127.0.0.1:9/v1", token="t"),
        capture=CaptureSettings(poll_interval=0.05),
        deals=factories.deal_settings(),
        sites=[site],
        databases={site.name: shop.url},
    )
    polls = 0
    poll_once = SiteCapture.poll_once

    async def fails_first(self: SiteCapture) -> CaptureResult:
        nonlocal polls
        polls += 1
        if polls == 1:
            raise RuntimeError("a bug in capture")
        return await poll_once(self)

    monkeypatch.setattr(SiteCapture, "poll_once", fails_first)
    await shop.add_order(1)
    stop = asyncio.Event()

    with capture_logs() as logs:
        watcher = asyncio.create_task(
            run._watch(settings, site, store, asyncio.Event(), stop)
        )
        try:
            async with asyncio.timeout(_PATIENCE_SECONDS):
                while not await store.read_stream("site_a:1"):
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await watcher

    [failed] = [line for line in logs if line["event"] == "capture failed unexpectedly"]
    assert (failed["site"], failed["log_level"], failed["exc_info"]) == (
        "site_a",
        "error",
        True,
    )
    assert polls >= 2


async def test_the_projection_loop_goes_on_after_an_unexpected_error(
    store: EventStore,
    crm: Crm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug outside any one order is logged; the next pass creates the deal."""
    url = await crm.serve()
    fast = CaptureSettings(poll_interval=0.05)
    settings = msgspec.structs.replace(settings_for(tmp_path, url), capture=fast)
    passes = 0
    run_once = DealProjection.run_once

    async def fails_first(
        self: DealProjection, stop: asyncio.Event | None = None
    ) -> DealsResult:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise RuntimeError("a bug in the projection")
        return await run_once(self, stop)

    monkeypatch.setattr(DealProjection, "run_once", fails_first)
    await place(store, factories.snapshot(order_id=1))
    stop = asyncio.Event()

    with capture_logs() as logs:
        loop = asyncio.create_task(
            run._project_loop(settings, store, crm.client(url), asyncio.Event(), stop)
        )
        try:
            async with asyncio.timeout(_PATIENCE_SECONDS):
                while not isinstance(
                    (await store.read_stream("site_a:1"))[-1].event, DealCreated
                ):
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop

    failed = [
        line for line in logs if line["event"] == "projection failed unexpectedly"
    ]
    assert [line["exc_info"] for line in failed] == [True]


async def test_an_order_captured_while_its_deal_is_created_is_projected_again(
    store: EventStore,
    crm: Crm,
    tmp_path: Path,
) -> None:
    """Capture appends mid-create: the conflict is no failure; one deal, corrected."""
    changed = factories.snapshot(order_id=1, lines=[factories.line(quantity=3)])
    appended = False

    @web.middleware
    async def capture_meanwhile(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        # The order changes in the shop while the CRM stores its deal.
        nonlocal appended
        response = await handler(request)
        if request.method == "POST" and not appended:
            appended = True
            await place(store, changed)
        return response

    url = await crm.serve(middlewares=[capture_meanwhile])
    fast = CaptureSettings(poll_interval=0.05)
    settings = msgspec.structs.replace(settings_for(tmp_path, url), capture=fast)
    client = crm.client(url)
    await place(store, factories.snapshot(order_id=1))
    stop = asyncio.Event()

    with capture_logs() as logs:
        loop = asyncio.create_task(
            run._project_loop(settings, store, client, asyncio.Event(), stop)
        )
        try:
            async with asyncio.timeout(_PATIENCE_SECONDS):
                while not any(
                    isinstance(record.event, DealUpdated)
                    for record in await store.read_stream("site_a:1")
                ):
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop
    deals = [deal async for deal in client.list_deals()]
    [job, *_] = (await client.get_deal(int(deals[0]["id"])))["jobs"]

    events = [line["event"] for line in logs]
    assert "order changed while projected, projecting again" in events
    assert "projection failed unexpectedly" not in events
    assert len(deals) == 1
    assert job["amount"] == 3


async def test_capture_stops_between_batches_when_asked(
    shop: OpenCartShop, store: EventStore
) -> None:
    """Asked to stop after the first batch of three, capture takes no second."""
    site = shop.site()
    for order_id in (1, 2, 3):
        await shop.add_order(order_id)
    pool = await open_shop_pool(shop.url, site.name)
    stop = asyncio.Event()
    settings = CaptureSettings(batch_size=1)
    capture = SiteCapture(site, ShopReader(pool, site), store, settings, log)
    poll_once = capture.poll_once

    async def then_stop() -> CaptureResult:
        result = await poll_once()
        stop.set()
        return result

    capture.poll_once = then_stop  # type: ignore[method-assign]
    try:
        await run._capture_pending(capture, stop)
    finally:
        pool.close()
        await pool.wait_closed()

    captured = [await store.read_stream(f"site_a:{i}") for i in (1, 2, 3)]
    assert [len(events) for events in captured] == [1, 0, 0]


async def test_a_shop_that_does_not_answer_is_reported_unavailable(
    shop: OpenCartShop, store: EventStore
) -> None:
    """A query blocked by a table lock ends at query_timeout as ShopUnavailable."""
    site = shop.site()
    await shop.add_order(1)
    pool = await open_shop_pool(shop.url, site.name)
    reader = ShopReader(pool, site, query_timeout=0.5)
    capture = SiteCapture(site, reader, store, CaptureSettings(), log)
    await shop.execute("LOCK TABLES `oc_order` WRITE")
    try:
        with pytest.raises(ShopUnavailable, match=r"no answer within 0\.5 s"):
            async with asyncio.timeout(_PATIENCE_SECONDS):
                await capture.poll_once()
    finally:
        await shop.execute("UNLOCK TABLES")

    try:
        # The same pool serves again once the shop answers.
        assert (await capture.poll_once()).placed == 1
    finally:
        pool.close()
        await pool.wait_closed()


def test_backoff_grows_with_jitter_up_to_its_bound_and_resets() -> None:
    """Waits double from the poll interval, jittered, capped; a success resets."""
    backoff = run._Backoff(2.0)
    waits = [backoff.next() for _ in range(12)]

    for failures, wait in enumerate(waits[:6], start=1):
        low = 2.0 * 2 ** (failures - 1)
        assert low <= wait <= low + 2.0, (failures, wait)
    assert all(wait == run._MAX_BACKOFF for wait in waits[-3:])
    # Two watchers failing together do not wait the same.
    assert len({run._Backoff(2.0).next() for _ in range(20)}) > 1
    backoff.reset()
    assert 2.0 <= backoff.next() <= 4.0

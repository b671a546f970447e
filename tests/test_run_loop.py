"""The daemon's loops in-process, against a real shop and log: what they survive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from daemon import run
from daemon.capture import CaptureResult, SiteCapture
from daemon.settings import (
    CaptureSettings,
    CrmSettings,
    EventLogSettings,
    Settings,
)
from events import DealCreated, EventStore
from projections.deals import DealProjection, DealsResult
from tests import factories
from tests.conftest import OpenCartShop
from tests.projection_support import Crm, place, settings_for

# A bound on waiting for the loop, not a timing under test.
_PATIENCE_SECONDS = 30


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

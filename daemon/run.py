"""The daemon's life: capture from every site, project to the CRM, stop cleanly.

`run_once` captures everything pending, projects it and returns; `serve` keeps
one watcher per site and one projection loop running until asked to stop. A
shop that cannot be reached is retried and reported; the other sites go on.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiomysql
import structlog
from tenacity import AsyncRetrying, RetryCallState, wait_exponential_jitter

from daemon.capture import SiteCapture
from daemon.errors import ShopUnavailable
from daemon.settings import Settings, SiteSettings
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import (
    EventLogError,
    EventStore,
    VersionConflict,
    open_event_store,
    order_stream,
)
from projections.catalogue import CatalogueProjection
from projections.deals import CrmUnavailable, DealProjection
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError

log = structlog.get_logger("ocsync.run")

# How long a failing shop or CRM is left alone before the next try, at most.
_MAX_BACKOFF = 300.0


class _Backoff:
    """The waits between tries at a failing shop or CRM, reset by a success.

    Exponential from the poll interval up to `_MAX_BACKOFF`, with jitter, so
    that watchers which failed together do not all try again together.
    """

    def __init__(self, initial: float) -> None:
        self._wait = wait_exponential_jitter(
            multiplier=initial, max=_MAX_BACKOFF, jitter=initial
        )
        self._failures = 0

    def next(self) -> float:
        """The wait after one more failure in a row."""
        self._failures += 1
        state = RetryCallState(AsyncRetrying(), fn=None, args=(), kwargs={})
        state.attempt_number = self._failures
        return float(self._wait(state))

    def reset(self) -> None:
        self._failures = 0


@dataclass
class RunOutcome:
    """What one pass achieved.

    `ok` when every shop and the CRM answered and no order is left waiting for
    another try (a create or correction that failed for a passing reason) or
    still caught mid-edit in its shop (`mid_edit`, streams never sent).
    """

    unreachable_sites: list[str] = field(default_factory=list)
    crm_error: str | None = None
    waiting: list[str] = field(default_factory=list)
    mid_edit: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.unreachable_sites
            and self.crm_error is None
            and not self.waiting
            and not self.mid_edit
        )


async def run_once(settings: Settings) -> RunOutcome:
    """Capture all that is pending on every site, then project it once.

    An order still caught mid-edit after `capture.mid_edit_seconds` is named
    in a warning and in `mid_edit`: it was neither sent nor parked.
    """
    outcome = RunOutcome()
    store = await open_event_store(settings.event_log.url, settings.base_dir)
    try:
        for site in settings.sites:
            try:
                held_back = await _capture_all(settings, site, store)
                outcome.mid_edit.extend(order_stream(site.name, i) for i in held_back)
            except ShopUnavailable as exc:
                log.error("shop unavailable", site=site.name, reason=exc.reason)
                outcome.unreachable_sites.append(site.name)

        async with _crm_client(settings) as crm:
            try:
                deals = await DealProjection(store, crm, settings).run_once()
                outcome.waiting = deals.failed
                await CatalogueProjection(store, crm, settings).run_once()
            except (CrmUnavailable, KeepinCRMError) as exc:
                log.error("crm unavailable", error=str(exc))
                outcome.crm_error = str(exc)
    finally:
        await store.close()

    log.info(
        "run finished",
        ok=outcome.ok,
        unreachable_sites=outcome.unreachable_sites,
        crm_error=outcome.crm_error,
        waiting=outcome.waiting,
        mid_edit=outcome.mid_edit,
    )
    return outcome


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run until `stop` is set: a watcher per site and one projection loop."""
    store = await open_event_store(settings.event_log.url, settings.base_dir)
    captured = asyncio.Event()
    try:
        async with _crm_client(settings) as crm, asyncio.TaskGroup() as group:
            workers = [
                group.create_task(_watch(settings, site, store, captured, stop))
                for site in settings.sites
            ]
            workers.append(
                group.create_task(_project_loop(settings, store, crm, captured, stop))
            )
            group.create_task(
                _deadline_after(stop, settings.run.shutdown_seconds, workers)
            )
    finally:
        await store.close()
    log.info("stopped")


async def _deadline_after(
    stop: asyncio.Event, seconds: float, workers: list[asyncio.Task[None]]
) -> None:
    """Once asked to stop, give the work in hand `seconds`, then cancel it.

    Every step commits its events with its checkpoint, and a create whose
    answer was cut off is settled by the deal's marker on the next start, so a
    cancelled step loses nothing.
    """
    await stop.wait()
    pending = [task for task in workers if not task.done()]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=seconds)
    for task in late:
        log.warning("shutdown deadline passed, cancelling", seconds=seconds)
        task.cancel()


def _crm_client(settings: Settings) -> KeepinCRMClient:
    # One client for the account: every site's calls share its rate limit.
    return KeepinCRMClient.from_settings(settings.crm)


async def _capture_all(
    settings: Settings, site: SiteSettings, store: EventStore
) -> list[int]:
    """Capture all that is pending; answers the orders still caught mid-edit.

    An order caught mid-edit is waited for once (`capture.mid_edit_seconds`)
    and read again: a one-off run must not end while its edit is finishing.
    """
    pool = await open_shop_pool(settings.databases[site.name], site.name)
    try:
        reader = ShopReader(pool, site, query_timeout=settings.capture.query_timeout)
        capture = SiteCapture(site, reader, store, settings.capture, log)
        await _capture_pending(capture)
        if capture.deferred:
            await asyncio.sleep(settings.capture.mid_edit_seconds)
            await _capture_pending(capture)
    finally:
        await _close_pool(pool)

    for order_id in capture.deferred:
        stream = order_stream(site.name, order_id)
        events = await store.read_stream(stream)
        log.warning(
            "order still mid-edit, not sent",
            site=site.name,
            order_id=order_id,
            stream=stream,
            position=events[-1].position if events else None,
            waited=settings.capture.mid_edit_seconds,
        )
    return list(capture.deferred)


async def _capture_pending(
    capture: SiteCapture, stop: asyncio.Event | None = None
) -> None:
    """Poll batch after batch until none is left, or until asked to stop.

    Each batch commits with its checkpoint: a poll stopped between two
    batches goes on from there next time.
    """
    while (await capture.poll_once()).more:
        if stop is not None and stop.is_set():
            return


async def _watch(
    settings: Settings,
    site: SiteSettings,
    store: EventStore,
    captured: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    """One site's watcher: poll, wake the projection, back off while it is down.

    The pool and the capture (with its cache of content hashes) live as long as
    the shop answers; a failure closes them and a later try opens them anew.
    """
    interval = settings.capture.poll_interval
    backoff = _Backoff(interval)
    bound = log.bind(site=site.name)
    timeout = settings.capture.query_timeout
    while not stop.is_set():
        try:
            pool = await open_shop_pool(settings.databases[site.name], site.name)
            try:
                reader = ShopReader(pool, site, query_timeout=timeout)
                capture = SiteCapture(site, reader, store, settings.capture, log)
                while not stop.is_set():
                    await _capture_pending(capture, stop)
                    captured.set()
                    backoff.reset()
                    await _sleep_unless(stop, interval)
            finally:
                await _close_pool(pool)
        except (ShopUnavailable, EventLogError) as exc:
            wait = backoff.next()
            bound.warning("capture failed", reason=str(exc), retry_in=wait)
            await _sleep_unless(stop, wait)
        except Exception:
            # A bug must not end every site's watcher: this one backs off and
            # tries again, the others go on.
            wait = backoff.next()
            bound.exception("capture failed unexpectedly", retry_in=wait)
            await _sleep_unless(stop, wait)


async def _project_loop(
    settings: Settings,
    store: EventStore,
    crm: KeepinCRMClient,
    captured: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    deals = DealProjection(store, crm, settings)
    catalogue = CatalogueProjection(store, crm, settings)
    backoff = _Backoff(settings.capture.poll_interval)
    while not stop.is_set():
        try:
            await deals.run_once(stop)
            if not stop.is_set():
                await catalogue.run_once()
            backoff.reset()
        except (CrmUnavailable, KeepinCRMError) as exc:
            wait = backoff.next()
            log.warning("crm unavailable", error=str(exc), retry_in=wait)
            await _sleep_unless(stop, wait)
            continue
        except VersionConflict as exc:
            # Capture appended to the order's stream while its deal was being
            # sent. Nothing is lost: the pass starts again from its checkpoint,
            # and a create whose answer was not recorded is settled by marker.
            log.info("order changed while projected, projecting again", reason=str(exc))
            continue
        except Exception:
            # Each order's own errors park that order (see DealProjection);
            # this is a bug outside any one order: back off, keep serving.
            wait = backoff.next()
            log.exception("projection failed unexpectedly", retry_in=wait)
            await _sleep_unless(stop, wait)
            continue
        captured.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.capture.poll_interval):
                await _first_of(captured, stop)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


async def _close_pool(pool: aiomysql.Pool) -> None:
    pool.close()
    await pool.wait_closed()

"""When the KeepinCRM client sends a request again, how long it waits, and its pace.

The CRM is a real aiohttp server on loopback that answers a scripted sequence
(503, then a dropped connection, then 200...); aioresponses stands in where a
mocked aiohttp exception is enough. No test measures wall time: waits are read
from an injected sleep that records what tenacity asked for, and the rate limit
from an injected limiter that counts (or holds back) its slots.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import RawTestServer

from daemon.settings import CrmSettings
from projections.keepincrm import (
    KeepinCRMClient,
    KeepinCRMError,
    RateLimited,
    ServerError,
    TransportError,
)
from projections.keepincrm import client as client_module
from projections.keepincrm.transport import RETRY_AFTER_CAP_SECONDS, account_limiter
from tests.aioresponses_compat import aioresponses

TOKEN = "retry-secret-5d0e"

# One scripted answer: a status (with headers), success, or no answer at all.
# aiohttp sends a GET once more by itself when its connection drops, so one
# failed GET attempt by reset takes two "reset"s in a row.
Answer = int | tuple[int, Mapping[str, str]] | Literal["ok", "reset", "hang"]

Call = Callable[[KeepinCRMClient], Awaitable[Any]]
LogLines = list[MutableMapping[str, Any]]


@dataclass
class ScriptedCrm:
    """A CRM on loopback that answers each request with the next scripted answer.

    Once the script runs out it answers as the real CRM does on success.
    """

    script: list[Answer]
    seen: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path}")
        await request.read()
        answer = self.script.pop(0) if self.script else "ok"
        match answer:
            case "ok":
                return _success(request.method)
            case "reset":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            case "hang":
                # Longer than any client timeout here; cut short at shutdown.
                await asyncio.sleep(30)
                return _success(request.method)
            case (status, headers):
                return web.Response(status=status, headers=headers, text="busy")
            case int(status):
                return web.Response(status=status, text="failed")
        raise AssertionError(f"unknown scripted answer {answer!r}")


def _success(method: str) -> web.Response:
    if method == "GET":
        return web.json_response(
            {"id": 7, "items": [], "pagination": {"total_pages": 1}}
        )
    return web.json_response({"id": 7}, status=201 if method == "POST" else 200)


ServeCrm = Callable[..., Awaitable[ScriptedCrm]]


@pytest.fixture
async def serve() -> AsyncIterator[ServeCrm]:
    """Start scripted CRMs on loopback; each is closed after the test."""
    servers: list[RawTestServer] = []

    async def start(*script: Answer, port: int | None = None) -> ScriptedCrm:
        crm = ScriptedCrm(list(script))
        server = RawTestServer(crm.handle, port=port)
        await server.start_server()
        servers.append(server)
        crm.url = str(server.make_url("/v1"))
        return crm

    yield start
    for server in servers:
        await server.close()


@dataclass
class Pacing:
    """What a client under test waits on: a recording sleep and a counting limiter."""

    sleeps: list[float] = field(default_factory=list)
    slots: int = 0
    on_sleep: Callable[[], Awaitable[None]] | None = None

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            await self.on_sleep()

    async def acquire(self) -> None:
        self.slots += 1

    def client(self, url: str, **options: Any) -> KeepinCRMClient:
        """A client with tiny backoff whose waits and slots this pacing records."""
        settings: dict[str, Any] = {
            "timeout": 2,
            "max_attempts": 5,
            "retry_initial_seconds": 0.01,
            "retry_max_seconds": 0.05,
            "limiter": self,
            "sleep": self.sleep,
        }
        return KeepinCRMClient(url, TOKEN, **(settings | options))


@pytest.fixture
def pacing() -> Pacing:
    """A fresh recording sleep and counting limiter."""
    return Pacing()


def closed_port() -> int:
    """A loopback port nothing listens on (until a test starts a server there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def calls_logged(logs: LogLines) -> LogLines:
    return [
        e for e in logs if e["event"] in ("keepincrm call", "keepincrm call failed")
    ]


def retries_logged(logs: LogLines) -> LogLines:
    return [e for e in logs if e["event"] == "keepincrm call retried"]


# --- reads: retried through every passing failure ---------------------------


async def test_get_is_retried_through_server_failures(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """503, 502, then 200: the read succeeds on its third attempt."""
    crm = await serve(503, 502)

    async with pacing.client(crm.url) as client:
        deal = await client.get_deal(7)

    assert deal["id"] == 7
    assert crm.seen == ["GET /v1/agreements/7"] * 3
    assert len(pacing.sleeps) == 2


async def test_get_is_retried_through_a_timeout_and_a_reset(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """No answer in time, then a dropped connection, then the answer."""
    crm = await serve("hang", "reset", "reset")

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(crm.url, timeout=0.2) as client:
            await client.ping()

    assert [(c["attempt"], c["status"]) for c in calls_logged(logs)] == [
        (1, 0),
        (2, 0),
        (3, 200),
    ]
    assert len(crm.seen) == 4  # the second attempt was resent by aiohttp
    assert len(pacing.sleeps) == 2


async def test_aiohttp_resends_a_dropped_get_once_by_itself(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """One reset on a GET is absorbed inside aiohttp: one attempt, one slot."""
    crm = await serve("reset")

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(crm.url) as client:
            await client.get_deal(7)

    assert [c["attempt"] for c in calls_logged(logs)] == [1]
    assert len(crm.seen) == 2
    assert pacing.slots == 1


async def test_get_gives_up_after_max_attempts_with_the_last_error(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Three attempts allowed: the third failure is raised, still retryable."""
    crm = await serve(503, 502, 500)

    async with pacing.client(crm.url, max_attempts=3) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_deal(7)

    assert (caught.value.status, caught.value.retryable) == (500, True)
    assert caught.value.attempts == 3
    assert len(crm.seen) == 3
    # No wait after the last attempt: the error goes straight to the caller.
    assert len(pacing.sleeps) == 2


async def test_backoff_doubles_with_jitter_up_to_the_maximum(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Waits of 0.01, 0.02, 0.04 (each plus up to 0.01 jitter), then capped at 0.05."""
    crm = await serve(503, 503, 503, 503)

    async with pacing.client(crm.url) as client:
        await client.get_deal(7)

    first, second, third, fourth = pacing.sleeps
    assert 0.01 <= first <= 0.02
    assert 0.02 <= second <= 0.03
    assert 0.04 <= third <= 0.05
    assert fourth == 0.05


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_refusal_is_not_retried(
    serve: ServeCrm, pacing: Pacing, status: int
) -> None:
    """What the CRM refused it will refuse again: one request, no wait."""
    crm = await serve(status)

    async with pacing.client(crm.url) as client:
        with pytest.raises(KeepinCRMError) as caught:
            await client.get_deal(7)

    assert (caught.value.status, caught.value.retryable) == (status, False)
    assert len(crm.seen) == 1
    assert pacing.sleeps == []


async def test_mocked_transport_failures_on_a_read_are_retried(
    pacing: Pacing,
) -> None:
    """aioresponses: a disconnect and a reset, then the answer, for the same GET."""
    url = "http://crm.test/v1/agreements/7"
    with aioresponses() as mocked:
        mocked.get(url, exception=aiohttp.ServerDisconnectedError())
        mocked.get(url, exception=aiohttp.ClientOSError(104, "Connection reset"))
        mocked.get(url, payload={"id": 7, "title": "№ 1"})

        async with pacing.client("http://crm.test/v1") as client:
            deal = await client.get_deal(7)

    assert deal["title"] == "№ 1"
    assert len(pacing.sleeps) == 2


# --- 429: always retried, after the wait the CRM asks for -------------------


async def test_429_waits_its_retry_after_and_succeeds(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Retry-After: 1 is waited out in full (longer than the backoff maximum)."""
    crm = await serve((429, {"Retry-After": "1"}))

    async with pacing.client(crm.url) as client:
        await client.get_deal(7)

    assert pacing.sleeps == [1.0]
    assert len(crm.seen) == 2


async def test_429_with_an_http_date_waits_until_then(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """A Retry-After date three seconds ahead (whole seconds) waits up to three."""
    moment = datetime.now(UTC) + timedelta(seconds=3)
    crm = await serve((429, {"Retry-After": format_datetime(moment, usegmt=True)}))

    async with pacing.client(crm.url) as client:
        await client.get_deal(7)

    [wait] = pacing.sleeps
    assert 1 < wait <= 3


async def test_429_without_retry_after_backs_off(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """With no Retry-After, a 429 waits the ordinary first backoff."""
    crm = await serve(429)

    async with pacing.client(crm.url) as client:
        await client.get_deal(7)

    [wait] = pacing.sleeps
    assert 0.01 <= wait <= 0.02


async def test_429_asking_beyond_the_cap_is_raised_at_once(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Retry-After: 3600 is not slept in the call; the caller gets RateLimited."""
    crm = await serve((429, {"Retry-After": "3600"}))

    async with pacing.client(crm.url) as client:
        with pytest.raises(RateLimited) as caught:
            await client.get_deal(7)

    assert caught.value.retry_after == 3600 > RETRY_AFTER_CAP_SECONDS
    assert caught.value.retryable
    assert len(crm.seen) == 1
    assert pacing.sleeps == []


async def test_create_answered_429_is_sent_again(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """A 429 means unprocessed: the create is safe to send again, and is."""
    crm = await serve((429, {"Retry-After": "1"}))

    async with pacing.client(crm.url) as client:
        deal_id = await client.create_deal({"title": "№ 1"})

    assert deal_id == 7
    assert crm.seen == ["POST /v1/agreements"] * 2
    assert pacing.sleeps == [1.0]


# --- writes: never sent twice when the CRM may have acted -------------------


async def create(client: KeepinCRMClient) -> Any:
    return await client.create_deal({"title": "№ 1"})


async def update(client: KeepinCRMClient) -> Any:
    return await client.update_deal(7, {"stage_id": 3})


async def comment(client: KeepinCRMClient) -> Any:
    return await client.add_deal_comment(7, "Оплачено")


WRITES = [
    pytest.param(create, id="create"),
    pytest.param(update, id="patch"),
    pytest.param(comment, id="comment"),
]


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("status", [500, 503])
async def test_a_write_answered_5xx_is_not_sent_again(
    serve: ServeCrm, pacing: Pacing, write: Call, status: int
) -> None:
    """The CRM may have stored it: raised at once, retryable, for the next pass."""
    crm = await serve(status)

    async with pacing.client(crm.url) as client:
        with pytest.raises(ServerError) as caught:
            await write(client)

    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert caught.value.attempts == 1
    assert len(crm.seen) == 1
    assert pacing.sleeps == []


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("failure", ["reset", "hang"])
async def test_a_write_without_an_answer_is_not_sent_again(
    serve: ServeCrm, pacing: Pacing, write: Call, failure: Answer
) -> None:
    """A reset or timeout after sending: the outcome is uncertain, one request."""
    crm = await serve(failure)

    async with pacing.client(crm.url, timeout=0.2) as client:
        with pytest.raises(TransportError) as caught:
            await write(client)

    assert (caught.value.retryable, caught.value.request_sent) == (True, True)
    assert len(crm.seen) == 1
    assert pacing.sleeps == []


async def test_a_mocked_lost_create_is_not_sent_again(pacing: Pacing) -> None:
    """aioresponses: after a disconnect the create's second mock stays unused."""
    deals = re.compile(r"^http://crm\.test/v1/agreements(\?.*)?$")
    with aioresponses() as mocked:
        mocked.post(deals, exception=aiohttp.ServerDisconnectedError())
        mocked.post(deals, status=201, payload={"id": 9})

        async with pacing.client("http://crm.test/v1") as client:
            with pytest.raises(TransportError):
                await create(client)
            sent = sum(len(calls) for calls in mocked.requests.values())

    assert sent == 1
    assert pacing.sleeps == []


async def test_create_refused_a_connection_is_sent_once_the_crm_is_up(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Connection refused: never sent, so retried; the CRM starts, one deal made."""
    port = closed_port()
    started: list[ScriptedCrm] = []

    async def start_the_crm() -> None:
        if not started:
            started.append(await serve(port=port))

    pacing.on_sleep = start_the_crm
    async with pacing.client(f"http://127.0.0.1:{port}/v1") as client:
        deal_id = await create(client)

    assert deal_id == 7
    assert started[0].seen == ["POST /v1/agreements"]
    assert len(pacing.sleeps) == 1


async def test_create_gives_up_on_a_crm_that_stays_down(pacing: Pacing) -> None:
    """Refused every time: max_attempts tries, then the never-sent error."""
    url = f"http://127.0.0.1:{closed_port()}/v1"

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(url, max_attempts=3) as client:
            with pytest.raises(TransportError) as caught:
                await create(client)

    assert (caught.value.request_sent, caught.value.attempts) == (False, 3)
    assert [e["attempt"] for e in calls_logged(logs)] == [1, 2, 3]
    assert pacing.slots == 3
    assert len(pacing.sleeps) == 2


# --- the account's rate limit -----------------------------------------------


async def test_every_attempt_takes_a_slot_of_the_limiter(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Retries are requests too: slots taken = requests the CRM saw."""
    crm = await serve(503, (429, {"Retry-After": "0"}), "ok", (429, {}))

    async with pacing.client(crm.url) as client:
        await client.get_deal(7)  # 503, 429, 200: sent three times
        await create(client)  # 429, then created: sent twice

    assert len(crm.seen) == 5
    assert pacing.slots == 5


class HeldLimiter:
    """A limiter that lets a request through only when the test releases a slot."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(0)
        self.waiting = 0

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._slots.release()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.001)


async def test_no_request_leaves_without_a_slot(serve: ServeCrm) -> None:
    """Concurrent calls of one client queue on its one limiter, a slot each."""
    crm = await serve()
    limiter = HeldLimiter()

    async with KeepinCRMClient(crm.url, TOKEN, limiter=limiter) as client:
        calls = [asyncio.create_task(client.get_deal(n)) for n in (1, 2, 3)]
        await until(lambda: limiter.waiting == 3)
        assert crm.seen == []

        limiter.release()
        await until(lambda: len(crm.seen) == 1)
        await asyncio.sleep(0.05)
        assert len(crm.seen) == 1 and limiter.waiting == 2

        limiter.release(2)
        await asyncio.gather(*calls)

    assert len(crm.seen) == 3


async def test_the_account_limiter_spaces_requests_evenly() -> None:
    """90 a minute: one slot at a time, the next after 60/90 s; no burst."""
    limiter = account_limiter(90)

    assert limiter.time_period == pytest.approx(60 / 90)
    assert limiter.has_capacity()
    await limiter.acquire()
    assert not limiter.has_capacity()


def test_nonsense_limits_are_refused() -> None:
    """A rate or an attempt count below one cannot be honoured."""
    with pytest.raises(ValueError, match="requests_per_minute"):
        KeepinCRMClient("http://crm.test/v1", TOKEN, requests_per_minute=0)
    with pytest.raises(ValueError, match="max_attempts"):
        KeepinCRMClient("http://crm.test/v1", TOKEN, max_attempts=0)


async def test_from_settings_takes_the_limit_and_the_retries(
    serve: ServeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[crm] settings: the rate reaches the limiter, max_attempts the retries."""
    rates: list[int] = []

    def recording_limiter(requests_per_minute: int) -> Any:
        rates.append(requests_per_minute)
        return account_limiter(60_000)

    monkeypatch.setattr(client_module, "account_limiter", recording_limiter)
    crm = await serve(503, 503, 503)
    settings = CrmSettings(
        base_url=crm.url,
        token=TOKEN,
        requests_per_minute=120,
        max_attempts=2,
        retry_initial_seconds=0.001,
        retry_max_seconds=0.002,
    )

    async with KeepinCRMClient.from_settings(settings) as client:
        with pytest.raises(ServerError) as caught:
            await client.get_deal(7)

    assert rates == [120]
    assert caught.value.attempts == 2
    assert len(crm.seen) == 2


# --- logs -------------------------------------------------------------------


async def test_each_attempt_and_each_retry_is_logged(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """A call line per attempt; a WARNING per retry with attempts left and wait."""
    crm = await serve(503, (429, {"Retry-After": "1"}))

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(crm.url) as client:
            await client.get_deal(7)

    calls = calls_logged(logs)
    assert [(c["attempt"], c["status"]) for c in calls] == [
        (1, 503),
        (2, 429),
        (3, 200),
    ]
    for call in calls:
        assert (call["method"], call["path"]) == ("GET", "/agreements/7")
        assert isinstance(call["elapsed_ms"], int)
    retries = retries_logged(logs)
    assert [e["log_level"] for e in retries] == ["warning", "warning"]
    assert [(e["attempt"], e["attempts_left"]) for e in retries] == [(1, 4), (2, 3)]
    assert [e["retry_in"] for e in retries] == [round(pacing.sleeps[0], 3), 1.0]
    assert [e["status"] for e in retries] == [503, 429]


async def test_a_failed_attempt_is_logged_with_status_zero(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """No answer: the attempt's line says status 0 and what went wrong."""
    crm = await serve("reset", "reset")

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(crm.url) as client:
            await client.get_deal(7)

    failed, answered = calls_logged(logs)
    assert (failed["event"], failed["status"], failed["attempt"]) == (
        "keepincrm call failed",
        0,
        1,
    )
    assert "ServerDisconnectedError" in failed["error"]
    assert (answered["status"], answered["attempt"]) == (200, 2)


async def test_the_token_never_reaches_a_log_line(
    serve: ServeCrm, pacing: Pacing
) -> None:
    """Through failures, retries and give-ups, no line carries the API key."""
    crm = await serve((429, {"Retry-After": "0"}), "reset", "reset", 502, 500)

    with structlog.testing.capture_logs() as logs:
        async with pacing.client(crm.url, max_attempts=3) as client:
            with pytest.raises(ServerError) as caught:
                await client.get_deal(7)
            with pytest.raises(ServerError):
                await create(client)
        async with pacing.client(f"http://127.0.0.1:{closed_port()}/v1") as down:
            with pytest.raises(TransportError):
                await create(down)

    assert retries_logged(logs) and calls_logged(logs)
    assert all(TOKEN not in repr(entry) for entry in logs)
    assert TOKEN not in str(caught.value)

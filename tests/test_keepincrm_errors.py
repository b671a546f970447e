"""How the KeepinCRM client turns each failure into one of its errors.

Answers by status are mocked with aioresponses (through the aiohttp 3.14
adapter); failures without an answer are produced for real on loopback, since
which exception aiohttp raises there is exactly what the mapping depends on.
Each client here sends a request once (`max_attempts=1`): which errors the
client retries, and when, is tests/test_keepincrm_retries.py.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import RawTestServer, TestServer

from projections.keepincrm import (
    KeepinCRMClient,
    NotFound,
    PaymentRequired,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
    UnexpectedAnswer,
    UnverifiedCertificate,
    ValidationFailed,
)
from tests.aioresponses_compat import aioresponses

BASE_URL = "http://crm.test/v1"
TOKEN = "mock-secret-91c2"
DEALS = re.compile(r"^http://crm\.test/v1/agreements(\?.*)?$")


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    """aioresponses, active for the test."""
    mock = aioresponses()
    with mock:
        yield mock


def single_try(url: str, timeout: float = 30) -> KeepinCRMClient:
    """A client that sends each request once: the first error is the one raised."""
    return KeepinCRMClient(url, TOKEN, timeout=timeout, max_attempts=1)


@pytest.fixture
async def crm() -> AsyncIterator[KeepinCRMClient]:
    """A client of the mocked CRM."""
    async with single_try(BASE_URL) as client:
        yield client


async def create_refused(crm: KeepinCRMClient) -> Exception:
    """The error a create call raises."""
    with pytest.raises(Exception) as caught:
        await crm.create_deal({"title": "№ 1"})
    assert TOKEN not in str(caught.value)
    return caught.value


async def test_payment_required(mocked: aioresponses, crm: KeepinCRMClient) -> None:
    """402 (the free plan) is PaymentRequired, and retrying will not help."""
    mocked.post(DEALS, status=402, body="")
    error = await create_refused(crm)
    assert isinstance(error, PaymentRequired)
    assert (error.status, error.retryable) == (402, False)
    assert "free plan" in str(error)


async def test_unauthorized(mocked: aioresponses, crm: KeepinCRMClient) -> None:
    """401 is Unauthorized."""
    mocked.post(DEALS, status=401, payload={"message": "Unauthorized"})
    error = await create_refused(crm)
    assert isinstance(error, Unauthorized)
    assert (error.status, error.retryable) == (401, False)


async def test_not_found_with_an_html_body(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """404 with a page for a body is NotFound."""
    mocked.get(
        f"{BASE_URL}/agreements/7",
        status=404,
        body="<h1>404</h1>",
        content_type="text/html",
    )
    with pytest.raises(NotFound) as caught:
        await crm.get_deal(7)
    assert (caught.value.status, caught.value.retryable) == (404, False)
    assert "GET /agreements/7" in str(caught.value)


async def test_rate_limited_with_retry_after_seconds(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """429 is RateLimited and carries Retry-After in seconds."""
    mocked.post(DEALS, status=429, headers={"Retry-After": "7"}, body="")
    error = await create_refused(crm)
    assert isinstance(error, RateLimited)
    assert (error.status, error.retryable, error.retry_after) == (429, True, 7.0)


async def test_rate_limited_with_retry_after_date(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A Retry-After given as an HTTP date becomes the seconds until then."""
    moment = datetime.now(UTC) + timedelta(seconds=30)
    mocked.post(
        DEALS, status=429, headers={"Retry-After": format_datetime(moment, True)}
    )
    error = await create_refused(crm)
    assert isinstance(error, RateLimited)
    assert error.retry_after is not None
    assert 25 <= error.retry_after <= 30


async def test_rate_limited_without_retry_after(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """429 without Retry-After leaves the wait to the caller."""
    mocked.post(DEALS, status=429, body="")
    error = await create_refused(crm)
    assert isinstance(error, RateLimited)
    assert error.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_failure_is_retryable(
    mocked: aioresponses, crm: KeepinCRMClient, status: int
) -> None:
    """5xx is a retryable ServerError."""
    mocked.post(
        DEALS, status=status, body="Service Unavailable", content_type="text/plain"
    )
    error = await create_refused(crm)
    assert isinstance(error, ServerError)
    assert (error.status, error.retryable) == (status, True)


async def test_bare_400_is_a_server_error_not_retried(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A bare 400 without detail is a ServerError that retrying will not change."""
    mocked.post(DEALS, status=400, body="")
    error = await create_refused(crm)
    assert isinstance(error, ServerError)
    assert (error.status, error.retryable) == (400, False)


async def test_400_with_detail_is_a_refusal(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A 400 that says why is a ValidationFailed with the CRM's words."""
    mocked.post(DEALS, status=400, payload={"message": "Invalid discount_kind"})
    error = await create_refused(crm)
    assert isinstance(error, ValidationFailed)
    assert str(error) == "400 Invalid discount_kind"


async def test_422_with_a_flat_list_of_errors(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A 422 whose errors are a flat list keeps them and reads well."""
    mocked.post(
        DEALS,
        status=422,
        payload={"message": "Validation failed", "errors": ["Title can't be blank"]},
    )
    error = await create_refused(crm)
    assert isinstance(error, ValidationFailed)
    assert error.errors == ["Title can't be blank"]
    assert error.message == "Validation failed"
    assert str(error) == "422 Title can't be blank"


async def test_422_with_errors_by_field(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A 422 whose errors are keyed by field names each field in its text."""
    errors = {"jobs_attributes[0].product_attributes.price": ["must be a number"]}
    mocked.post(
        DEALS, status=422, payload={"message": "Validation failed", "errors": errors}
    )
    error = await create_refused(crm)
    assert isinstance(error, ValidationFailed)
    assert error.errors == errors
    assert (
        str(error)
        == "422 jobs_attributes[0].product_attributes.price: must be a number"
    )


async def test_created_without_an_id_is_unexpected(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A 201 that names no deal id is an UnexpectedAnswer, not a silent success."""
    mocked.post(DEALS, status=201, payload={"created_at": "2026-12-03T10:00:00Z"})
    error = await create_refused(crm)
    assert isinstance(error, UnexpectedAnswer)


async def test_redirect_is_not_followed(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """A redirect is an UnexpectedAnswer: the token is not carried elsewhere."""
    mocked.post(DEALS, status=302, headers={"Location": "http://elsewhere.test/"})
    error = await create_refused(crm)
    assert isinstance(error, UnexpectedAnswer)
    assert error.status == 302


async def test_token_stays_out_of_the_logs(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """Neither a call nor its failure puts the token into a log line."""
    mocked.get(DEALS, payload={"items": [], "pagination": {"total_pages": 0}})
    mocked.post(DEALS, exception=aiohttp.ServerDisconnectedError())

    with structlog.testing.capture_logs() as logs:
        await crm.ping()
        await create_refused(crm)

    assert len(logs) == 2
    assert all(TOKEN not in repr(entry) for entry in logs)


async def test_mocked_transport_failures(
    mocked: aioresponses, crm: KeepinCRMClient
) -> None:
    """aiohttp's transport exceptions become TransportError, with the cause kept."""
    mocked.post(DEALS, exception=aiohttp.ServerDisconnectedError())
    mocked.post(DEALS, exception=aiohttp.ClientOSError(104, "Connection reset by peer"))

    for _ in range(2):
        error = await create_refused(crm)
        assert isinstance(error, TransportError)
        assert (error.status, error.retryable, error.request_sent) == (0, True, True)
        assert isinstance(error.__cause__, aiohttp.ClientError)


async def test_connection_refused_was_never_sent() -> None:
    """A refused connection is a TransportError whose request certainly never left."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async with single_try(f"http://127.0.0.1:{port}/v1") as crm:
        error = await create_refused(crm)

    assert isinstance(error, TransportError)
    assert (error.status, error.retryable, error.request_sent) == (0, True, False)
    assert isinstance(error.__cause__, aiohttp.ClientConnectorError)


async def test_dropped_connection_leaves_the_outcome_uncertain() -> None:
    """A connection closed after the request arrived may hide a stored deal."""
    received: list[bytes] = []

    async def read_then_hang_up(request: web.BaseRequest) -> web.StreamResponse:
        received.append(await request.read())
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    async with (
        RawTestServer(read_then_hang_up) as server,
        single_try(str(server.make_url("/v1"))) as crm,
    ):
        error = await create_refused(crm)

    assert received, "the CRM got the request before the connection dropped"
    assert isinstance(error, TransportError)
    assert error.request_sent
    assert isinstance(error.__cause__, aiohttp.ServerDisconnectedError)


async def test_timeout_leaves_the_outcome_uncertain() -> None:
    """No answer within the timeout is a TransportError that may have been acted on."""

    async def answer_too_late(request: web.BaseRequest) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({"id": 1}, status=201)

    async with RawTestServer(answer_too_late) as server:
        url = str(server.make_url("/v1"))
        async with single_try(url, timeout=0.2) as crm:
            error = await create_refused(crm)

    assert isinstance(error, TransportError)
    assert (error.retryable, error.request_sent) == (True, True)
    assert "no answer within 0.2s" in str(error)
    assert isinstance(error.__cause__, TimeoutError)


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 that no one has signed."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_a_self_signed_crm_is_refused_before_the_token_is_sent(
    self_signed: ssl.SSLContext,
) -> None:
    """HTTPS with an unverifiable certificate: a clear error, no request, no retry."""
    received: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(request.path)
        return web.json_response({"items": []})

    app = web.Application()
    app.router.add_get("/v1/agreements", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=self_signed)
    url = str(server.make_url("/v1"))
    try:
        # Five attempts allowed: a certificate error must not use them.
        async with KeepinCRMClient(url, TOKEN, max_attempts=5) as client:
            with pytest.raises(UnverifiedCertificate) as caught:
                await client.ping()
    finally:
        await server.close()

    assert url.startswith("https://127.0.0.1:")
    message = str(caught.value)
    assert message.startswith("GET /agreements: the CRM's TLS certificate cannot be")
    assert "self-signed certificate" in message
    assert caught.value.attempts == 1
    assert received == []

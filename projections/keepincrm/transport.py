"""Sending one call to the KeepinCRM API: the session, the rate limiter, the retries.

Every call of the client goes through `Transport.answered`, which sends it under
the account-wide rate limiter and retries it (tenacity) while the failure may
pass and sending again is safe:

    GET, on any passing failure     timeout, dropped connection, 5xx, 429
    POST, PATCH (not idempotent)    only when the CRM provably did not act:
                                    the connection never opened, or a 429

A POST or PATCH that timed out, lost its connection after sending, or got a
5xx may have been stored; it is raised at once, retryable, and the projection
settles it on its next pass by looking the deal up by its marker. Failures
come out as `errors.KeepinCRMError` subclasses (see `failures`), with aiohttp's
own exceptions kept as their cause.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Final, Protocol

import aiohttp
import msgspec
import structlog
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from projections.keepincrm.errors import (
    KeepinCRMError,
    RateLimited,
    TransportError,
    UnexpectedAnswer,
    UnverifiedCertificate,
)
from projections.keepincrm.failures import answer_error, transport_error

JSONObject = dict[str, Any]
QueryParams = list[tuple[str, str]]

# Methods that change nothing on the CRM, however often they are sent.
# aiohttp itself also sends such a request once more, within one attempt,
# when its connection drops (RFC 9112, 9.3.1); that resend takes no slot of
# the limiter and does not count as an attempt. It never resends POST/PATCH.
_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD"})

# The longest Retry-After a call waits out in place. A 429 is honoured in
# full up to this; one asking for longer is raised at once (retryable), so a
# call does not hold the daemon for longer than a few minutes.
RETRY_AFTER_CAP_SECONDS: Final = 300.0

_LOG = structlog.get_logger("ocsync.keepincrm")

# Money leaves as JSON numbers, exactly as the Decimal holds it.
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")

# Amounts in answers stay exact: 3629.60 must not come back as a float 3629.6.
_ANSWER_DECODER = msgspec.json.Decoder(float_hook=Decimal)


@dataclass(frozen=True, kw_only=True)
class Answered:
    """How the CRM answered a call: its HTTP status, and the attempt it took."""

    status: int
    attempts: int


class RateLimiter(Protocol):
    """What the client needs of a rate limiter: one slot per request sent."""

    async def acquire(self) -> None: ...


def account_limiter(requests_per_minute: int) -> AsyncLimiter:
    """The limiter for one CRM account: requests spaced evenly, no bursts.

    A bucket of one slot that frees every 60/`requests_per_minute` seconds, so
    no window of a minute ever holds more than `requests_per_minute` + 1
    requests, however the CRM counts its limit.
    """
    if requests_per_minute < 1:
        raise ValueError(
            f"requests_per_minute must be at least 1, not {requests_per_minute}"
        )
    return AsyncLimiter(1, 60 / requests_per_minute)


class Transport:
    """The HTTP side of one KeepinCRM account: every request of its client.

    A `session` passed in stays open when the transport closes (its owner closes
    it); otherwise the transport makes its own. Every request, each retry
    included, first takes a slot of `limiter`. A call is sent at most
    `max_attempts` times (at least 1), waiting `retry_initial_seconds` doubled
    on each retry (plus up to as much again of jitter), at most
    `retry_max_seconds`; a 429 waits its Retry-After instead. `sleep` is how it
    waits between attempts.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        session: aiohttp.ClientSession | None,
        limiter: RateLimiter,
        max_attempts: int,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "X-Auth-Token": token,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._closed = False

        self._limiter = limiter
        self._max_attempts = max_attempts
        self._backoff = wait_exponential_jitter(
            multiplier=retry_initial_seconds,
            max=retry_max_seconds,
            jitter=retry_initial_seconds,
        )
        self._sleep = sleep

    def __repr__(self) -> str:
        # The token stays out of reprs, and so out of tracebacks and logs.
        return f"Transport(base_url={self.base_url!r})"

    async def close(self) -> None:
        """Close the transport's own session; a closed one cannot be reopened."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send a request, retrying it when that is safe and may help.

        Returns the decoded JSON answer (None when empty).
        """
        answer, _ = await self.answered(method, path, params=params, body=body)
        return answer

    async def answered(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[Any, Answered]:
        """`request`, with the status and the attempt that got the answer.

        Every call passes through here and nowhere else, so the retry rules
        and the rate limiter hold for all of them.
        """
        data = _ENCODER.encode(body) if body is not None else None
        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self._max_attempts),
            wait=self._pause,
            retry=retry_if_exception(
                partial(_worth_retrying, idempotent=method in _IDEMPOTENT_METHODS)
            ),
            before_sleep=partial(self._log_retry, method, path),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                number = attempt.retry_state.attempt_number
                try:
                    status, answer = await self._send(
                        method, path, params, data, number
                    )
                    return answer, Answered(status=status, attempts=number)
                except KeepinCRMError as exc:
                    exc.attempts = number
                    raise
        # tenacity either returns the answer above or raises the last error.
        raise AssertionError(f"{method} {path}: retries ended without an outcome")

    async def _send(
        self,
        method: str,
        path: str,
        params: QueryParams | None,
        data: bytes | None,
        attempt: int,
    ) -> tuple[int, Any]:
        """Send the request once, under the rate limiter; raise its error if any.

        Returns the status and the decoded answer.
        """
        session = self.open_session()
        where = f"{method} {path}"
        await self._limiter.acquire()
        started = time.monotonic()

        try:
            async with session.request(
                method,
                f"{self.base_url}{path}",
                params=params,
                data=data,
                headers=self._headers,
                timeout=self._timeout,
                # The API does not redirect; following one would carry the
                # token to wherever it points.
                allow_redirects=False,
            ) as response:
                status = response.status
                headers = response.headers
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            _LOG.debug(
                "keepincrm call failed",
                method=method,
                path=path,
                status=0,
                attempt=attempt,
                elapsed_ms=_elapsed_ms(started),
                error=f"{type(exc).__name__}: {exc}",
            )
            raise transport_error(where, exc, self._timeout.total) from exc

        _LOG.debug(
            "keepincrm call",
            method=method,
            path=path,
            status=status,
            attempt=attempt,
            elapsed_ms=_elapsed_ms(started),
        )
        if not 200 <= status < 300:
            raise answer_error(where, status, headers.get("Retry-After"), payload)
        if not payload.strip():
            return status, None
        try:
            return status, _ANSWER_DECODER.decode(payload)
        except msgspec.DecodeError as exc:
            raise UnexpectedAnswer(
                f"{where}: {status} with a body that is not JSON: {payload[:200]!r}",
                status=status,
            ) from exc

    def _pause(self, state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: Retry-After, else the backoff."""
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return error.retry_after
        return self._backoff(state)

    def _log_retry(self, method: str, path: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        _LOG.warning(
            "keepincrm call retried",
            method=method,
            path=path,
            status=getattr(error, "status", 0),
            error=str(error),
            attempt=state.attempt_number,
            attempts_left=self._max_attempts - state.attempt_number,
            retry_in=round(state.upcoming_sleep, 3),
        )

    def open_session(self) -> aiohttp.ClientSession:
        """The session, made on first use; a closed transport cannot reopen."""
        if self._closed:
            raise RuntimeError("this KeepinCRMClient is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _worth_retrying(error: BaseException, *, idempotent: bool) -> bool:
    """Whether to send the request again after `error`.

    Only a failure that may pass is retried. A request that is not idempotent
    is sent again only when the CRM provably did not act on it: the
    connection never opened, or it answered 429 (refused unprocessed). After
    a timeout, a dropped connection or a 5xx it may have stored the deal, and
    the caller settles that by looking it up, not by sending it twice.
    """
    if not isinstance(error, KeepinCRMError) or not error.retryable:
        return False
    if isinstance(error, UnverifiedCertificate):
        return False
    if isinstance(error, RateLimited):
        return error.retry_after is None or error.retry_after <= RETRY_AFTER_CAP_SECONDS
    if idempotent:
        return True
    return isinstance(error, TransportError) and not error.request_sent


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)

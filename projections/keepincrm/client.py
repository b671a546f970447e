"""Async client of the KeepinCRM REST API: deals, clients and the catalogue.

Every call goes through `KeepinCRMClient._request`, which sends it under the
account-wide rate limiter and retries it (tenacity) while the failure may pass
and sending again is safe:

    GET, on any passing failure     timeout, dropped connection, 5xx, 429
    POST, PATCH (not idempotent)    only when the CRM provably did not act:
                                    the connection never opened, or a 429

A POST or PATCH that timed out, lost its connection after sending, or got a
5xx may have been stored; it is raised at once, retryable, and the projection
settles it on its next pass by looking the deal up by its marker. Failures
come out as `errors.KeepinCRMError` subclasses, with aiohttp's own exceptions
kept as their cause.

Choices the API notes grade only *schema* or *guess* each live in one named
constant or function below, so that checking them against a live account and
fixing them is a one-line change.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from functools import partial
from types import TracebackType
from typing import Any, Final, Protocol, Self

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

from daemon.settings import CrmSettings
from projections.keepincrm.errors import (
    KeepinCRMError,
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

JSONObject = dict[str, Any]
QueryParams = list[tuple[str, str]]

DEFAULT_BASE_URL: Final = "https://api.keepincrm.com/v1"

# seen (KeepinCRM's own OpenCart module): both go in the query string of the
# create call, not in its body. `ignore_price_list` keeps the line prices we
# send instead of the CRM's price list; `products_total_as_total=false` keeps
# the total we send instead of the sum of the lines. guess: a PATCH that
# carries lines is priced by the same rule, so it sends the same query.
CREATE_DEAL_QUERY: Final[Mapping[str, str]] = {
    "ignore_price_list": "true",
    "products_total_as_total": "false",
}

# guess: lists answer 25 items a page; whether `per_page` is honoured is
# unconfirmed, so no size is asked. Paging follows `pagination.total_pages`,
# whatever the size. To ask one: ("per_page", "100").
PAGE_SIZE_PARAM: Final[tuple[str, str] | None] = None

# seen: `q[trigram_idx_cont]` finds clients by a phone (or part of one).
CLIENT_PHONE_FILTER: Final = "trigram_idx_cont"

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


@dataclass(frozen=True, kw_only=True)
class Created(Answered):
    """A deal the CRM created, and how it answered."""

    deal_id: int


def custom_field_filter(field: str, value: str) -> tuple[str, str]:
    """The query parameter that selects deals whose custom field `field` is `value`.

    seen: the Ransack filter `q[custom_fields_jcont][<key>]`. guess: which of the
    three spellings of a custom field's name it takes (`field_<id>`, the machine
    key `<slug>_<id>` that reads return, or the title); `field` is passed as
    configured, so the spelling is the caller's setting.
    """
    return (f"q[custom_fields_jcont][{field}]", value)


def close_as_failed_fields() -> JSONObject:
    """The fields that close a deal as failed, to merge into a PATCH body.

    guess: no source shows how the API closes a deal. The read shape of
    `GET /agreements/{id}` has `result` (null, "successful" or "failed"), so we
    infer that a PATCH setting `result` to "failed" does it; it may instead take
    a stage of the funnel, or a call of its own.
    """
    return {"result": "failed"}


def nested_line_changes(
    *,
    changed: Mapping[int, Mapping[str, Any]] | None = None,
    removed: Iterable[int] = (),
    added: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """`jobs_attributes` for a PATCH that changes a deal's lines by their ids.

    schema: Rails nested attributes, never seen run live. An item with `id`
    changes that line, `id` with `_destroy` removes it, and one without `id`
    adds a line. Re-sending lines without their ids duplicates them.
    """
    return [
        *({**fields, "id": line_id} for line_id, fields in (changed or {}).items()),
        *({"id": line_id, "_destroy": True} for line_id in removed),
        *(dict(line) for line in added),
    ]


def ransack_params(filters: Mapping[str, Any]) -> QueryParams:
    """Spell keyword filters as Ransack query parameters.

    `title_eq="№ 1"` becomes `q[title_eq]=№ 1`; a mapping value nests one level
    (`custom_fields_jcont={"field_7": "1"}`), a list repeats (`q[id_in][]=`).
    """
    params: QueryParams = []
    for predicate, value in filters.items():
        key = f"q[{predicate}]"
        if isinstance(value, Mapping):
            params.extend(
                (f"{key}[{sub}]", _query_value(v)) for sub, v in value.items()
            )
        elif isinstance(value, list | tuple):
            params.extend((f"{key}[]", _query_value(v)) for v in value)
        else:
            params.append((key, _query_value(value)))
    return params


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


class KeepinCRMClient:
    """A connection to one KeepinCRM account.

    Use it as an async context manager. A `session` passed in stays open when
    the client closes (its owner closes it); otherwise the client makes its own.

    Every request, each retry included, first takes a slot of `limiter`; make
    one client per account and share it, so that all sites share the limit.
    The default limiter allows `requests_per_minute`. A call is sent at most
    `max_attempts` times, waiting `retry_initial_seconds` doubled on each retry
    (plus up to as much again of jitter), at most `retry_max_seconds`; a 429
    waits its Retry-After instead. `sleep` is how the client waits between
    attempts (tests pass one that records the wait).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30,
        session: aiohttp.ClientSession | None = None,
        requests_per_minute: int = 90,
        max_attempts: int = 5,
        retry_initial_seconds: float = 1.0,
        retry_max_seconds: float = 60.0,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        self._base_url = base_url.rstrip("/")
        self._headers = {
            "X-Auth-Token": token,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self._closed = False

        self._limiter: RateLimiter = (
            limiter if limiter is not None else account_limiter(requests_per_minute)
        )
        self._max_attempts = max_attempts
        self._backoff = wait_exponential_jitter(
            multiplier=retry_initial_seconds,
            max=retry_max_seconds,
            jitter=retry_initial_seconds,
        )
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls, crm: CrmSettings, *, session: aiohttp.ClientSession | None = None
    ) -> Self:
        """The client of the account `crm` describes, with its limit and retries."""
        return cls(
            crm.base_url,
            crm.token,
            timeout=crm.timeout,
            session=session,
            requests_per_minute=crm.requests_per_minute,
            max_attempts=crm.max_attempts,
            retry_initial_seconds=crm.retry_initial_seconds,
            retry_max_seconds=crm.retry_max_seconds,
        )

    def __repr__(self) -> str:
        # The token stays out of reprs, and so out of tracebacks and logs.
        return f"KeepinCRMClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client's own session; a closed client cannot be reopened."""
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def create_deal(self, deal: Mapping[str, Any]) -> int:
        """Create a deal and return the id the CRM gave it."""
        return (await self.create_deal_answered(deal)).deal_id

    async def create_deal_answered(self, deal: Mapping[str, Any]) -> Created:
        """Create a deal: its id, the status the CRM answered and the attempts."""
        answer, answered = await self._answered(
            "POST", "/agreements", params=list(CREATE_DEAL_QUERY.items()), body=deal
        )
        deal_id = _expect_object(answer, "POST /agreements").get("id")
        if not isinstance(deal_id, int):
            raise UnexpectedAnswer(
                f"POST /agreements: the answer has no deal id: {answer!r:.200}",
                status=answered.status,
            )
        return Created(
            status=answered.status, attempts=answered.attempts, deal_id=deal_id
        )

    async def get_deal(self, deal_id: int) -> JSONObject:
        """Read one deal in the CRM's read shape (`jobs`, `client`, ...)."""
        path = f"/agreements/{deal_id}"
        return _expect_object(await self._request("GET", path), f"GET {path}")

    async def list_deals(self, **filters: Any) -> AsyncIterator[JSONObject]:
        """Every deal matching the Ransack `filters` (`title_eq=...`), page by page."""
        async for deal in self._pages("/agreements", ransack_params(filters)):
            yield deal

    async def find_deals_by_custom_field(
        self, field: str, value: str
    ) -> list[JSONObject]:
        """The deals whose custom field `field` holds `value`."""
        params = [custom_field_filter(field, value)]
        return [deal async for deal in self._pages("/agreements", params)]

    async def update_deal(self, deal_id: int, fields: Mapping[str, Any]) -> Answered:
        """Change a deal's fields; lines change only by their `id` (see the notes).

        A change that carries lines sends the create call's query too: without
        `ignore_price_list` a corrected line of a catalogue item would get the
        CRM's price-list price instead of the price the customer saw.
        """
        params = (
            list(CREATE_DEAL_QUERY.items()) if "jobs_attributes" in fields else None
        )
        _, answered = await self._answered(
            "PATCH", f"/agreements/{deal_id}", params=params, body=fields
        )
        return answered

    async def add_deal_comment(self, deal_id: int, note: str) -> int:
        """Add a comment (HTML accepted) to a deal; return the comment's id.

        seen: `POST /agreements/{id}/comments` with `{"note": ...}`. The answer
        carrying the new comment's `id` is the sandbox's shape, unconfirmed live.
        """
        path = f"/agreements/{deal_id}/comments"
        answer = await self._request("POST", path, body={"note": note})
        comment_id = _expect_object(answer, f"POST {path}").get("id")
        if not isinstance(comment_id, int) or isinstance(comment_id, bool):
            raise UnexpectedAnswer(
                f"POST {path}: the answer has no comment id: {answer!r:.200}",
                status=201,
            )
        return comment_id

    async def list_materials(self, **filters: Any) -> AsyncIterator[JSONObject]:
        """Every catalogue item ("material") matching the Ransack `filters`."""
        async for material in self._pages("/materials", ransack_params(filters)):
            yield material

    async def find_clients_by_phone(self, phone: str) -> list[JSONObject]:
        """The clients one of whose phones contains `phone`."""
        params = ransack_params({CLIENT_PHONE_FILTER: phone})
        return [client async for client in self._pages("/clients", params)]

    async def ping(self) -> None:
        """Check the address and the key: raises unless the CRM answers a list."""
        await self._request("GET", "/agreements", params=[("page", "1")])

    async def _pages(self, path: str, params: QueryParams) -> AsyncIterator[JSONObject]:
        """Walk a paginated list until its last page."""
        page = 1
        while True:
            query = [*params, ("page", str(page))]
            if PAGE_SIZE_PARAM is not None:
                query.append(PAGE_SIZE_PARAM)
            answer = _expect_object(
                await self._request("GET", path, params=query), f"GET {path}"
            )

            items = answer.get("items")
            if not isinstance(items, list):
                raise UnexpectedAnswer(f"GET {path}: the answer has no items list")
            for item in items:
                yield item

            # A missing or odd pagination block means a single page.
            pagination = answer.get("pagination")
            total_pages = (
                pagination.get("total_pages") if isinstance(pagination, dict) else None
            )
            if not items or not isinstance(total_pages, int) or page >= total_pages:
                return
            page += 1

    async def _request(
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
        answer, _ = await self._answered(method, path, params=params, body=body)
        return answer

    async def _answered(
        self,
        method: str,
        path: str,
        *,
        params: QueryParams | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> tuple[Any, Answered]:
        """`_request`, with the status and the attempt that got the answer.

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
        session = self._open_session()
        where = f"{method} {path}"
        await self._limiter.acquire()
        started = time.monotonic()

        try:
            async with session.request(
                method,
                f"{self._base_url}{path}",
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
            raise _transport_error(where, exc, self._timeout.total) from exc

        _LOG.debug(
            "keepincrm call",
            method=method,
            path=path,
            status=status,
            attempt=attempt,
            elapsed_ms=_elapsed_ms(started),
        )
        if not 200 <= status < 300:
            raise _answer_error(where, status, headers.get("Retry-After"), payload)
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

    def _open_session(self) -> aiohttp.ClientSession:
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


def _transport_error(
    where: str, exc: Exception, timeout: float | None
) -> TransportError:
    """Translate an aiohttp failure, saying whether the CRM may have the request."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return UnverifiedCertificate(
            f"{where}: the CRM's TLS certificate cannot be verified, so the token "
            f"was not sent: {exc.certificate_error}"
        )
    # The connection never opened, so the CRM cannot have seen the request.
    if isinstance(
        exc,
        aiohttp.ClientConnectorError
        | aiohttp.ConnectionTimeoutError
        | aiohttp.InvalidURL,
    ):
        return TransportError(f"{where}: could not connect: {exc}", request_sent=False)
    if isinstance(exc, TimeoutError):
        return TransportError(
            f"{where}: no answer within {timeout}s", request_sent=True
        )
    return TransportError(
        f"{where}: connection lost: {type(exc).__name__}: {exc}", request_sent=True
    )


def _answer_error(
    where: str, status: int, retry_after: str | None, payload: bytes
) -> KeepinCRMError:
    """The error for an answer whose status is not 2xx."""
    if status in (401, 403):
        return Unauthorized(
            f"{where}: {status} the CRM refused the API key", status=status
        )
    if status == 402:
        return PaymentRequired(
            f"{where}: 402 the account is on KeepinCRM's free plan, which has no API",
            status=status,
        )
    if status == 404:
        return NotFound(f"{where}: 404 not found", status=status)
    if status == 429:
        return RateLimited(
            f"{where}: 429 too many requests",
            status=status,
            retry_after=_seconds_to_wait(retry_after),
        )

    detail = _refusal_detail(payload)
    if status in (400, 422) and detail is not None:
        message, errors = detail
        return ValidationFailed(message, status=status, errors=errors)
    if status == 422:
        return ValidationFailed(f"{where}: refused without detail", status=status)
    if status == 400 or status >= 500:
        return ServerError(
            f"{where}: {status} {_excerpt(payload)}".rstrip(), status=status
        )
    return UnexpectedAnswer(
        f"{where}: unexpected {status} {_excerpt(payload)}", status=status
    )


def _refusal_detail(payload: bytes) -> tuple[str, Any] | None:
    """The message and `errors` of a refusal, or None when the body says nothing."""
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    if isinstance(body, list) and body:
        return ("refused", body)
    if not isinstance(body, dict):
        return None

    errors = body.get("errors")
    message = body.get("message") or body.get("error")
    if not errors and not message:
        return None
    return (
        str(message or "refused"),
        errors if isinstance(errors, dict | list) else None,
    )


def _seconds_to_wait(retry_after: str | None) -> float | None:
    """Read Retry-After, given either as seconds or as an HTTP date."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _expect_object(answer: Any, where: str) -> JSONObject:
    if not isinstance(answer, dict):
        raise UnexpectedAnswer(f"{where}: expected a JSON object, got {answer!r:.200}")
    return answer


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _excerpt(payload: bytes) -> str:
    return payload[:200].decode("utf-8", errors="replace").strip()

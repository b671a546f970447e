"""Async client of the KeepinCRM REST API: deals, clients and the catalogue.

Each method is one call of the API, sent by `transport.Transport` (rate limit,
retries, errors); how requests are spelled where the API notes grade it only
*schema* or *guess* lives in `facts`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from daemon.settings import CrmSettings
from projections.keepincrm.errors import UnexpectedAnswer
from projections.keepincrm.facts import (
    CLIENT_PHONE_FILTER,
    CREATE_DEAL_QUERY,
    PAGE_SIZE_PARAM,
    custom_field_filter,
    ransack_params,
)
from projections.keepincrm.transport import (
    Answered,
    JSONObject,
    QueryParams,
    RateLimiter,
    Transport,
    account_limiter,
)

DEFAULT_BASE_URL: Final = "https://api.keepincrm.com/v1"


@dataclass(frozen=True, kw_only=True)
class Created(Answered):
    """A deal the CRM created, and how it answered."""

    deal_id: int


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
        self._transport = Transport(
            base_url,
            token,
            timeout=timeout,
            session=session,
            limiter=(
                limiter if limiter is not None else account_limiter(requests_per_minute)
            ),
            max_attempts=max_attempts,
            retry_initial_seconds=retry_initial_seconds,
            retry_max_seconds=retry_max_seconds,
            sleep=sleep,
        )

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
        return f"KeepinCRMClient(base_url={self._transport.base_url!r})"

    async def __aenter__(self) -> Self:
        self._transport.open_session()
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
        await self._transport.close()

    async def create_deal(self, deal: Mapping[str, Any]) -> int:
        """Create a deal and return the id the CRM gave it."""
        return (await self.create_deal_answered(deal)).deal_id

    async def create_deal_answered(self, deal: Mapping[str, Any]) -> Created:
        """Create a deal: its id, the status the CRM answered and the attempts."""
        answer, answered = await self._transport.answered(
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
        return _expect_object(await self._transport.request("GET", path), f"GET {path}")

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
        _, answered = await self._transport.answered(
            "PATCH", f"/agreements/{deal_id}", params=params, body=fields
        )
        return answered

    async def add_deal_comment(self, deal_id: int, note: str) -> int:
        """Add a comment (HTML accepted) to a deal; return the comment's id.

        seen: `POST /agreements/{id}/comments` with `{"note": ...}`. The answer
        carrying the new comment's `id` is the sandbox's shape, unconfirmed live.
        """
        path = f"/agreements/{deal_id}/comments"
        answer = await self._transport.request("POST", path, body={"note": note})
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
        await self._transport.request("GET", "/agreements", params=[("page", "1")])

    async def _pages(self, path: str, params: QueryParams) -> AsyncIterator[JSONObject]:
        """Walk a paginated list until its last page."""
        page = 1
        while True:
            query = [*params, ("page", str(page))]
            if PAGE_SIZE_PARAM is not None:
                query.append(PAGE_SIZE_PARAM)
            answer = _expect_object(
                await self._transport.request("GET", path, params=query), f"GET {path}"
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


def _expect_object(answer: Any, where: str) -> JSONObject:
    if not isinstance(answer, dict):
        raise UnexpectedAnswer(f"{where}: expected a JSON object, got {answer!r:.200}")
    return answer

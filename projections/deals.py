"""The deal projection: from order events in the log to deals in KeepinCRM.

For each captured snapshot the projection works out the deal the order should be
(`deal_for`, pure). An order with no deal yet gets one: its intent is recorded
(`DealRequested`) before the create call and the CRM's answer afterwards
(`DealCreated` / `DealCreateFailed`). An order whose deal exists has it
corrected in place (`DealUpdated`), never created twice. The projection's
position in the log is written in the same append as those outcome events.

KeepinCRM has no external id on deals: the log is the record of which deal
belongs to which order. A request with no recorded answer (a crash, a lost
response) is settled by looking the deal up by its marker before creating again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import structlog

from daemon.settings import Settings
from events.errors import EventLogError
from events.snapshot import OrderSnapshot
from events.store import EventStore, StreamAppend
from events.types import (
    DealCreated,
    DealCreateFailed,
    DealRelinked,
    DealRequested,
    DealUpdateFailed,
    Event,
    OrderChanged,
    OrderPlaced,
    RetryRequested,
)
from projections.deal import Deal, deal_with_warnings, line_article
from projections.deal_client import client_for, phone_search_term, pick_client
from projections.deal_corrections import (
    CorrectionFailed,
    correct_deal,
    read_line_ids,
)
from projections.errors import DealMappingError, ProjectionError
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import (
    KeepinCRMError,
    PaymentRequired,
    Unauthorized,
)
from projections.order_state import OrderState, fold
from projections.relink import deal_as_sent

CHECKPOINT = "projection:deals"
# Orders held until their articles exist in the CRM catalogue.
HELD = "projection:deals:held"
# Orders whose create failed for a passing reason while the CRM was up: tried
# again at the start of every pass, so that one never holds up the others.
WAITING = "projection:deals:waiting"
_BATCH = 200

log = structlog.get_logger("ocsync.deals")
Logger = structlog.typing.FilteringBoundLogger


class CrmUnavailable(ProjectionError):
    """The CRM could not be reached or refused the account; try the run again."""


@dataclass
class DealsResult:
    created: int = 0
    found: int = 0
    updated: int = 0
    parked: int = 0
    held: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)


class DealProjection:
    """Tails the log from its checkpoint: creates missing deals, corrects others."""

    def __init__(
        self, store: EventStore, crm: KeepinCRMClient, settings: Settings
    ) -> None:
        self._store = store
        self._crm = crm
        self._settings = settings
        self._position = 0
        self._held: set[str] = set()
        self._waiting: set[str] = set()
        self._known_articles: set[str] = set()

    async def run_once(self, stop: asyncio.Event | None = None) -> DealsResult:
        """Project every event after the checkpoint; raises `CrmUnavailable`.

        A CRM that does not answer at all stops the run *without* moving the
        checkpoint past that order, so the next run picks it up again (marker
        first). One deal failing while the CRM answers is set aside as waiting
        and tried again at the start of the next run. When `stop` is set, the
        order in hand is finished and the run ends.
        """
        result = DealsResult()
        self._position = int(await self._store.checkpoint(CHECKPOINT) or 0)
        self._held = set(json.loads(await self._store.checkpoint(HELD) or "[]"))
        self._waiting = set(json.loads(await self._store.checkpoint(WAITING) or "[]"))

        # Orders set aside first: a create that failed, an article that had no
        # catalogue item; each is settled (marker first) or set aside again.
        for stream in sorted(self._waiting | self._held):
            self._waiting.discard(stream)
            state = fold(stream, await self._store.read_stream(stream))
            if state.snapshot is not None:
                await self._sync(state, result)

        while batch := await self._store.read_all(after=self._position, limit=_BATCH):
            for record in batch:
                if stop is not None and stop.is_set():
                    break
                if isinstance(record.event, OrderPlaced | OrderChanged):
                    state = fold(
                        record.stream, await self._store.read_stream(record.stream)
                    )
                    # An older snapshot of an order changed again later in the
                    # log is passed over: the newest one is synced at its turn.
                    if state.snapshot_position == record.position:
                        await self._sync(state, result, at=record.position)
                elif isinstance(record.event, RetryRequested):
                    state = fold(
                        record.stream, await self._store.read_stream(record.stream)
                    )
                    if state.snapshot is not None:
                        await self._sync(state, result, at=record.position)
                self._position = record.position
            await self._store.set_checkpoints(self._checkpoints())
            if stop is not None and stop.is_set():
                break

        log.info(
            "deals projected",
            position=self._position,
            created=result.created,
            found=result.found,
            updated=result.updated,
            parked=result.parked,
            held=result.held,
            unchanged=result.unchanged,
        )
        return result

    async def _sync(
        self, state: OrderState, result: DealsResult, at: int | None = None
    ) -> None:
        """Bring one order's deal in line with its newest snapshot.

        The order is bound to the logging context, so the CRM client's own
        request lines name the order they are for. An error nobody foresaw
        parks this order alone: the others go on, and a restart does not stop
        at it again.
        """
        snapshot = state.snapshot
        assert snapshot is not None
        with structlog.contextvars.bound_contextvars(
            site=snapshot.site,
            order_id=snapshot.order_id,
            stream=state.stream,
            position=state.snapshot_position,
            deal_id=state.deal_id,
        ):
            try:
                await self._sync_order(state, snapshot, result, at)
            except (CrmUnavailable, KeepinCRMError, EventLogError):
                # The CRM or the log failing is every order's matter.
                raise
            except Exception as exc:
                log.exception("order failed with an internal error")
                where = f"site {snapshot.site} order {snapshot.order_id}"
                await self._park(state, f"{where}: internal error: {exc!r}")
                result.parked += 1

    async def _sync_order(
        self,
        state: OrderState,
        snapshot: OrderSnapshot,
        result: DealsResult,
        at: int | None,
    ) -> None:
        if at is not None:
            self._position = at
        bound = log.bind(
            site=snapshot.site,
            order_id=snapshot.order_id,
            stream=state.stream,
            position=state.snapshot_position,
        )
        site = self._settings.site(snapshot.site)

        # A request whose answer was lost may have made the deal: settle that
        # first, since it needs no deal body (a newer snapshot may not map).
        # The deal found is the request's; a snapshot captured since is
        # brought in line below, as any change of the order would be.
        unsettled = state.deal_id is None and state.unanswered_request
        if unsettled and await self._adopt_existing(state, bound):
            result.found += 1

        try:
            deal, warnings = deal_with_warnings(snapshot, site, self._settings.deals)
        except DealMappingError as exc:
            bound.warning("order parked", field=exc.field, reason=str(exc))
            await self._park(state, str(exc))
            result.parked += 1
            return
        for field_name, message in warnings:
            bound.warning("order field kept as typed", field=field_name, reason=message)

        if state.deal_id is not None:
            await self._correct(state, deal, bound, result)
            return

        if self._settings.deals.unlinked_articles == "hold":
            missing = await self._unlinked_articles(snapshot)
            if missing:
                await self._hold(state, missing, bound)
                result.held += 1
                return
        self._held.discard(state.stream)

        # A deal may exist that this log does not know of (a log lost or
        # restored from an older copy): find it by its marker, never make a
        # second one, and bring it in line.
        if await self._adopt_existing(state, bound, by_title=False):
            result.found += 1
            await self._correct(state, deal, bound, result)
            return

        await self._create(state, snapshot, deal, bound, result)

    async def _create(
        self,
        state: OrderState,
        snapshot: OrderSnapshot,
        deal: Deal,
        bound: Logger,
        result: DealsResult,
    ) -> None:
        body = await self._with_known_client(snapshot, deal, bound)
        requested = DealRequested(
            marker=state.stream,
            deal=body,
            source_position=state.snapshot_position,
            order_status=snapshot.status_id,
        )
        await self._append(state, requested, with_checkpoints=False)

        try:
            created = await self._crm.create_deal_answered(body)
        except (Unauthorized, PaymentRequired) as exc:
            bound.error("crm refused the account", status=exc.status, error=str(exc))
            raise CrmUnavailable(str(exc)) from exc
        except KeepinCRMError as exc:
            failure = DealCreateFailed(
                marker=state.stream,
                status=exc.status,
                error=str(exc),
                retryable=exc.retryable,
            )
            if exc.retryable:
                bound.warning("deal create failed", status=exc.status, error=str(exc))
                if not await self._crm_answers():
                    # The CRM is down for every order: stop here, and keep the
                    # checkpoint at this order for the next pass.
                    await self._append(state, failure, with_checkpoints=False)
                    result.failed.append(state.stream)
                    raise CrmUnavailable(str(exc)) from exc
                # The CRM is up, yet this create failed: try it again at the
                # start of each pass (marker first), and go on with the rest.
                self._waiting.add(state.stream)
                await self._append(state, failure)
                result.failed.append(state.stream)
                return
            bound.warning("order parked", status=exc.status, reason=str(exc))
            await self._append(state, failure)
            result.parked += 1
            return

        deal_id = created.deal_id
        bound.info(
            "deal created",
            deal_id=deal_id,
            status=created.status,
            attempt=created.attempts,
        )
        # Every line of a new deal is ocsync's: their ids let a correction
        # remove them and leave the lines a manager adds later.
        line_ids = await read_line_ids(self._crm, deal_id, log=bound)
        await self._append(
            state,
            DealCreated(
                marker=state.stream,
                deal_id=deal_id,
                status=created.status,
                attempts=created.attempts,
                line_ids=line_ids,
            ),
        )
        result.created += 1

    async def _crm_answers(self) -> bool:
        """Whether the CRM answers a plain read: up, or down for everyone."""
        try:
            await self._crm.ping()
        except KeepinCRMError:
            return False
        return True

    async def _correct(
        self, state: OrderState, deal: Deal, bound: Logger, result: DealsResult
    ) -> None:
        assert state.snapshot is not None
        site = self._settings.site(state.snapshot.site)
        try:
            outcome = await correct_deal(
                self._store,
                self._crm,
                state,
                deal,
                site,
                self._checkpoints(),
                bound.bind(deal_id=state.deal_id),
                line_update=self._settings.deals.line_update,
            )
        except CorrectionFailed as exc:
            bound.warning(
                "deal correction failed", status=exc.error.status, error=str(exc)
            )
            refused = isinstance(exc.error, Unauthorized | PaymentRequired)
            if refused or not await self._crm_answers():
                raise CrmUnavailable(str(exc)) from exc
            # Only this deal fails: correct it again next pass, go on.
            assert state.deal_id is not None
            self._waiting.add(state.stream)
            await self._append(
                state,
                DealUpdateFailed(
                    marker=state.stream,
                    deal_id=state.deal_id,
                    status=exc.error.status,
                    error=str(exc),
                    retryable=True,
                ),
            )
            result.failed.append(state.stream)
            return
        match outcome:
            case "updated":
                result.updated += 1
            case "unchanged":
                result.unchanged += 1
            case "refused":
                result.parked += 1

    async def _with_known_client(
        self, snapshot: OrderSnapshot, deal: Deal, bound: Logger
    ) -> Deal:
        """The deal naming an existing CRM client, when settings allow and one fits.

        KeepinCRM keeps one card per client; a wrong merge shows one customer's
        order on another's card, so by default the name must match as well.
        """
        match = self._settings.deals.client_match
        facts = client_for(snapshot, self._settings.deals)
        if match == "never" or facts.phone is None:
            return deal
        try:
            term = phone_search_term(facts.phone)
            candidates = await self._crm.find_clients_by_phone(term)
        except KeepinCRMError as exc:
            if exc.retryable:
                raise CrmUnavailable(str(exc)) from exc
            return deal
        client_id = pick_client(candidates, facts, match)
        if client_id is None:
            return deal
        bound.info("existing client reused", client_id=client_id)
        body = {key: value for key, value in deal.items() if key != "client_attributes"}
        body["client_id"] = client_id
        return body

    async def _unlinked_articles(self, snapshot: OrderSnapshot) -> list[str]:
        """Articles of the order that no CRM catalogue item carries (yet)."""
        fields = self._settings.deals.article_fields
        missing = []
        for line in snapshot.lines:
            article = line_article(line, fields)
            if article is None or article in self._known_articles:
                continue
            try:
                found = [m async for m in self._crm.list_materials(sku_eq=article)]
            except KeepinCRMError as exc:
                raise CrmUnavailable(str(exc)) from exc
            if any(str(item.get("sku", "")).strip() == article for item in found):
                self._known_articles.add(article)
            else:
                missing.append(article)
        return missing

    async def _hold(self, state: OrderState, missing: list[str], bound: Logger) -> None:
        reason = (
            f"held: article {', '.join(missing)} has no item in the CRM catalogue "
            '(deals.unlinked_articles = "hold")'
        )
        already = state.failure is not None and state.failure.error == reason
        self._held.add(state.stream)
        if already:
            await self._store.set_checkpoints(self._checkpoints())
            return
        bound.warning("order held", field="product_attributes.sku", reason=reason)
        await self._append(
            state,
            DealCreateFailed(
                marker=state.stream, status=0, error=reason, retryable=True
            ),
        )

    async def _park(self, state: OrderState, error: str) -> None:
        self._held.discard(state.stream)
        self._waiting.discard(state.stream)
        event: Event = DealCreateFailed(
            marker=state.stream, status=0, error=error, retryable=False
        )
        if state.deal_id is not None:
            event = DealUpdateFailed(
                marker=state.stream,
                deal_id=state.deal_id,
                status=0,
                error=error,
                retryable=False,
            )
        await self._append(state, event)

    async def _adopt_existing(
        self, state: OrderState, bound: Logger, *, by_title: bool = True
    ) -> bool:
        """Find the order's deal in the CRM by its marker (or title) and link it.

        After our own request with no answer, `DealCreated`; for a deal this
        log never asked for, `DealRelinked` with the deal as the CRM shows it,
        so that a correction sends only what really differs.
        """
        marker_field = self._settings.deals.custom_fields.marker
        try:
            found = await self._crm.find_deals_by_custom_field(
                marker_field, state.stream
            )
        except KeepinCRMError as exc:
            raise CrmUnavailable(str(exc)) from exc

        matching = [deal for deal in found if _carries_marker(deal, state.stream)]
        if not matching and by_title:
            matching = await self._found_by_title(state, bound)
        if not matching:
            return False

        deal_id = int(min(deal["id"] for deal in matching))
        bound.info("deal found by marker", deal_id=deal_id)
        if state.sent is not None:
            await self._append(
                state,
                DealCreated(
                    marker=state.stream, deal_id=deal_id, status=200, found=True
                ),
            )
            state.deal_id = deal_id
            return True

        try:
            shown = await self._crm.get_deal(deal_id)
        except KeepinCRMError as exc:
            raise CrmUnavailable(str(exc)) from exc
        await self._append(
            state,
            DealRelinked(
                marker=state.stream, deal_id=deal_id, deal=deal_as_sent(shown)
            ),
        )
        state.deal_id, state.sent = deal_id, deal_as_sent(shown)
        state.sent_status = 0
        return True

    async def _found_by_title(
        self, state: OrderState, bound: Logger
    ) -> list[dict[str, Any]]:
        """The fallback when no deal carries the marker: the exact title.

        The custom-field filter's spelling is unconfirmed against the live
        API; a deal with the title sent is taken when it carries this marker,
        or when it is the only one and carries no marker at all.
        """
        title = str((state.sent or {}).get("title") or "")
        if not title:
            return []
        try:
            candidates = [
                await self._crm.get_deal(int(summary["id"]))
                async for summary in self._crm.list_deals(title_eq=title)
            ]
        except KeepinCRMError as exc:
            raise CrmUnavailable(str(exc)) from exc

        marked = [deal for deal in candidates if _carries_marker(deal, state.stream)]
        if marked:
            return marked
        unmarked = [
            deal for deal in candidates if not _marker_value(deal, self._settings)
        ]
        if len(unmarked) == 1:
            bound.warning(
                "deal found by title, not by marker",
                deal_id=unmarked[0].get("id"),
                field=self._settings.deals.custom_fields.marker,
            )
            return unmarked
        return []

    async def _append(
        self, state: OrderState, event: Event, *, with_checkpoints: bool = True
    ) -> None:
        """Append an outcome; with it, the position and the held orders."""
        checkpoints = self._checkpoints() if with_checkpoints else None
        [written] = await self._store.append(
            [StreamAppend(state.stream, state.version, [event])], checkpoints
        )
        state.version = written.version

    def _checkpoints(self) -> dict[str, str]:
        return {
            CHECKPOINT: str(self._position),
            HELD: json.dumps(sorted(self._held)),
            WAITING: json.dumps(sorted(self._waiting)),
        }


def _marker_value(deal: dict[str, Any], settings: Settings) -> str:
    name = settings.deals.custom_fields.marker
    for item in deal.get("custom_fields_detailed") or deal.get("custom_fields") or []:
        if isinstance(item, dict) and item.get("name") == name:
            return str(item.get("value") or "").strip()
    return ""


def _carries_marker(deal: dict[str, Any], marker: str) -> bool:
    # The CRM's custom-field filter matches by containment: `site_a:1` would
    # also find `site_a:12`, so compare the value exactly.
    fields = deal.get("custom_fields_detailed") or deal.get("custom_fields") or []
    if not isinstance(fields, list):
        return False
    return any(
        isinstance(item, dict) and str(item.get("value", "")).strip() == marker
        for item in fields
    )

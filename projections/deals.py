"""The deal projection: from order events in the log to deals in KeepinCRM.

For each captured snapshot the projection works out the deal the order should be
(`deal_for`, pure), records its intent (`DealRequested`) before the create call
and the CRM's answer afterwards (`DealCreated` / `DealCreateFailed`). Its
position in the log is written in the same append as those outcome events.

KeepinCRM has no external id on deals: the log is the record of which deal
belongs to which order. A request with no recorded answer (a crash, a lost
response) is settled by looking the deal up by its marker before creating again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from daemon.settings import Settings
from events.store import EventStore, RecordedEvent, StreamAppend
from events.types import (
    DealCreated,
    DealCreateFailed,
    DealRequested,
    Event,
    OrderChanged,
    OrderPlaced,
)
from projections.deal import Deal, deal_for
from projections.errors import DealMappingError, ProjectionError
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import (
    KeepinCRMError,
    PaymentRequired,
    Unauthorized,
)
from projections.order_state import OrderState, fold

CHECKPOINT = "projection:deals"
_BATCH = 200

log = structlog.get_logger("ocsync.deals")


class CrmUnavailable(ProjectionError):
    """The CRM could not be reached or refused the account; try the run again."""


@dataclass
class DealsResult:
    created: int = 0
    found: int = 0
    parked: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)


class DealProjection:
    """Tails the log from its checkpoint and creates the deals it finds missing."""

    def __init__(
        self, store: EventStore, crm: KeepinCRMClient, settings: Settings
    ) -> None:
        self._store = store
        self._crm = crm
        self._settings = settings

    async def run_once(self) -> DealsResult:
        """Project every event after the checkpoint; raises `CrmUnavailable`.

        A transient CRM failure stops the run *without* moving the checkpoint
        past that order, so the next run picks it up again (marker first).
        """
        result = DealsResult()
        position = int(await self._store.checkpoint(CHECKPOINT) or 0)

        while batch := await self._store.read_all(after=position, limit=_BATCH):
            for record in batch:
                if isinstance(record.event, OrderPlaced | OrderChanged):
                    await self._project(record, result)
                position = record.position
            await self._store.set_checkpoints({CHECKPOINT: str(position)})

        log.info(
            "deals projected",
            position=position,
            created=result.created,
            found=result.found,
            parked=result.parked,
            unchanged=result.unchanged,
        )
        return result

    async def _project(self, record: RecordedEvent, result: DealsResult) -> None:
        state = fold(record.stream, await self._store.read_stream(record.stream))
        snapshot = state.snapshot
        bound = log.bind(
            stream=record.stream, position=record.position, site=None, order_id=None
        )
        if snapshot is None or state.snapshot_position != record.position:
            # A newer snapshot of this order is further on in the log.
            return
        bound = bound.bind(site=snapshot.site, order_id=snapshot.order_id)

        if state.deal_id is not None:
            # Updating an existing deal is the replay's work; never create twice.
            bound.info("deal exists", deal_id=state.deal_id)
            result.unchanged += 1
            await self._advance(record)
            return

        # A request whose answer was lost may have made the deal: settle that
        # first, since it needs no deal body (a newer snapshot may not map).
        if state.unanswered_request and await self._adopt_existing(
            record, state, bound
        ):
            result.found += 1
            return

        try:
            deal = deal_for(
                snapshot, self._settings.site(snapshot.site), self._settings.deals
            )
        except DealMappingError as exc:
            bound.warning("order parked", field=exc.field, reason=str(exc))
            await self._record(
                record,
                state,
                DealCreateFailed(
                    marker=record.stream, status=0, error=str(exc), retryable=False
                ),
            )
            result.parked += 1
            return

        await self._create(record, state, deal, bound, result)

    async def _create(
        self,
        record: RecordedEvent,
        state: OrderState,
        deal: Deal,
        bound: structlog.typing.FilteringBoundLogger,
        result: DealsResult,
    ) -> None:
        requested = DealRequested(
            marker=record.stream, deal=deal, source_position=record.position
        )
        [written] = await self._store.append(
            [StreamAppend(record.stream, state.version, [requested])]
        )
        state.version = written.version

        try:
            deal_id = await self._crm.create_deal(deal)
        except (Unauthorized, PaymentRequired) as exc:
            bound.error("crm refused the account", status=exc.status, error=str(exc))
            raise CrmUnavailable(str(exc)) from exc
        except KeepinCRMError as exc:
            failure = DealCreateFailed(
                marker=record.stream,
                status=exc.status,
                error=str(exc),
                retryable=exc.retryable,
            )
            if exc.retryable:
                # Keep the checkpoint here: the next run settles this order.
                bound.warning("deal create failed", status=exc.status, error=str(exc))
                await self._store.append(
                    [StreamAppend(record.stream, state.version, [failure])]
                )
                result.failed.append(record.stream)
                raise CrmUnavailable(str(exc)) from exc
            bound.warning("order parked", status=exc.status, reason=str(exc))
            await self._record(record, state, failure)
            result.parked += 1
            return

        bound.info("deal created", deal_id=deal_id, status=201)
        await self._record(
            record,
            state,
            DealCreated(marker=record.stream, deal_id=deal_id, status=201),
        )
        result.created += 1

    async def _adopt_existing(
        self,
        record: RecordedEvent,
        state: OrderState,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> bool:
        """After a request with no answer, find the deal the CRM may have made."""
        marker_field = self._settings.deals.custom_fields.marker
        try:
            found = await self._crm.find_deals_by_custom_field(
                marker_field, record.stream
            )
        except KeepinCRMError as exc:
            raise CrmUnavailable(str(exc)) from exc

        matching = [deal for deal in found if _carries_marker(deal, record.stream)]
        if not matching:
            return False

        deal_id = int(min(deal["id"] for deal in matching))
        bound.info("deal found by marker", deal_id=deal_id)
        await self._record(
            record,
            state,
            DealCreated(marker=record.stream, deal_id=deal_id, status=200),
        )
        return True

    async def _record(
        self, record: RecordedEvent, state: OrderState, outcome: Event
    ) -> None:
        """Append the outcome and move the checkpoint past this order, together."""
        [written] = await self._store.append(
            [StreamAppend(record.stream, state.version, [outcome])],
            checkpoints={CHECKPOINT: str(record.position)},
        )
        state.version = written.version

    async def _advance(self, record: RecordedEvent) -> None:
        await self._store.set_checkpoints({CHECKPOINT: str(record.position)})


def _carries_marker(deal: dict[str, object], marker: str) -> bool:
    # The CRM's custom-field filter matches by containment: `site_a:1` would
    # also find `site_a:12`, so compare the value exactly.
    fields = deal.get("custom_fields_detailed") or deal.get("custom_fields") or []
    if not isinstance(fields, list):
        return False
    return any(
        isinstance(item, dict) and str(item.get("value", "")).strip() == marker
        for item in fields
    )

"""Deals replay: deals recomputed from the log with today's settings.

A settings fix (an article field, a source id, a custom field map) reaches the
deals already in the CRM through a replay, never through the shops: each
order's newest snapshot is mapped again (`deal_for`), compared with what was
last sent (the stream's `DealRequested`, then each `DealUpdated`), and only
the differences are applied, through the same `correct_deal` step the deal
projection uses when an order changes. A replay corrects deals; it never
creates one (that is `ocsync run`'s work) and never moves the projections'
checkpoints. What it sent is in the log, so running it again sends nothing.

A setting that needs facts no snapshot holds is refused before anything is
sent (`replay_gaps`); the catalogue replay is `catalogue_replay`, and both are
rendered for a person by `replay_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from daemon.settings import LineUpdate, Settings, SiteSettings
from events.store import EventStore, StreamAppend
from events.types import DealUpdateFailed
from projections.deal import deal_for
from projections.deal_changes import deal_diff
from projections.deal_corrections import (
    CorrectionFailed,
    correct_deal,
    deal_changes,
    lines_to_fix,
    stage_map_fix,
)
from projections.deals import CrmUnavailable
from projections.errors import DealMappingError
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError
from projections.order_state import OrderState, fold
from projections.replay_gaps import Gap, UncapturedData, uncaptured

log = structlog.get_logger("ocsync.replay")


@dataclass
class DealCorrection:
    """One deal whose owned fields differ from what its order now maps to."""

    stream: str
    deal_id: int
    position: int
    # Field -> (old, new): owned fields, `custom_fields.<name>`, stage, result.
    fields: dict[str, tuple[Any, Any]]
    old_lines: list[dict[str, Any]] | None = None
    new_lines: list[dict[str, Any]] | None = None
    # planned (a dry run), updated, refused by the CRM (DealUpdateFailed), or
    # failed: the CRM did not answer (DealUpdateFailed, retryable).
    outcome: Literal["planned", "updated", "refused", "failed"] = "planned"
    # Why it was refused, as recorded.
    error: str | None = None
    # The stage a fixed stage map moves the deal to (the status is unchanged).
    restage: int | None = None


@dataclass(frozen=True)
class StageLeft:
    """A deal a fixed stage map would move, left where a manager moved it."""

    stream: str
    deal_id: int
    crm_stage: int | None
    mapped: int


@dataclass
class DealsReplay:
    """What a deals replay found and did."""

    dry_run: bool
    corrections: list[DealCorrection] = field(default_factory=list)
    unchanged: int = 0
    # Orders in scope with no deal yet: `ocsync run` creates those.
    skipped: list[str] = field(default_factory=list)
    # (stream, reason): orders today's settings cannot map; their deal stays.
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    stages_left: list[StageLeft] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Deals corrected (or, in a dry run, that would be)."""
        return sum(c.outcome in ("planned", "updated") for c in self.corrections)

    @property
    def refused(self) -> list[str]:
        """Orders whose correction the CRM refused (recorded as DealUpdateFailed)."""
        return [c.stream for c in self.corrections if c.outcome == "refused"]


async def replay_deals(
    store: EventStore,
    settings: Settings,
    crm: KeepinCRMClient | None,
    *,
    site: str | None = None,
    from_position: int = 0,
    dry_run: bool = False,
) -> DealsReplay:
    """Correct every deal whose order maps differently under today's settings.

    `site` limits the replay to one site, `from_position` to orders whose
    newest snapshot is at or after that position. A dry run sends nothing and
    appends nothing; given a `crm`, it reads the deals a fixed stage map would
    move, to tell which a manager moved (without one, it cannot tell).
    Raises `UncapturedData` before anything is sent, and `CrmUnavailable`
    when the CRM cannot be reached (what was corrected until then is
    recorded; run the replay again).
    """
    if crm is None and not dry_run:
        raise ValueError("a replay that sends needs a CRM client")
    sites = [settings.site(site)] if site is not None else list(settings.sites)
    result = DealsReplay(dry_run=dry_run)

    in_scope: list[tuple[SiteSettings, OrderState]] = []
    gaps: list[Gap] = []
    for site_settings in sites:
        states = await _site_orders(store, site_settings)
        replayed = []
        for state in states:
            if state.snapshot_position < from_position:
                continue
            if state.deal_id is None:
                result.skipped.append(state.stream)
            else:
                replayed.append(state)
        gaps += uncaptured(settings, site_settings, replayed, states)
        in_scope += [(site_settings, state) for state in replayed]
    if gaps:
        raise UncapturedData(gaps)
    in_scope.sort(key=lambda pair: pair[1].snapshot_position)

    if crm is not None and not dry_run:
        await _check_account(crm)
    try:
        for site_settings, state in in_scope:
            await _replay_one(store, settings, site_settings, crm, state, result)
    finally:
        log.info(
            "deals replayed",
            dry_run=dry_run,
            sites=[s.name for s in sites],
            from_position=from_position,
            changed=result.changed,
            unchanged=result.unchanged,
            skipped=len(result.skipped),
            unmapped=len(result.unmapped),
            refused=len(result.refused),
        )
    return result


def planned_correction(
    state: OrderState,
    desired: dict[str, Any],
    site: SiteSettings,
    line_update: LineUpdate = "replace",
) -> DealCorrection | None:
    """What correcting the deal would change, or None; pure, sends nothing."""
    assert state.snapshot is not None and state.deal_id is not None
    sent = state.sent or {}
    diff = deal_diff(sent, desired)
    changes = deal_changes(state, desired, state.snapshot, site)
    fix_lines = lines_to_fix(state, diff, line_update)
    restage = None if "stage_id" in changes else stage_map_fix(state, site)
    if not changes and not fix_lines and restage is None:
        return None

    fields: dict[str, tuple[Any, Any]] = dict(diff.fields)
    fields.update(
        (f"custom_fields.{name}", values) for name, values in diff.custom_fields.items()
    )
    # The stage (and a failed close) follow a status change, not a field.
    for name, new in changes.items():
        if name not in diff.fields and name != "custom_fields":
            old = state.sent_stage if name == "stage_id" else sent.get(name)
            fields[name] = (old, new)
    if restage is not None:
        fields["stage_id"] = (state.sent_stage, restage)
    return DealCorrection(
        stream=state.stream,
        deal_id=state.deal_id,
        position=state.snapshot_position,
        fields=fields,
        old_lines=diff.old_lines if fix_lines else None,
        new_lines=diff.new_lines if fix_lines else None,
        restage=restage,
    )


async def _site_orders(store: EventStore, site: SiteSettings) -> list[OrderState]:
    """Every order stream of the site, folded; snapshots-less streams left out."""
    states = []
    for stream in await store.streams(f"{site.name}:"):
        state = fold(stream, await store.read_stream(stream))
        if state.snapshot is not None:
            states.append(state)
    return states


async def _replay_one(
    store: EventStore,
    settings: Settings,
    site: SiteSettings,
    crm: KeepinCRMClient | None,
    state: OrderState,
    result: DealsReplay,
) -> None:
    assert state.snapshot is not None
    snapshot = state.snapshot
    context = {
        "site": snapshot.site,
        "order_id": snapshot.order_id,
        "stream": state.stream,
        "position": state.snapshot_position,
        "deal_id": state.deal_id,
    }
    bound = log.bind(**context)
    try:
        desired = deal_for(snapshot, site, settings.deals)
    except DealMappingError as exc:
        bound.warning("deal not replayed", field=exc.field, reason=str(exc))
        result.unmapped.append((state.stream, str(exc)))
        return

    correction = planned_correction(state, desired, site, settings.deals.line_update)
    if correction is None:
        result.unchanged += 1
        return
    if correction.restage is not None and crm is not None:
        assert state.deal_id is not None
        crm_stage = await _crm_stage(crm, state.deal_id)
        if crm_stage != state.sent_stage:
            bound.info(
                "stage left: moved by a manager",
                crm_stage=crm_stage,
                stage_id=correction.restage,
            )
            result.stages_left.append(
                StageLeft(state.stream, state.deal_id, crm_stage, correction.restage)
            )
            del correction.fields["stage_id"]
            correction.restage = None
            if not correction.fields and correction.new_lines is None:
                result.unchanged += 1
                return
    result.corrections.append(correction)
    if crm is None or result.dry_run:
        return

    # Bound for the client's own lines too (`keepincrm call`, at DEBUG, with
    # the status and attempt of each request).
    with structlog.contextvars.bound_contextvars(**context):
        try:
            outcome = await correct_deal(
                store,
                crm,
                state,
                desired,
                site,
                {},
                bound,
                line_update=settings.deals.line_update,
                restage=correction.restage,
            )
        except CorrectionFailed as exc:
            correction.outcome = "failed"
            bound.warning(
                "deal correction failed",
                status=exc.error.status,
                attempt=getattr(exc.error, "attempts", 1),
                error=str(exc),
            )
            # The audit shows every request and its answer: this one too,
            # before the replay stops (running it again corrects the deal).
            assert state.deal_id is not None
            failure = DealUpdateFailed(
                marker=state.stream,
                deal_id=state.deal_id,
                status=exc.error.status,
                error=str(exc),
                retryable=True,
            )
            await store.append([StreamAppend(state.stream, state.version, [failure])])
            raise CrmUnavailable(str(exc)) from exc
    correction.outcome = "refused" if outcome == "refused" else "updated"
    if outcome == "refused" and state.update_failure is not None:
        correction.error = state.update_failure.error


async def _crm_stage(crm: KeepinCRMClient, deal_id: int) -> int | None:
    """The deal's stage in the CRM now (read shape `stage{id,name}`)."""
    try:
        deal = await crm.get_deal(deal_id)
    except KeepinCRMError as exc:
        raise CrmUnavailable(str(exc)) from exc
    stage = deal.get("stage")
    stage_id = stage.get("id") if isinstance(stage, dict) else deal.get("stage_id")
    return stage_id if isinstance(stage_id, int) else None


async def _check_account(crm: KeepinCRMClient) -> None:
    """Reach the CRM once before correcting anything.

    A refused key or a closed account would otherwise come back as one
    refusal per deal.
    """
    try:
        await crm.ping()
    except KeepinCRMError as exc:
        raise CrmUnavailable(str(exc)) from exc

"""Replay: deals and catalogue links recomputed from the log with today's settings.

A settings fix (an article field, a source id, a custom field map) reaches the
deals already in the CRM through a replay, never through the shops: each
order's newest snapshot is mapped again (`deal_for`), compared with what was
last sent (the stream's `DealRequested`, then each `DealUpdated`), and only
the differences are applied, through the same `correct_deal` step the deal
projection uses when an order changes. A replay corrects deals; it never
creates one (that is `ocsync run`'s work) and never moves the projections'
checkpoints. What it sent is in the log, so running it again sends nothing.

A setting that needs facts no snapshot holds (a query added after the orders
were captured, an order column the shop did not have) is refused before
anything is sent: the log cannot honour it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from daemon.settings import LineUpdate, Settings, SiteSettings
from events.snapshot import OrderSnapshot
from events.store import EventStore, StreamAppend
from events.types import (
    CatalogueLinked,
    DealUpdateFailed,
    OrderChanged,
    OrderPlaced,
    article_stream,
)
from projections.deal import deal_for, line_article
from projections.deal_changes import deal_diff
from projections.deal_corrections import (
    CorrectionFailed,
    correct_deal,
    deal_changes,
    lines_to_fix,
    stage_map_fix,
)
from projections.deals import CrmUnavailable
from projections.errors import DealMappingError, ProjectionError
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError
from projections.order_state import OrderState, fold

log = structlog.get_logger("ocsync.replay")

_BATCH = 500


class UncapturedData(ProjectionError):
    """Settings that need facts the log never captured; nothing was sent."""

    def __init__(self, gaps: list[Gap]) -> None:
        described = "\n".join(f"  {gap}" for gap in gaps)
        super().__init__(
            "refused: a replay works from the event log alone, and these settings"
            f" need data it never captured:\n{described}\n"
            "Change the settings, or leave these orders out (--site, --from)."
        )
        self.gaps = gaps


@dataclass(frozen=True)
class Gap:
    """One setting a replay cannot honour, and the orders it cannot honour it for."""

    setting: str
    reason: str
    orders: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.setting}: {self.reason}; orders {', '.join(self.orders)}"


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


def uncaptured(
    settings: Settings,
    site: SiteSettings,
    replayed: list[OrderState],
    captured: list[OrderState],
) -> list[Gap]:
    """The site's settings a replay of `replayed` cannot honour from the log.

    `captured` is every order of the site: a query's rows are known to be
    captured from the first snapshot that carries any (capture records a
    query's name only for orders it returned rows for, so an order captured
    later without the name simply had none).
    """
    if not replayed:
        return []
    where = f"sites[{settings.sites.index(site)}]"
    gaps: list[Gap] = []

    first_seen = _first_rows(captured)
    for name in site.queries:
        missing = _missing_query(replayed, name, first_seen.get(name))
        if missing:
            reason = (
                f"the query {name!r} was not run when these orders were captured"
                f" (their snapshots hold no extras[{name!r}])"
            )
            gaps.append(Gap(f"{where}.queries.{name}", reason, missing))

    kind, _, detail = site.branch_from.partition(":")
    if kind == "query":
        name, _, column = detail.partition(".")
        setting = f'{where}.branch_from = "{site.branch_from}"'
        missing = _missing_query(replayed, name, first_seen.get(name))
        if missing:
            reason = f"the rows of query {name!r} were never captured"
            gaps.append(Gap(setting, reason, missing))
        without_column = tuple(
            state.stream
            for state in replayed
            if _snapshot(state).extras.get(name)
            and not any(column in row for row in _snapshot(state).extras[name])
        )
        if without_column:
            reason = f"the captured rows of query {name!r} have no column {column!r}"
            gaps.append(Gap(setting, reason, without_column))

    for key in site.custom_fields:
        table, _, column = key.partition(".")
        # `custom_field.<id>` reads the JSON column of that name.
        needed = column if table == "order" else table
        missing = tuple(
            state.stream for state in replayed if needed not in _snapshot(state).order
        )
        if missing:
            reason = f"the captured order rows have no column {needed!r}"
            gaps.append(Gap(f'{where}.custom_fields."{key}"', reason, missing))

    return gaps


@dataclass
class Relink:
    """An article whose catalogue link changes (None: no catalogue item)."""

    article: str
    linked: bool
    old: int | None
    new: int | None
    title: str | None


@dataclass
class CatalogueReplay:
    dry_run: bool
    relinked: list[Relink] = field(default_factory=list)
    unchanged: int = 0


async def replay_catalogue(
    store: EventStore,
    settings: Settings,
    crm: KeepinCRMClient,
    *,
    dry_run: bool = False,
) -> CatalogueReplay:
    """Link every article of every snapshot, as today's article fields make it.

    Appends `CatalogueLinked` only for an article whose link differs from the
    last one recorded (or that never had one), all in one append.
    """
    fields = settings.deals.article_fields
    articles: set[str] = set()
    position = 0
    while batch := await store.read_all(after=position, limit=_BATCH):
        for record in batch:
            if isinstance(record.event, OrderPlaced | OrderChanged):
                for line in record.event.snapshot.lines:
                    article = line_article(line, fields)
                    if article:
                        articles.add(article)
            position = record.position

    links = await _recorded_links(store)
    try:
        items = await catalogue_items(crm)
    except KeepinCRMError as exc:
        raise CrmUnavailable(str(exc)) from exc

    result = CatalogueReplay(dry_run=dry_run)
    for article in sorted(articles):
        material_id, title = items.get(article, (None, None))
        if article in links and links[article] == material_id:
            result.unchanged += 1
            continue
        old = links.get(article)
        result.relinked.append(
            Relink(article, article in links, old, material_id, title)
        )

    if result.relinked and not dry_run:
        appends = [
            StreamAppend(
                article_stream(relink.article),
                await store.stream_version(article_stream(relink.article)),
                [
                    CatalogueLinked(
                        article=relink.article,
                        material_id=relink.new,
                        title=relink.title,
                    )
                ],
            )
            for relink in result.relinked
        ]
        await store.append(appends)
        for relink in result.relinked:
            log.info(
                "article relinked",
                article=relink.article,
                old_material_id=relink.old,
                material_id=relink.new,
            )
    log.info(
        "catalogue replayed",
        dry_run=dry_run,
        relinked=len(result.relinked),
        unchanged=result.unchanged,
    )
    return result


async def catalogue_items(crm: KeepinCRMClient) -> dict[str, tuple[int, str | None]]:
    """The CRM catalogue by article: item id and title (the first item wins)."""
    items: dict[str, tuple[int, str | None]] = {}
    async for item in crm.list_materials():
        sku = str(item.get("sku") or "").strip()
        if sku and sku not in items:
            title = item.get("title")
            items[sku] = (int(item["id"]), str(title) if title else None)
    return items


def render_deals_replay(result: DealsReplay) -> str:
    """The replay for a person: each deal's changes, old and new, then counts."""
    out: list[str] = []
    for correction in result.corrections:
        verb = {
            "planned": "would change",
            "updated": "corrected",
            "refused": "refused by the CRM",
            "failed": "not corrected: the CRM did not answer",
        }[correction.outcome]
        out.append(
            f"{correction.stream}  deal {correction.deal_id}  {verb}"
            f"  (snapshot at position {correction.position})"
        )
        if correction.error is not None:
            out.append(f"  error: {correction.error}")
        for name, (old, new) in correction.fields.items():
            out.append(f"  {name}: {_value(old)} -> {_value(new)}")
        if correction.new_lines is not None:
            out.append("  lines:")
            out.extend(f"    old  {line_text(x)}" for x in correction.old_lines or [])
            out.extend(f"    new  {line_text(x)}" for x in correction.new_lines)
    for left in result.stages_left:
        out.append(
            f"{left.stream}  deal {left.deal_id}  stage left: moved by a manager"
            f" (stage {_value(left.crm_stage)} in the CRM, {left.mapped} by the map)"
        )
    for stream, reason in result.unmapped:
        out.append(f"{stream}  not replayed: {reason}")

    verb = "would change" if result.dry_run else "corrected"
    summary = f"{result.changed} deals {verb}, {result.unchanged} unchanged"
    if result.refused:
        summary += f", {len(result.refused)} refused by the CRM"
    if result.unmapped:
        summary += f", {len(result.unmapped)} not mappable"
    if result.stages_left:
        summary += f", {len(result.stages_left)} stages left: moved by a manager"
    summary += (
        f"; {len(result.skipped)} orders skipped: no deal yet"
        " (`ocsync run` creates those)"
    )
    out.append(summary)
    return "\n".join(out)


def render_catalogue_replay(result: CatalogueReplay) -> str:
    out = []
    for relink in result.relinked:
        old = _item(relink.old) if relink.linked else "never linked"
        new = _item(relink.new)
        title = f" ({relink.title})" if relink.title else ""
        out.append(f"{relink.article}: {old} -> {new}{title}")
    verb = "would be relinked" if result.dry_run else "relinked"
    out.append(f"{len(result.relinked)} articles {verb}, {result.unchanged} unchanged")
    return "\n".join(out)


def line_text(line: dict[str, Any]) -> str:
    """A deal line as `ARTICLE × QUANTITY @ PRICE CURRENCY  TITLE`."""
    product = line.get("product_attributes") or {}
    price = f"{product.get('price', '')} {product.get('currency', '')}".strip()
    title = line.get("title") or product.get("title") or ""
    return f"{product.get('sku', '')} × {line.get('amount', '')} @ {price}  {title}"


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
    snapshot = _snapshot(state)
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


async def _recorded_links(store: EventStore) -> dict[str, int | None]:
    links: dict[str, int | None] = {}
    for stream in await store.streams("article:"):
        records = await store.read_stream(stream)
        last = records[-1].event if records else None
        if isinstance(last, CatalogueLinked):
            links[last.article] = last.material_id
    return links


def _first_rows(states: Iterable[OrderState]) -> dict[str, int]:
    """Query name -> the position of the first snapshot holding rows of it."""
    first: dict[str, int] = {}
    for state in states:
        for name in _snapshot(state).extras:
            position = state.snapshot_position
            first[name] = min(first.get(name, position), position)
    return first


def _missing_query(
    states: list[OrderState], name: str, first_seen: int | None
) -> tuple[str, ...]:
    return tuple(
        state.stream
        for state in states
        if name not in _snapshot(state).extras
        and (first_seen is None or state.snapshot_position < first_seen)
    )


def _snapshot(state: OrderState) -> OrderSnapshot:
    assert state.snapshot is not None
    return state.snapshot


def _value(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)


def _item(material_id: int | None) -> str:
    return "no item" if material_id is None else f"item {material_id}"

"""Catalogue replay: every article's CRM item linked again with today's settings.

The articles come from every snapshot in the log, spelled by today's article
fields; a `CatalogueLinked` is appended only where the link differs from the
last one recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from daemon.settings import Settings
from events.store import EventStore, StreamAppend
from events.types import CatalogueLinked, OrderChanged, OrderPlaced, article_stream
from projections.deal import line_article
from projections.deals import CrmUnavailable
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError

log = structlog.get_logger("ocsync.replay")

_BATCH = 500


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
    """What a catalogue replay found and did."""

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


async def _recorded_links(store: EventStore) -> dict[str, int | None]:
    links: dict[str, int | None] = {}
    for stream in await store.streams("article:"):
        records = await store.read_stream(stream)
        last = records[-1].event if records else None
        if isinstance(last, CatalogueLinked):
            links[last.article] = last.material_id
    return links

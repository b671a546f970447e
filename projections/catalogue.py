"""The catalogue projection: which CRM catalogue item each article links to.

KeepinCRM links a deal line to its catalogue item ("material") by the article
sent as `product_attributes.sku`. One article sold on two sites is one item, so
links are kept per article (stream `article:<code>`), not per site.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from daemon.settings import Settings
from events.store import EventStore, StreamAppend
from events.types import CatalogueLinked, OrderChanged, OrderPlaced, article_stream
from projections.deal import line_article
from projections.keepincrm.client import KeepinCRMClient

CHECKPOINT = "projection:catalogue"
_BATCH = 500

log = structlog.get_logger("ocsync.catalogue")


@dataclass(frozen=True)
class Material:
    material_id: int
    title: str | None


@dataclass
class CatalogueResult:
    linked: int = 0
    unlinked: int = 0


class CatalogueProjection:
    """Links every article seen in orders to the CRM item carrying it."""

    def __init__(
        self,
        store: EventStore,
        crm: KeepinCRMClient,
        settings: Settings,
        refresh_seconds: float = 600.0,
    ) -> None:
        self._store = store
        self._crm = crm
        self._settings = settings
        self._refresh_seconds = refresh_seconds
        self._materials: dict[str, Material] | None = None
        self._fetched_at = 0.0
        self._links: dict[str, int | None] | None = None

    async def run_once(self) -> CatalogueResult:
        """Link the articles of new orders, and retry articles still unlinked."""
        links = await self._known_links()
        position = int(await self._store.checkpoint(CHECKPOINT) or 0)
        articles, position = await self._new_articles(position)
        articles |= {article for article, item in links.items() if item is None}

        result = CatalogueResult()
        if articles:
            materials = await self._catalogue(force=bool(articles - links.keys()))
            appends = []
            for article in sorted(articles):
                material = materials.get(article)
                material_id = material.material_id if material else None
                if article in links and links[article] == material_id:
                    continue
                stream = article_stream(article)
                version = await self._store.stream_version(stream)
                event = CatalogueLinked(
                    article=article,
                    material_id=material_id,
                    title=material.title if material else None,
                )
                appends.append(StreamAppend(stream, version, [event]))
                links[article] = material_id
                if material_id is None:
                    result.unlinked += 1
                    log.info("article has no catalogue item", article=article)
                else:
                    result.linked += 1
            await self._store.append(appends, checkpoints={CHECKPOINT: str(position)})
        else:
            await self._store.set_checkpoints({CHECKPOINT: str(position)})

        log.info(
            "catalogue linked",
            position=position,
            linked=result.linked,
            unlinked=result.unlinked,
        )
        return result

    async def _known_links(self) -> dict[str, int | None]:
        if self._links is None:
            self._links = {}
            for stream in await self._store.streams("article:"):
                records = await self._store.read_stream(stream)
                last = records[-1].event if records else None
                if isinstance(last, CatalogueLinked):
                    self._links[last.article] = last.material_id
        return self._links

    async def _new_articles(self, position: int) -> tuple[set[str], int]:
        fields = self._settings.deals.article_fields
        articles: set[str] = set()
        while batch := await self._store.read_all(after=position, limit=_BATCH):
            for record in batch:
                if isinstance(record.event, OrderPlaced | OrderChanged):
                    for line in record.event.snapshot.lines:
                        article = line_article(line, fields)
                        if article:
                            articles.add(article)
                position = record.position
        return articles, position

    async def _catalogue(self, force: bool) -> dict[str, Material]:
        """The CRM catalogue by article, fetched again when stale or when asked."""
        stale = time.monotonic() - self._fetched_at > self._refresh_seconds
        if self._materials is None or stale or force:
            materials: dict[str, Material] = {}
            async for item in self._crm.list_materials():
                sku = str(item.get("sku") or "").strip()
                if sku and sku not in materials:
                    title = item.get("title")
                    materials[sku] = Material(
                        int(item["id"]), str(title) if title else None
                    )
            self._materials = materials
            self._fetched_at = time.monotonic()
        return self._materials

"""`ocsync catalogue`: what stands between the shops' catalogues and the CRM's.

Two lists, so the catalogue can be cleaned up before (or while) going live:
products of any site whose article no CRM catalogue item carries (their order
lines would make the CRM create new items), and articles that two sites spell
differently ("AC-30" on one, "ac 30" on the other), which split one product
into two CRM items.

The first list also holds the articles of captured orders that no shop product
has any more (a product deleted since the order, C13, or whose code changed)
and no CRM item carries: their deals were sent unlinked all the same.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import aiomysql

from daemon.settings import Settings
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import EventStore
from events.types import OrderChanged, OrderPlaced
from projections.catalogue_names import CatalogueNames
from projections.deal import article_of, line_article
from projections.deal_totals import SERVICE_ARTICLES
from projections.keepincrm.client import KeepinCRMClient


@dataclass(frozen=True)
class UnlinkedProduct:
    site: str
    product_id: int
    article: str
    name: str
    enabled: bool
    # Set for an article only captured orders have (the shop's products no
    # longer do): the last order of the site with it.
    order_id: int | None = None


@dataclass(frozen=True)
class _OrderedArticle:
    product_id: int
    name: str
    order_id: int


@dataclass(frozen=True)
class SpellingGroup:
    """One article spelt more than one way; spellings by site."""

    key: str
    spellings: dict[str, list[str]]


@dataclass
class CatalogueReport:
    unlinked: list[UnlinkedProduct] = field(default_factory=list)
    spellings: list[SpellingGroup] = field(default_factory=list)
    crm_items: int = 0
    products: int = 0
    # Articles of the service lines ocsync sends (shipping, tax, rounding)
    # that no CRM item carries: a CRM that refuses unknown articles refuses
    # every deal with such a line.
    service_unlinked: list[str] = field(default_factory=list)


async def catalogue_report(
    settings: Settings, store: EventStore | None = None
) -> CatalogueReport:
    """Read every site's products and the CRM catalogue; compare them.

    With the event log, the articles of its captured orders are compared too.
    """
    report = CatalogueReport()
    ordered = await _ordered_articles(store, settings) if store is not None else {}
    crm_articles: set[str] = set()
    async with KeepinCRMClient.from_settings(settings.crm) as crm:
        async for item in crm.list_materials():
            sku = str(item.get("sku") or "").strip()
            if sku:
                crm_articles.add(sku)
    report.crm_items = len(crm_articles)
    report.service_unlinked = sorted(SERVICE_ARTICLES - crm_articles)

    # article spelling key -> site -> spellings seen there
    spellings: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for site in settings.sites:
        pool = await open_shop_pool(settings.databases[site.name], site.name)
        try:
            products = await ShopReader(pool, site).catalogue_products(
                settings.deals.language
            )
        finally:
            await _close(pool)

        for product in products:
            report.products += 1
            article = article_of(product.codes, settings.deals.article_fields)
            if article is None:
                continue
            spellings[spelling_key(article)][site.name].add(article)
            if article not in crm_articles:
                report.unlinked.append(
                    UnlinkedProduct(
                        site=site.name,
                        product_id=product.product_id,
                        article=article,
                        name=product.name,
                        enabled=product.enabled,
                    )
                )

    # An ordered article no product of its site has now, and no CRM item.
    in_shop = {
        (site, article)
        for by_site in spellings.values()
        for site, seen in by_site.items()
        for article in seen
    }
    for site_name, article in sorted(ordered):
        if article in crm_articles or (site_name, article) in in_shop:
            continue
        line = ordered[(site_name, article)]
        report.unlinked.append(
            UnlinkedProduct(
                site=site_name,
                product_id=line.product_id,
                article=article,
                name=line.name,
                enabled=False,
                order_id=line.order_id,
            )
        )

    for key in sorted(spellings):
        by_site = spellings[key]
        every = {spelling for seen in by_site.values() for spelling in seen}
        if len(every) > 1:
            report.spellings.append(
                SpellingGroup(
                    key=key,
                    spellings={site: sorted(seen) for site, seen in by_site.items()},
                )
            )

    return report


async def _ordered_articles(
    store: EventStore, settings: Settings
) -> dict[tuple[str, str], _OrderedArticle]:
    """(site, article) of every captured order line -> its latest sighting."""
    ordered: dict[tuple[str, str], _OrderedArticle] = {}
    position = 0
    while batch := await store.read_all(after=position, limit=1000):
        for record in batch:
            position = record.position
            if not isinstance(record.event, OrderPlaced | OrderChanged):
                continue
            snapshot = record.event.snapshot
            names = CatalogueNames(snapshot, settings.deals.language)
            for line in snapshot.lines:
                article = line_article(line, settings.deals.article_fields)
                if article is not None:
                    ordered[(snapshot.site, article)] = _OrderedArticle(
                        line.product_id, names.product(line), snapshot.order_id
                    )
    return ordered


def spelling_key(article: str) -> str:
    """What two spellings of one article share: letters and digits, any case."""
    return re.sub(r"[\W_]+", "", article.casefold())


async def _close(pool: aiomysql.Pool) -> None:
    pool.close()
    await pool.wait_closed()


def render_report(report: CatalogueReport) -> str:
    """`ocsync catalogue` as text: the two lists, each sorted for reading."""
    lines = [
        f"{report.products} shop product(s), {report.crm_items} CRM catalogue item(s)."
    ]
    lines.append(f"Products whose article no CRM item carries: {len(report.unlinked)}")
    for product in sorted(report.unlinked, key=lambda p: (p.site, p.article)):
        if product.order_id is not None:
            disabled = f" (no longer in the shop; ordered in #{product.order_id})"
        else:
            disabled = "" if product.enabled else " (disabled in the shop)"
        lines.append(
            f"  {product.site:<12} {product.article:<20} {product.name}"
            f" [product_id {product.product_id}]{disabled}"
        )
    if report.service_unlinked:
        lines.append(
            "Service lines ocsync sends whose article no CRM item carries: "
            + ", ".join(report.service_unlinked)
        )
    lines.append(f"Articles spelt differently across sites: {len(report.spellings)}")
    for group in report.spellings:
        spelt = "; ".join(
            f"{site}: {', '.join(spellings)}"
            for site, spellings in sorted(group.spellings.items())
        )
        lines.append(f"  {spelt}")
    return "\n".join(lines)

"""The catalogue projection: each article in the log links to one CRM item.

Snapshots go into a real SQLite event log; `CatalogueProjection.run_once` reads
the catalogue of the KeepinCRM sandbox served on loopback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestServer

from daemon.settings import CaptureSettings, CrmSettings, EventLogSettings, Settings
from events import (
    CatalogueLinked,
    EventStore,
    OrderChanged,
    OrderPlaced,
    StreamAppend,
    order_stream,
)
from events.snapshot import Line, OrderSnapshot, content_hash
from projections.catalogue import CatalogueProjection
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import UnknownArticle, create_sandbox_app
from tests import factories

TOKEN = "catalogue-test-token-9d2e"
MONITOR: dict[str, Any] = {
    "sku": "AC-30",
    "title": 'Монітор Apple Cinema 30"',
    "price": 100,
}

ServeCrm = Callable[..., Awaitable[KeepinCRMClient]]


@pytest.fixture
async def serve_crm(tmp_path: Path) -> AsyncIterator[ServeCrm]:
    """Serve sandboxes on loopback and open a client to each; all closed after."""
    servers: list[TestServer] = []
    clients: list[KeepinCRMClient] = []

    async def serve(
        catalogue: list[dict[str, Any]] | None = None,
        unknown_article: UnknownArticle = "refuse",
    ) -> KeepinCRMClient:
        index = len(servers)
        catalogue_path = None
        if catalogue is not None:
            catalogue_path = tmp_path / f"catalogue-{index}.json"
            text = json.dumps(catalogue, ensure_ascii=False)
            catalogue_path.write_text(text, encoding="utf-8")
        app = create_sandbox_app(
            tmp_path / f"crm-{index}.db", TOKEN, catalogue_path, unknown_article
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        clients.append(
            KeepinCRMClient(
                str(server.make_url("/v1")), TOKEN, timeout=5, requests_per_minute=60000
            )
        )
        return clients[-1]

    yield serve
    for client in clients:
        await client.close()
    for server in servers:
        await server.close()


def catalogue_projection(
    store: EventStore, client: KeepinCRMClient, tmp_path: Path, **options: Any
) -> CatalogueProjection:
    settings = Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url="http://127.0.0.1:9/v1", token=TOKEN),
        capture=CaptureSettings(),
        # The sku first, the model when the sku is empty (C12).
        deals=factories.deal_settings(article_fields=("sku",)),
        sites=[factories.site(), factories.site(name="site_b", source_id=12)],
        databases={},
    )
    return CatalogueProjection(store, client, settings, **options)


def product(model: str, name: str) -> Line:
    """A line whose product has no sku, only its model."""
    return factories.line(name=name, model=model, codes={"model": model, "sku": ""})


MONITOR_LINE = product("AC-30", 'Монітор Apple Cinema 30"')
TSHIRT_LINE = product("TS-01", "Футболка з логотипом")


async def place(
    store: EventStore, *lines: Line, site: str = "site_a", order_id: int = 1
) -> None:
    """Append an order of `site` with these lines (OrderChanged when seen before)."""
    snapshot: OrderSnapshot = msgspec.structs.replace(
        factories.snapshot(order_id=order_id, lines=list(lines)), site=site
    )
    stream = order_stream(site, order_id)
    version = await store.stream_version(stream)
    hashed = content_hash(snapshot)
    event = (
        OrderPlaced(snapshot=snapshot, content_hash=hashed)
        if version == 0
        else OrderChanged(snapshot=snapshot, content_hash=hashed)
    )
    await store.append([StreamAppend(stream, version, [event])])


async def links(store: EventStore, article: str) -> list[CatalogueLinked]:
    records = await store.read_stream(f"article:{article}")
    events = [record.event for record in records]
    assert all(isinstance(event, CatalogueLinked) for event in events)
    return events  # type: ignore[return-value]


async def material_id(client: KeepinCRMClient, sku: str) -> int:
    [item] = [item async for item in client.list_materials(sku_eq=sku)]
    return int(item["id"])


async def test_one_article_on_two_sites_links_to_one_catalogue_item(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """C12: AC-30 (sku empty) sold on site_a and site_b: one stream, one link."""
    client = await serve_crm(catalogue=[MONITOR])
    await place(store, MONITOR_LINE, site="site_a")
    await place(store, MONITOR_LINE, site="site_b")

    result = await catalogue_projection(store, client, tmp_path).run_once()

    assert (result.linked, result.unlinked) == (1, 0)
    assert await store.streams("article:") == ["article:AC-30"]
    assert await links(store, "AC-30") == [
        CatalogueLinked(
            article="AC-30",
            material_id=await material_id(client, "AC-30"),
            title=MONITOR["title"],
        )
    ]


async def test_an_article_missing_from_the_crm_is_linked_to_nothing(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """An article no CRM item carries gets CatalogueLinked with material_id None."""
    client = await serve_crm(catalogue=[MONITOR])
    await place(store, MONITOR_LINE, TSHIRT_LINE)

    result = await catalogue_projection(store, client, tmp_path).run_once()

    assert (result.linked, result.unlinked) == (1, 1)
    assert await store.streams("article:") == ["article:AC-30", "article:TS-01"]
    assert await links(store, "TS-01") == [
        CatalogueLinked(article="TS-01", material_id=None, title=None)
    ]


async def test_an_item_the_crm_gains_later_is_linked_by_a_later_run(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """A deal line makes the CRM create TS-01; the next run links it (a new event)."""
    client = await serve_crm(catalogue=[], unknown_article="create")
    # No cache between runs: every run reads the catalogue again.
    catalogue = catalogue_projection(store, client, tmp_path, refresh_seconds=0)
    await place(store, TSHIRT_LINE)
    await catalogue.run_once()
    line = {
        "amount": 1,
        "product_attributes": {"sku": "TS-01", "title": "Футболка", "price": 681},
    }
    await client.create_deal({"title": "№1 Техно Світ", "jobs_attributes": [line]})

    result = await catalogue.run_once()

    assert (result.linked, result.unlinked) == (1, 0)
    assert await links(store, "TS-01") == [
        CatalogueLinked(article="TS-01", material_id=None, title=None),
        CatalogueLinked(
            article="TS-01",
            material_id=await material_id(client, "TS-01"),
            title="Футболка",
        ),
    ]


async def test_an_item_seeded_into_a_new_crm_store_is_linked_by_a_new_run(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """Unlinked today; a fresh projection over a CRM that now has AC-30 links it."""
    await place(store, MONITOR_LINE)
    empty = await serve_crm(catalogue=[])
    await catalogue_projection(store, empty, tmp_path).run_once()
    stocked = await serve_crm(catalogue=[MONITOR])

    result = await catalogue_projection(store, stocked, tmp_path).run_once()

    assert (result.linked, result.unlinked) == (1, 0)
    assert [link.material_id for link in await links(store, "AC-30")] == [
        None,
        await material_id(stocked, "AC-30"),
    ]


async def test_a_run_with_nothing_new_appends_nothing(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """Linked and unlinked articles alike: no new event, same run or a fresh one."""
    client = await serve_crm(catalogue=[MONITOR])
    await place(store, MONITOR_LINE, TSHIRT_LINE)
    catalogue = catalogue_projection(store, client, tmp_path)
    await catalogue.run_once()
    position = await store.last_position()

    again = await catalogue.run_once()
    fresh = await catalogue_projection(store, client, tmp_path).run_once()

    assert (again.linked, again.unlinked) == (0, 0)
    assert (fresh.linked, fresh.unlinked) == (0, 0)
    assert await store.last_position() == position


async def test_a_new_order_for_a_linked_article_appends_nothing(
    serve_crm: ServeCrm, store: EventStore, tmp_path: Path
) -> None:
    """Another site's order for AC-30 after it was linked adds no second link."""
    client = await serve_crm(catalogue=[MONITOR])
    catalogue = catalogue_projection(store, client, tmp_path)
    await place(store, MONITOR_LINE, site="site_a")
    await catalogue.run_once()
    await place(store, MONITOR_LINE, site="site_b", order_id=7)
    position = await store.last_position()

    result = await catalogue.run_once()

    assert (result.linked, result.unlinked) == (0, 0)
    assert await store.last_position() == position
    assert len(await links(store, "AC-30")) == 1

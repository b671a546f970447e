"""A real SQLite log and sandbox CRMs on loopback, for the projections' tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Middleware

from daemon.settings import CaptureSettings, CrmSettings, EventLogSettings, Settings
from events import (
    DealRequested,
    EventStore,
    OrderChanged,
    OrderPlaced,
    RecordedEvent,
    StreamAppend,
    order_stream,
)
from events.snapshot import OrderSnapshot, content_hash
from projections.deal import Deal, deal_for
from projections.deals import DealProjection
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import UnknownArticle, create_sandbox_app
from tests import factories

TOKEN = "deals-test-token-41c9"
MARKER_FIELD = "field_1"  # factories.deal_settings()
CLOSED_PORT_URL = "http://127.0.0.1:9/v1"


@dataclass
class Crm:
    """Serves sandboxes and opens clients; everything is closed after the test."""

    tmp_path: Path
    servers: list[TestServer] = field(default_factory=list)
    clients: list[KeepinCRMClient] = field(default_factory=list)

    async def serve(
        self,
        *,
        unknown_article: UnknownArticle = "create",
        catalogue: list[dict[str, Any]] | None = None,
        middlewares: Sequence[Middleware] = (),
    ) -> str:
        index = len(self.servers)
        catalogue_path = None
        if catalogue is not None:
            catalogue_path = self.tmp_path / f"catalogue-{index}.json"
            text = json.dumps(catalogue, ensure_ascii=False)
            catalogue_path.write_text(text, encoding="utf-8")
        store_path = self.tmp_path / f"crm-{index}.db"
        app = create_sandbox_app(store_path, TOKEN, catalogue_path, unknown_article)
        app.middlewares.extend(middlewares)

        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self.servers.append(server)
        return str(server.make_url("/v1"))

    def client(self, url: str) -> KeepinCRMClient:
        client = KeepinCRMClient(
            url,
            TOKEN,
            timeout=5,
            requests_per_minute=60000,
            retry_initial_seconds=0.01,
            retry_max_seconds=0.05,
        )
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for server in self.servers:
            await server.close()


@pytest.fixture
async def crm(tmp_path: Path) -> AsyncIterator[Crm]:
    crm = Crm(tmp_path)
    yield crm
    await crm.close()


def settings_for(tmp_path: Path, url: str, **deals: Any) -> Settings:
    return Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url=url, token=TOKEN),
        capture=CaptureSettings(),
        deals=factories.deal_settings(**deals),
        sites=[
            factories.site(),
            factories.site(name="site_b", title="Сайт Б", source_id=12),
        ],
        databases={},
    )


def projection(
    crm: Crm, store: EventStore, tmp_path: Path, url: str, **deals: Any
) -> tuple[DealProjection, KeepinCRMClient]:
    client = crm.client(url)
    return DealProjection(store, client, settings_for(tmp_path, url, **deals)), client


async def place(store: EventStore, snapshot: OrderSnapshot) -> RecordedEvent:
    """Append the snapshot as OrderPlaced, or as OrderChanged when seen before."""
    stream = order_stream(snapshot.site, snapshot.order_id)
    version = await store.stream_version(stream)
    hashed = content_hash(snapshot)
    event = (
        OrderPlaced(snapshot=snapshot, content_hash=hashed)
        if version == 0
        else OrderChanged(snapshot=snapshot, content_hash=hashed)
    )
    [recorded] = await store.append([StreamAppend(stream, version, [event])])
    return recorded


async def request_deal(store: EventStore, placed: RecordedEvent, deal: Deal) -> None:
    """A DealRequested with no answer after it, as a crash or lost answer leaves."""
    requested = DealRequested(
        marker=placed.stream, deal=deal, source_position=placed.position
    )
    version = await store.stream_version(placed.stream)
    await store.append([StreamAppend(placed.stream, version, [requested])])


def deal_of(snapshot: OrderSnapshot, tmp_path: Path) -> Deal:
    settings = settings_for(tmp_path, CLOSED_PORT_URL)
    return deal_for(snapshot, settings.site(snapshot.site), settings.deals)


def with_marker(deal: Deal, marker: str) -> Deal:
    fields = [f for f in deal["custom_fields"] if f["name"] != MARKER_FIELD]
    return {**deal, "custom_fields": [{"name": MARKER_FIELD, "value": marker}, *fields]}


async def events_of(store: EventStore, stream: str) -> list[Any]:
    return [record.event for record in await store.read_stream(stream)]


async def all_deals(client: KeepinCRMClient) -> list[dict[str, Any]]:
    return [deal async for deal in client.list_deals()]


async def deals_marked(client: KeepinCRMClient, marker: str) -> list[int]:
    return [
        int(deal["id"])
        for deal in await client.find_deals_by_custom_field(MARKER_FIELD, marker)
    ]


def as_stored(deal: Deal) -> Any:
    """The deal body as the log gives it back (amounts as JSON strings)."""
    return msgspec.json.decode(msgspec.json.encode(deal))

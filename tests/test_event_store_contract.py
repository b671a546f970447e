"""The contract every event store backend keeps, run once per backend.

The suite speaks to the stores through the `EventStore` Protocol only. What it
needs beyond that (a second store on the same log, a raw statement that goes
around the store) comes from the backend's adapter below; a new backend adds an
adapter and a fixture param, and passes the same tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from events import (
    SCHEMA_VERSIONS,
    CatalogueLinked,
    DealCreated,
    DealRequested,
    Event,
    EventLogError,
    EventLogUnavailable,
    EventStore,
    OrderPlaced,
    RecordedEvent,
    SqliteEventStore,
    StreamAppend,
    VersionConflict,
    open_event_store,
)
from events.snapshot import (
    Catalogue,
    Language,
    Line,
    OrderSnapshot,
    TotalRow,
)

REPO = Path(__file__).resolve().parents[1]


class SqliteBackend:
    """One SQLite file; raw statements go through a sqlite3 connection of their own."""

    refusal = sqlite3.DatabaseError

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "events.db"
        self.url = f"sqlite:///{self.path}"

    async def open(self) -> EventStore:
        return await SqliteEventStore.open(self.path)

    def execute_raw(self, sql: str) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as connection, connection:
            connection.execute(sql)


Backend = SqliteBackend
OpenStore = Callable[[], Awaitable[EventStore]]


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    match request.param:
        case "sqlite":
            return SqliteBackend(tmp_path)
    raise AssertionError(request.param)


@pytest.fixture
async def open_store(backend: Backend) -> AsyncIterator[OpenStore]:
    """Opens stores on the backend's one log and closes them after the test."""
    opened: list[EventStore] = []

    async def open_() -> EventStore:
        store = await backend.open()
        opened.append(store)
        return store

    yield open_

    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: OpenStore) -> EventStore:
    return await open_store()


def placed(order_id: int) -> OrderPlaced:
    snapshot = OrderSnapshot(
        site="shop",
        order_id=order_id,
        order={"order_id": str(order_id), "order_status_id": "1", "total": "15.0000"},
        lines=[
            Line(
                order_product_id=1,
                product_id=42,
                name="Чай зелений",
                model="TEA-01",
                quantity=1,
                price="15.0000",
                total="15.0000",
                tax="0.0000",
                codes={"model": "TEA-01", "sku": "TEA-01"},
                options=[],
            )
        ],
        totals=[TotalRow(code="total", title="Всього", value="15.0000", sort_order=9)],
        history=[],
        currency=None,
        shop={"config_tax": "0"},
        languages=[Language(language_id=1, code="uk-ua")],
        catalogue=Catalogue(products={42: {1: "Чай зелений"}}),
    )
    # A fixed digest: the store only carries it.
    return OrderPlaced(snapshot=snapshot, content_hash="9f2c" * 16)


def requested(order_id: int) -> DealRequested:
    return DealRequested(
        marker=f"shop:{order_id}", deal={"title": f"#{order_id}"}, source_position=1
    )


def created(order_id: int) -> DealCreated:
    return DealCreated(marker=f"shop:{order_id}", deal_id=9000 + order_id, status=1)


def linked(article: str) -> CatalogueLinked:
    return CatalogueLinked(article=article, material_id=77, title="Чай зелений")


def one(stream: str, expected_version: int, *events: Event) -> list[StreamAppend]:
    return [StreamAppend(stream, expected_version, list(events))]


def positions(recorded: list[RecordedEvent]) -> list[int]:
    return [event.position for event in recorded]


async def test_append_and_read_back(store: EventStore) -> None:
    """Appended events come back from the stream and the log as they went in."""
    events: list[Event] = [placed(1001), requested(1001), created(1001)]

    recorded = await store.append(one("shop:1001", 0, *events))

    assert [r.event for r in recorded] == events
    assert [r.version for r in recorded] == [1, 2, 3]
    assert [r.type for r in recorded] == ["OrderPlaced", "DealRequested", "DealCreated"]
    assert [r.schema_version for r in recorded] == [
        SCHEMA_VERSIONS[r.type] for r in recorded
    ]
    assert {r.stream for r in recorded} == {"shop:1001"}
    recorded_at = datetime.fromisoformat(recorded[0].recorded_at)
    assert recorded_at.utcoffset() == timedelta(0)
    assert await store.read_stream("shop:1001") == recorded
    assert await store.read_all() == recorded
    assert await store.stream_version("shop:1001") == 3
    assert await store.last_position() == recorded[-1].position


async def test_empty_log(store: EventStore) -> None:
    """A new log has no events, no streams, no checkpoints and position 0."""
    assert await store.read_all() == []
    assert await store.read_stream("shop:1001") == []
    assert await store.stream_version("shop:1001") == 0
    assert await store.streams("") == []
    assert await store.checkpoint("capture:shop") is None
    assert await store.last_position() == 0


async def test_read_all_from_position(store: EventStore) -> None:
    """read_all returns the events after a position, at most `limit` of them."""
    await store.append(one("article:TEA-01", 0, *[linked("TEA-01")] * 5))

    assert positions(await store.read_all(after=2)) == [3, 4, 5]
    assert positions(await store.read_all(after=1, limit=2)) == [2, 3]
    assert await store.read_all(after=5) == []


async def test_positions_gap_free_in_commit_order(store: EventStore) -> None:
    """Positions run 1, 2, 3... across streams, in the order appends commit."""
    first = await store.append(one("shop:1001", 0, placed(1001)))
    both = await store.append(
        [
            StreamAppend("shop:1002", 0, [placed(1002)]),
            StreamAppend("shop:1001", 1, [requested(1001), created(1001)]),
        ]
    )
    last = await store.append(one("article:TEA-01", 0, linked("TEA-01")))

    assert positions(first + both + last) == [1, 2, 3, 4, 5]
    assert positions(await store.read_all()) == [1, 2, 3, 4, 5]
    assert [r.version for r in both] == [1, 2, 3]


async def test_one_stream_twice_in_one_append(store: EventStore) -> None:
    """A stream named twice in one append expects the version the first part left."""
    await store.append(
        [
            StreamAppend("shop:1001", 0, [placed(1001)]),
            StreamAppend("shop:1001", 1, [requested(1001)]),
        ]
    )

    assert await store.stream_version("shop:1001") == 2


async def test_stale_expected_version_conflicts(store: EventStore) -> None:
    """An append at a stale expected version fails, naming stream and versions."""
    await store.append(one("shop:1001", 0, placed(1001)))

    with pytest.raises(VersionConflict, match=r"'shop:1001' is at version 1.*0"):
        await store.append(one("shop:1001", 0, placed(1001)))

    assert await store.stream_version("shop:1001") == 1


async def test_failed_batch_writes_nothing(store: EventStore) -> None:
    """A conflict on one stream leaves every stream and checkpoint of the batch."""
    await store.append(one("shop:1001", 0, placed(1001)))

    with pytest.raises(VersionConflict):
        await store.append(
            [
                StreamAppend("shop:1002", 0, [placed(1002)]),
                StreamAppend("shop:1001", 0, [requested(1001)]),
            ],
            checkpoints={"capture:shop": "2024-05-01T10:00:00"},
        )

    assert await store.stream_version("shop:1002") == 0
    assert await store.stream_version("shop:1001") == 1
    assert await store.checkpoint("capture:shop") is None
    assert await store.last_position() == 1
    appended = await store.append(one("shop:1002", 0, placed(1002)))
    assert positions(appended) == [2]


async def test_checkpoints_commit_with_events(store: EventStore) -> None:
    """Checkpoints set by an append are there with its events and move on later."""
    await store.append(
        one("shop:1001", 0, placed(1001)),
        checkpoints={"capture:shop": "2024-05-01T10:00:00", "deals": "0"},
    )
    await store.append(one("shop:1001", 1, requested(1001)), checkpoints={"deals": "1"})

    assert await store.checkpoint("capture:shop") == "2024-05-01T10:00:00"
    assert await store.checkpoint("deals") == "1"


async def test_checkpoints_without_events(store: EventStore) -> None:
    """set_checkpoints and an append of no streams set checkpoints alone."""
    await store.set_checkpoints({"capture:shop": "2024-05-01T10:00:00"})
    await store.append([], checkpoints={"deals": "0"})

    assert await store.checkpoint("capture:shop") == "2024-05-01T10:00:00"
    assert await store.checkpoint("deals") == "0"
    assert await store.last_position() == 0


async def test_events_are_immutable(store: EventStore, backend: Backend) -> None:
    """The log itself refuses to change or delete a written event."""
    recorded = await store.append(one("shop:1001", 0, placed(1001)))

    with pytest.raises(backend.refusal, match="immutable"):
        backend.execute_raw("UPDATE events SET stream = 'shop:666'")
    with pytest.raises(backend.refusal, match="immutable"):
        backend.execute_raw("DELETE FROM events")

    assert await store.read_all() == recorded


async def test_two_stores_on_one_log(open_store: OpenStore) -> None:
    """Two stores on one log (daemon and CLI) see each other's appends and versions."""
    daemon, cli = await open_store(), await open_store()

    await daemon.append(one("shop:1001", 0, placed(1001)))
    await cli.append(one("shop:1001", 1, requested(1001)), checkpoints={"deals": "2"})

    assert [r.version for r in await daemon.read_stream("shop:1001")] == [1, 2]
    assert await daemon.checkpoint("deals") == "2"
    with pytest.raises(VersionConflict):
        await daemon.append(one("shop:1001", 1, created(1001)))
    assert positions(await cli.read_all()) == [1, 2]


# A process that opens the log and appends one event to a stream of its own. It
# says "ready" once its imports are done and opens on "go", so that all of them
# open at the same moment.
APPENDER = """
import asyncio, sys
from pathlib import Path
from events import DealCreated, StreamAppend, open_event_store

async def main(url, order_id):
    event = DealCreated(marker=f"shop:{order_id}", deal_id=order_id, status=1)
    print("ready", flush=True)
    sys.stdin.readline()
    store = await open_event_store(url, Path.cwd())
    try:
        await store.append([StreamAppend(f"shop:{order_id}", 0, [event])])
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_processes_opening_a_new_log_at_once(
    backend: Backend, open_store: OpenStore
) -> None:
    """Processes that open a log not yet created, all at once, all append to it."""
    pipe = asyncio.subprocess.PIPE
    processes = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", APPENDER, backend.url, str(order_id)),
            cwd=REPO,
            stdin=pipe,
            stdout=pipe,
            stderr=pipe,
        )
        for order_id in range(8)
    ]

    for process in processes:
        assert process.stdout is not None
        assert await process.stdout.readline() == b"ready\n"
    outcomes = await asyncio.gather(*(p.communicate(b"go\n") for p in processes))

    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr.decode()
    reader = await open_store()
    assert positions(await reader.read_all()) == list(range(1, 9))


async def test_concurrent_appenders_and_a_tailing_reader(
    open_store: OpenStore,
) -> None:
    """A reader tailing by position sees every position once, without gaps."""
    writers = [await open_store() for _ in range(3)]
    reader = await open_store()
    orders, events_per_order = 24, 4
    total = orders * events_per_order
    seen: list[RecordedEvent] = []

    async def capture(writer: EventStore, order_id: int) -> None:
        stream = f"shop:{order_id}"
        for version in range(events_per_order):
            await writer.append(one(stream, version, created(order_id)))
            await asyncio.sleep(0)

    async def tail() -> None:
        while len(seen) < total:
            after = seen[-1].position if seen else 0
            batch = await reader.read_all(after=after, limit=7)
            seen.extend(batch)
            if not batch:
                await asyncio.sleep(0.001)

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        group.create_task(tail())
        for order_id in range(orders):
            group.create_task(capture(writers[order_id % len(writers)], order_id))

    assert positions(seen) == list(range(1, total + 1))
    for order_id in range(orders):
        versions = [r.version for r in seen if r.stream == f"shop:{order_id}"]
        assert versions == list(range(1, events_per_order + 1))


async def test_streams_by_prefix(store: EventStore) -> None:
    """streams(prefix) lists the streams starting with the prefix, exactly, sorted."""
    for stream in ["article:TEA-02", "shop:1001", "article:TEA-01", "Article:X"]:
        await store.append(one(stream, 0, linked(stream)))
    await store.append(one("article:TEA-01", 1, linked("TEA-01")))

    assert await store.streams("article:") == ["article:TEA-01", "article:TEA-02"]
    assert await store.streams("article:TEA-01") == ["article:TEA-01"]
    assert await store.streams("article%") == []
    assert await store.streams("") == [
        "Article:X",
        "article:TEA-01",
        "article:TEA-02",
        "shop:1001",
    ]


async def test_closed_store_refuses_calls(open_store: OpenStore) -> None:
    """A closed store can be closed again but serves no more calls."""
    store = await open_store()
    await store.close()
    await store.close()

    with pytest.raises(EventLogUnavailable, match="closed"):
        await store.last_position()


# Opening a store from the `event_log.url` setting.


async def test_open_relative_url(tmp_path: Path) -> None:
    """sqlite:///relative/path resolves against the base folder, creating folders."""
    store = await open_event_store("sqlite:///var/log/events.db", tmp_path)
    try:
        await store.append(one("shop:1001", 0, placed(1001)))
    finally:
        await store.close()

    assert (tmp_path / "var" / "log" / "events.db").is_file()


async def test_open_absolute_url(tmp_path: Path) -> None:
    """sqlite:////absolute/path ignores the base folder."""
    url = f"sqlite:///{tmp_path}/abs/events.db"
    store = await open_event_store(url, Path("/nowhere"))
    await store.close()

    assert (tmp_path / "abs" / "events.db").is_file()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/events", "scheme 'postgres' is not supported"),
        ("events.db", "'events.db' has no scheme"),
        ("sqlite://host/events.db", "names no file"),
        ("sqlite:///", "names no file"),
    ],
)
async def test_open_refuses_bad_url(url: str, message: str, tmp_path: Path) -> None:
    """A url the store cannot open is refused with what to write instead."""
    with pytest.raises(EventLogError, match=message):
        await open_event_store(url, tmp_path)


async def test_open_unreadable_file_is_unavailable(tmp_path: Path) -> None:
    """A file SQLite cannot open raises EventLogUnavailable, not a sqlite3 error."""
    (tmp_path / "events.db").mkdir()

    with pytest.raises(EventLogUnavailable, match=r"events\.db") as caught:
        await open_event_store("sqlite:///events.db", tmp_path)

    assert isinstance(caught.value.__cause__, sqlite3.Error)

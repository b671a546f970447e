"""The embedded event log: one SQLite file, written through one connection.

A store runs every call on a worker thread of its own, which owns the
connection, so the appends of one process reach SQLite one at a time, in order. Other
processes may open the same file (a CLI command while the daemon runs): WAL lets
them read while one writes, `busy_timeout` makes a writer wait its turn, and
`BEGIN IMMEDIATE` takes the write lock before the versions are checked, so the
check and the insert see the same log. Positions are the last one plus one,
assigned under that lock, hence gap-free and in commit order.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from events.errors import EventLogUnavailable, VersionConflict
from events.store import RecordedEvent, StreamAppend
from events.types import SCHEMA_VERSIONS, encode, event_type
from events.upcast import decode_stored

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable: DELETE refused'); END;
"""

_COLUMNS = "position, stream, version, type, schema_version, recorded_at, payload"


class SqliteEventStore:
    """The `EventStore` kept in one SQLite file; made by `SqliteEventStore.open`.

    A call cancelled while its work runs still completes on the worker: an
    append either commits whole or not at all, and the log itself tells which.
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, worker: ThreadPoolExecutor
    ) -> None:
        self.path = path
        self._connection = connection
        self._worker = worker
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float = 5.0) -> SqliteEventStore:
        """Open the log at `path`, creating the file and its tables if need be.

        `busy_timeout` is how long (seconds) a call waits for another process
        that holds the write lock before it fails with `EventLogUnavailable`.
        """
        # A sqlite3 connection belongs to the thread that made it: the worker.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        connect = functools.partial(_connect, path, busy_timeout)
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(worker, _guarded, path, connect)
        except BaseException:
            worker.shutdown(wait=False)
            raise

        return cls(path, connection, worker)

    async def append(
        self,
        appends: Sequence[StreamAppend],
        checkpoints: Mapping[str, str] | None = None,
    ) -> list[RecordedEvent]:
        """Append to one or more streams and set checkpoints, all or nothing."""
        write = functools.partial(self._write, list(appends), dict(checkpoints or {}))
        return await self._run(write)

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > `after`, in position order."""
        sql = (
            f"SELECT {_COLUMNS} FROM events"
            " WHERE position > ? ORDER BY position LIMIT ?"
        )
        return await self._run(functools.partial(self._read, sql, (after, limit)))

    async def read_stream(self, stream: str) -> list[RecordedEvent]:
        """The whole stream in version order (empty when it does not exist)."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream = ? ORDER BY version"
        return await self._run(functools.partial(self._read, sql, (stream,)))

    async def stream_version(self, stream: str) -> int:
        """The stream's last version, 0 when it does not exist."""
        return await self._run(functools.partial(self._stream_version, stream))

    async def streams(self, prefix: str) -> list[str]:
        """Names of the streams that start with `prefix`, sorted."""
        # substr rather than LIKE: LIKE ignores ASCII case and treats % and _
        # as wildcards. The lower bound lets the (stream, version) index skip
        # the streams sorted before the prefix.
        sql = (
            "SELECT DISTINCT stream FROM events"
            " WHERE stream >= ?1 AND substr(stream, 1, length(?1)) = ?1"
            " ORDER BY stream"
        )
        rows = await self._run(functools.partial(self._fetch, sql, (prefix,)))
        return [stream for (stream,) in rows]

    async def checkpoint(self, name: str) -> str | None:
        """The checkpoint's value, None when it was never set."""
        sql = "SELECT value FROM checkpoints WHERE name = ?"
        rows = await self._run(functools.partial(self._fetch, sql, (name,)))
        return str(rows[0][0]) if rows else None

    async def set_checkpoints(self, checkpoints: Mapping[str, str]) -> None:
        """Set checkpoints alone, for a step that produced no events."""
        await self.append([], checkpoints)

    async def last_position(self) -> int:
        """The position of the newest event, 0 when the log is empty."""
        return await self._run(self._last_position)

    async def close(self) -> None:
        """Close the connection once the calls already queued are done."""
        if self._closed:
            return
        self._closed = True

        loop = asyncio.get_running_loop()
        try:
            close = self._connection.close
            await loop.run_in_executor(self._worker, _guarded, self.path, close)
        finally:
            self._worker.shutdown()

    async def _run(self, work: Callable[[], _T]) -> _T:
        if self._closed:
            raise EventLogUnavailable(f"event log {self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, _guarded, self.path, work)

    # Everything below runs on the worker thread.

    def _write(
        self, appends: list[StreamAppend], checkpoints: dict[str, str]
    ) -> list[RecordedEvent]:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            recorded = self._insert(appends)
            connection.executemany(
                "INSERT INTO checkpoints (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                checkpoints.items(),
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

        return recorded

    def _insert(self, appends: list[StreamAppend]) -> list[RecordedEvent]:
        recorded_at = datetime.now(UTC).isoformat(timespec="microseconds")
        position = self._last_position()
        recorded: list[RecordedEvent] = []

        for stream, expected_version, events in appends:
            version = self._stream_version(stream)
            if version != expected_version:
                raise _conflict(stream, expected_version, version)

            for event in events:
                position += 1
                version += 1
                type_ = event_type(event)
                schema_version = SCHEMA_VERSIONS[type_]
                row = (position, stream, version, type_, schema_version, recorded_at)
                try:
                    self._connection.execute(
                        f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*row, encode(event)),
                    )
                except sqlite3.IntegrityError as exc:
                    # Unreachable while every writer begins with BEGIN IMMEDIATE;
                    # the UNIQUE constraint still stops one that does not.
                    actual = self._stream_version(stream)
                    raise _conflict(stream, expected_version, actual) from exc

                recorded.append(
                    RecordedEvent(
                        position=position,
                        stream=stream,
                        version=version,
                        type=type_,
                        schema_version=schema_version,
                        recorded_at=recorded_at,
                        event=event,
                    )
                )

        return recorded

    def _read(self, sql: str, parameters: tuple[Any, ...]) -> list[RecordedEvent]:
        return [_recorded(row) for row in self._fetch(sql, parameters)]

    def _fetch(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        return self._connection.execute(sql, parameters).fetchall()

    def _stream_version(self, stream: str) -> int:
        sql = "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?"
        return int(self._connection.execute(sql, (stream,)).fetchone()[0])

    def _last_position(self) -> int:
        sql = "SELECT COALESCE(MAX(position), 0) FROM events"
        return int(self._connection.execute(sql).fetchone()[0])


def _guarded(path: Path, work: Callable[[], _T]) -> _T:
    try:
        return work()
    except sqlite3.Error as exc:
        raise EventLogUnavailable(f"event log {path}: {exc}") from exc


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    # isolation_level=None: transactions are begun and ended by hand.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        _use_wal(connection, path, busy_timeout)
        # A DealRequested must survive a power cut before the CRM call.
        connection.execute("PRAGMA synchronous = FULL")
        connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
    except BaseException:
        connection.close()
        raise

    return connection


def _use_wal(connection: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    # Switching a new file to WAL needs an exclusive lock. When two processes
    # open the file at the same moment, each holds a read lock the other's
    # switch waits for, so SQLite answers one of them "busy" at once rather
    # than let busy_timeout run into a deadlock: wait and retry here.
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.01)

    if mode != "wal":
        raise EventLogUnavailable(
            f"event log {path}: SQLite refused WAL mode (it stays in {mode!r});"
            " put the file on a local disk"
        )


def _recorded(row: tuple[Any, ...]) -> RecordedEvent:
    position, stream, version, type_, schema_version, recorded_at, payload = row
    event = decode_stored(
        type_, schema_version, payload, position=position, stream=stream
    )

    return RecordedEvent(
        position=position,
        stream=stream,
        version=version,
        type=type_,
        schema_version=schema_version,
        recorded_at=recorded_at,
        event=event,
    )


def _conflict(stream: str, expected: int, actual: int) -> VersionConflict:
    return VersionConflict(
        f"stream {stream!r} is at version {actual}, not the expected {expected}:"
        " another writer appended first; read the stream again and retry"
    )

"""The event log's contract, which every backend (SQLite now, MariaDB later) keeps.

- Append-only: there is no update and no delete; an event once written never
  changes.
- Positions are global, gap-free and assigned in commit order, so a reader that
  tails the log by position never passes over an event a slower writer commits
  later.
- Each stream's versions start at 1 and are unique: an append names the version
  it expects the stream to be at, and a concurrent writer gets `VersionConflict`.
- Checkpoints (a capture cursor, a projection's position) are written in the same
  transaction as the events they account for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec

from events.types import Event


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    recorded_at: str  # ISO 8601, UTC
    event: Event


class StreamAppend(NamedTuple):
    """Events to add to one stream, which must be at `expected_version` (0: new)."""

    stream: str
    expected_version: int
    events: Sequence[Event]


class EventStore(Protocol):
    async def append(
        self,
        appends: Sequence[StreamAppend],
        checkpoints: Mapping[str, str] | None = None,
    ) -> list[RecordedEvent]:
        """Append to one or more streams and set checkpoints, all or nothing."""
        ...

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with position > `after`, in position order."""
        ...

    async def read_stream(self, stream: str) -> list[RecordedEvent]:
        """The whole stream in version order (empty when it does not exist)."""
        ...

    async def stream_version(self, stream: str) -> int:
        """The stream's last version, 0 when it does not exist."""
        ...

    async def streams(self, prefix: str) -> list[str]:
        """Names of the streams that start with `prefix`, sorted."""
        ...

    async def checkpoint(self, name: str) -> str | None: ...

    async def set_checkpoints(self, checkpoints: Mapping[str, str]) -> None:
        """Set checkpoints alone, for a step that produced no events."""
        ...

    async def last_position(self) -> int: ...

    async def close(self) -> None: ...

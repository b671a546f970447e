"""Reading stored payloads written under an older schema of their event type.

A payload at its type's current `SCHEMA_VERSIONS` entry decodes straight into
its Struct. An older one is decoded to a plain dict and lifted one version at a
time by the upcasters registered below, until it has the current shape; only
then is it converted into the Struct, so every rule of the type still applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from events.errors import UnknownEventType
from events.types import SCHEMA_VERSIONS, Event, decode, event_type

# Takes a payload of one schema version (without its type tag) and returns it in
# the shape of the next version.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (event type, the schema version it reads) -> upcaster. When a type's version
# goes from n to n+1, add its ("Type", n) entry here; the entries of earlier
# versions stay, so a payload of any age reaches the current shape.


def _line_ids_unknown(fields: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of DealCreated and DealUpdated: the lines' CRM ids were not kept."""
    return {**fields, "line_ids": None}


def _commented_lines_apart(fields: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3 of DealUpdated: a comment's lines were recorded as if sent.

    v2 put the right lines in `deal` though the CRM kept the old ones; v3
    keeps them as `commented_lines`. The old lines are not in this payload:
    `deal` goes without lines, meaning those of the event before.
    """
    if "comment_added" not in (fields.get("changes") or {}):
        return fields
    deal = dict(fields["deal"])
    return {**fields, "deal": deal, "commented_lines": deal.pop("jobs_attributes", [])}


def _found_by_marker(fields: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3 of DealCreated: v2 wrote 201 for every create, 200 for a deal
    found by its marker; the attempts were not kept."""
    return {**fields, "found": fields.get("status") == 200, "attempts": None}


def _attempts_unknown(fields: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4 of DealUpdated: the attempts were not kept."""
    return {**fields, "attempts": None}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("DealCreated", 1): _line_ids_unknown,
    ("DealCreated", 2): _found_by_marker,
    ("DealUpdated", 1): _line_ids_unknown,
    ("DealUpdated", 2): _commented_lines_apart,
    ("DealUpdated", 3): _attempts_unknown,
}

# The tag msgspec writes into every payload (the Struct's `tag_field`).
_TAG = "type"


def decode_stored(
    type: str,
    schema_version: int,
    payload: bytes,
    *,
    position: int | None = None,
    stream: str | None = None,
) -> Event:
    """Decode a stored payload into its event, upcasting it when it is older.

    `position` and `stream` only name the row in the error when it cannot be read.
    """
    where = _where(type, schema_version, position, stream)
    current = SCHEMA_VERSIONS.get(type)
    if current is None:
        raise UnknownEventType(f"{where}: no event type of that name")
    if not 1 <= schema_version <= current:
        raise UnknownEventType(
            f"{where}: this code reads {type} up to schema version {current}"
        )

    try:
        if schema_version == current:
            event = decode(payload)
        else:
            event = _upcast(type, schema_version, current, payload, where)
    except msgspec.MsgspecError as exc:
        raise UnknownEventType(f"{where}: payload does not fit: {exc}") from exc

    # The tag in the payload and the row's type column are written together;
    # disagreement means the row was not written by this store.
    if event_type(event) != type:
        raise UnknownEventType(f"{where}: payload holds a {event_type(event)}")

    return event


def _upcast(
    type: str, schema_version: int, current: int, payload: bytes, where: str
) -> Event:
    fields = msgspec.json.decode(payload, type=dict[str, Any])
    fields.pop(_TAG, None)

    for version in range(schema_version, current):
        upcaster = UPCASTERS.get((type, version))
        if upcaster is None:
            raise UnknownEventType(
                f"{where}: no upcaster from {type} v{version} to v{version + 1}"
            )
        fields = upcaster(fields)

    event: Event = msgspec.convert({_TAG: type, **fields}, Event)
    return event


def _where(
    type: str, schema_version: int, position: int | None, stream: str | None
) -> str:
    parts = [f"{type} v{schema_version}"]
    if position is not None:
        parts.append(f"at position {position}")
    if stream is not None:
        parts.append(f"in stream {stream!r}")
    return "event log: " + " ".join(parts)

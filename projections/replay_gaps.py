"""What a replay cannot honour: settings that need facts the log never captured.

A query added after the orders were captured, a branch taken from a query's
rows, or an order column the shop did not have: each such setting is a `Gap`,
and a replay refuses with `UncapturedData` before it sends anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from daemon.settings import Settings, SiteSettings
from events.snapshot import OrderSnapshot
from projections.errors import ProjectionError
from projections.order_state import OrderState


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

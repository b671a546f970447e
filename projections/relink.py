"""`ocsync relink`: rebuild the order-to-deal links from the CRM, by marker.

KeepinCRM keeps no external id on deals, so the event log is the only record of
which deal belongs to which order. When the log is lost or restored from an
older copy, every deal is found again by the marker custom field
(`<site>:<order_id>`) that ocsync wrote into it and no setting changes, and a
`DealRelinked` event links it to its order. Capture then fills in the orders'
snapshots, and a changed order corrects its deal instead of creating another.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import structlog

from daemon.settings import Settings
from events.store import EventStore, StreamAppend
from events.types import DealRelinked, parse_order_stream
from projections.keepincrm.client import KeepinCRMClient
from projections.order_state import fold

log = structlog.get_logger("ocsync.relink")


@dataclass
class RelinkResult:
    linked: int = 0
    already: int = 0
    # Markers several CRM deals carry: the oldest is linked, the rest listed.
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    # Markers whose deal in the log is not the one the CRM has.
    conflicts: dict[str, tuple[int, int]] = field(default_factory=dict)


async def relink(
    store: EventStore,
    crm: KeepinCRMClient,
    settings: Settings,
    site: str | None = None,
) -> RelinkResult:
    """Link every CRM deal carrying a marker of the configured sites to its order."""
    marker_field = settings.deals.custom_fields.marker
    sites = {s.name for s in settings.sites if site is None or s.name == site}

    by_marker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async for summary in crm.list_deals():
        deal = summary
        if "custom_fields_detailed" not in deal or "jobs" not in deal:
            deal = await crm.get_deal(int(summary["id"]))
        marker = _marker(deal, marker_field)
        if marker and marker.partition(":")[0] in sites:
            by_marker[marker].append(deal)

    result = RelinkResult()
    for marker in sorted(by_marker):
        deals = sorted(by_marker[marker], key=lambda deal: int(deal["id"]))
        oldest = deals[0]
        deal_id = int(oldest["id"])
        if len(deals) > 1:
            result.duplicates[marker] = [int(deal["id"]) for deal in deals]
            log.warning(
                "several deals carry one marker",
                **_about_order(marker),
                deal_ids=result.duplicates[marker],
            )

        records = await store.read_stream(marker)
        state = fold(marker, records)
        bound = log.bind(
            **_about_order(marker),
            position=records[-1].position if records else None,
            deal_id=deal_id,
        )
        if state.deal_id == deal_id:
            result.already += 1
            continue
        if state.deal_id is not None:
            result.conflicts[marker] = (state.deal_id, deal_id)
            bound.warning(
                "the log links another deal",
                deal_id=state.deal_id,
                crm_deal_id=deal_id,
            )
            continue

        event = DealRelinked(marker=marker, deal_id=deal_id, deal=deal_as_sent(oldest))
        [recorded] = await store.append([StreamAppend(marker, state.version, [event])])
        bound.info("deal relinked", position=recorded.position)
        result.linked += 1

    log.info(
        "relink finished",
        linked=result.linked,
        already=result.already,
        duplicates=len(result.duplicates),
        conflicts=len(result.conflicts),
    )
    return result


def _about_order(marker: str) -> dict[str, Any]:
    """The site, order and stream a marker names, for a log line about it."""
    parsed = parse_order_stream(marker)
    if parsed is None:
        return {"site": marker.partition(":")[0], "stream": marker}
    site, order_id, _ = parsed
    return {"site": site, "order_id": order_id, "stream": marker}


def _marker(deal: dict[str, Any], marker_field: str) -> str | None:
    for item in deal.get("custom_fields_detailed") or []:
        if isinstance(item, dict) and item.get("name") == marker_field:
            value = str(item.get("value") or "").strip()
            return value or None
    return None


def deal_as_sent(deal: dict[str, Any]) -> dict[str, Any]:
    """The CRM's read shape put back into the shape ocsync sends.

    Only what a later correction compares matters: the owned fields and the
    lines' articles, so that the lines ocsync made can be told from a manager's.
    """
    sent: dict[str, Any] = {
        name: deal.get(name)
        for name in (
            "title",
            "currency",
            "total",
            "discount",
            "discount_kind",
            "comment",
        )
        if deal.get(name) is not None
    }
    source = deal.get("source") or {}
    if isinstance(source, dict) and source.get("id") is not None:
        sent["source_id"] = source["id"]
    sent["custom_fields"] = [
        {"name": item["name"], "value": item.get("value")}
        for item in deal.get("custom_fields_detailed") or []
        if isinstance(item, dict) and "name" in item
    ]
    currency = deal.get("currency")
    sent["jobs_attributes"] = [
        {
            "amount": job.get("amount"),
            "title": job.get("title"),
            "product_attributes": {
                "sku": job.get("sku"),
                "title": job.get("product_title") or job.get("title"),
                "price": job.get("price"),
                "currency": job.get("currency") or currency,
            },
            # Keys of the line's own the read shape shows (variant text).
            **{key: value for key, value in job.items() if key not in _READ_ONLY},
        }
        for job in deal.get("jobs") or []
    ]
    return sent


# Line keys of the read shape that are the CRM's, not something ocsync sent.
_READ_ONLY = frozenset(
    {
        "id",
        "title",
        "amount",
        "sku",
        "price",
        "product_title",
        "currency",
        "material_id",
    }
)


def render_relink(result: RelinkResult) -> str:
    lines = [
        f"{result.linked} deal(s) linked to their orders, "
        f"{result.already} already linked."
    ]
    for marker, ids in sorted(result.duplicates.items()):
        lines.append(f"  {marker}: several deals carry this marker: {ids}")
    for marker, (ours, theirs) in sorted(result.conflicts.items()):
        lines.append(
            f"  {marker}: the log links deal {ours}, the CRM's marker is on {theirs}"
        )
    return "\n".join(lines)

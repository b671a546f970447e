"""Correcting an existing deal in place when its order changed in the shop.

The same step serves a replay after a settings fix: the deal as last sent is
compared with the deal the newest snapshot should be, and only the owned fields
that differ are sent (`PATCH /agreements/{id}`). Lines change by their CRM ids:
the deal's current lines are read, the ones ocsync sent are removed
(`_destroy`, *schema* grade) and the right ones added; lines a manager added by
hand stay. Where replacing lines misbehaves, `deals.line_update = "comment"`
leaves the lines as they are and adds a comment listing the right ones
instead. The stage moves only when the shop's status changed to one the site's
`stages` map names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog

from daemon.settings import LineUpdate, SiteSettings
from events.snapshot import OrderSnapshot
from events.store import EventStore, StreamAppend
from events.types import DealUpdated, DealUpdateFailed
from projections.deal import Deal
from projections.deal_changes import as_logged, changed_scalars, deal_diff
from projections.keepincrm.client import (
    KeepinCRMClient,
    close_as_failed_fields,
    nested_line_changes,
)
from projections.keepincrm.errors import KeepinCRMError, PaymentRequired, Unauthorized
from projections.order_state import OrderState

Outcome = Literal["updated", "unchanged", "refused"]

# The key of `DealUpdated.changes` that records a correction comment (the
# `comment` line strategy): no PATCH field, the note that was added.
COMMENT_ADDED = "comment_added"
# The keys of a deal line that are not its variant text.
_LINE_KEYS = frozenset({"amount", "title", "product_attributes"})


class CorrectionFailed(Exception):
    """A correction that may succeed later (the CRM did not answer)."""

    def __init__(self, error: KeepinCRMError) -> None:
        super().__init__(str(error))
        self.error = error


def deal_changes(
    state: OrderState, desired: Deal, snapshot: OrderSnapshot, site: SiteSettings
) -> dict[str, Any]:
    """The PATCH body (without lines) that brings the deal in line, or {}."""
    sent = state.sent or {}
    changes = changed_scalars(deal_diff(sent, desired), desired)

    status = snapshot.status_id
    # 0: the status the deal was last synced at is unknown (a deal relinked
    # from the CRM): leave the stage to the managers until it changes.
    if state.sent_status and status != state.sent_status:
        # Only a mapped status names a stage: the site's first stage is where
        # a new deal starts, not where an unmapped status sends a deal back.
        stage_id = site.stages.get(str(status))
        if stage_id is not None:
            changes["stage_id"] = stage_id
        if status in site.failed_statuses:
            changes.update(close_as_failed_fields())
    return changes


async def correct_deal(
    store: EventStore,
    crm: KeepinCRMClient,
    state: OrderState,
    desired: Deal,
    site: SiteSettings,
    checkpoints: Mapping[str, str],
    log: structlog.typing.FilteringBoundLogger,
    *,
    line_update: LineUpdate = "replace",
) -> Outcome:
    """Send what changed and record it; raises `CorrectionFailed` to retry later.

    `line_update` is `deals.line_update`: changed lines are replaced by their
    CRM ids, or left alone with a comment listing the right ones (recorded as
    `changes["comment_added"]`, so that the next pass sees them handled).
    """
    snapshot = state.snapshot
    assert snapshot is not None and state.deal_id is not None
    deal_id = state.deal_id

    changes = deal_changes(state, desired, snapshot, site)
    diff = deal_diff(state.sent or {}, desired)
    note = None
    if diff.lines_changed and line_update == "comment":
        note = lines_note(desired)
    try:
        if diff.lines_changed and note is None:
            changes["jobs_attributes"] = await _line_changes(
                crm, deal_id, diff.old_lines or [], desired
            )
        if not changes and note is None:
            await store.set_checkpoints(checkpoints)
            return "unchanged"
        # The PATCH first: sent again after a failed comment, it changes
        # nothing twice, where a comment sent again would be a second one.
        if changes:
            await crm.update_deal(deal_id, changes)
        if note is not None:
            # A run cut off after the CRM took the comment sends it again:
            # the deal then shows it already, and a second copy is not added.
            if not await _has_comment(crm, deal_id, note):
                await crm.add_deal_comment(deal_id, note)
            changes[COMMENT_ADDED] = note
    except (Unauthorized, PaymentRequired) as exc:
        # The account, not this deal, is refused: stop the pass.
        raise CorrectionFailed(exc) from exc
    except KeepinCRMError as exc:
        if exc.retryable:
            raise CorrectionFailed(exc) from exc
        log.warning("deal correction refused", deal_id=deal_id, status=exc.status)
        await _append(
            store,
            state,
            DealUpdateFailed(
                marker=state.stream,
                deal_id=deal_id,
                status=exc.status,
                error=str(exc),
                retryable=False,
            ),
            checkpoints,
        )
        return "refused"

    log.info(
        "deal corrected",
        deal_id=deal_id,
        status=200,
        fields=sorted(
            name for name in changes if name not in ("jobs_attributes", COMMENT_ADDED)
        ),
        lines=diff.lines_changed,
        line_update=line_update if diff.lines_changed else None,
    )
    await _append(
        store,
        state,
        DealUpdated(
            marker=state.stream,
            deal_id=deal_id,
            deal=desired,
            changes=changes,
            status=200,
            source_position=state.snapshot_position,
            order_status=snapshot.status_id,
        ),
        checkpoints,
    )
    return "updated"


def lines_note(desired: Deal) -> str:
    """The correction comment listing the lines the deal should have.

    For managers, in their language: one numbered line per item with its
    article, name, variants, quantity and unit price as sent.
    """
    lines = as_logged(desired).get("jobs_attributes") or []
    currency = str(desired.get("currency") or "")
    rows = ["ocsync: позиції замовлення змінились. Правильні позиції:"]
    for number, line in enumerate(lines, start=1):
        product = line.get("product_attributes") or {}
        title = str(line.get("title") or product.get("title") or "")
        # Variant text rides on a key of its own (`deals.line_comment_key`).
        variants = "; ".join(
            str(value) for key, value in line.items() if key not in _LINE_KEYS and value
        )
        described = f"{title} ({variants})" if variants else title
        price = f"{product.get('price', '')} {currency}".strip()
        rows.append(
            f"{number}. {product.get('sku', '')} — {described}: "
            f"{line.get('amount', '')} × {price}"
        )
    return "\n".join(rows)


async def _line_changes(
    crm: KeepinCRMClient, deal_id: int, sent_lines: list[dict[str, Any]], desired: Deal
) -> list[dict[str, Any]]:
    """Remove the lines ocsync sent, add the right ones; hand-made lines stay.

    Lines with the articles about to be sent count as ocsync's too: a pass cut
    off after the CRM took its lines, but before the log recorded them, must
    not leave those lines twice when it runs again.
    """
    ours = {
        str((line.get("product_attributes") or {}).get("sku", ""))
        for line in [*sent_lines, *desired.get("jobs_attributes", [])]
    }
    current = (await crm.get_deal(deal_id)).get("jobs") or []
    stale = [int(job["id"]) for job in current if str(job.get("sku", "")) in ours]
    return nested_line_changes(removed=stale, added=desired.get("jobs_attributes", []))


async def _has_comment(crm: KeepinCRMClient, deal_id: int, note: str) -> bool:
    # The read shape's `comments` is modelled by the sandbox; where the CRM
    # shows none, the comment is simply added.
    comments = (await crm.get_deal(deal_id)).get("comments") or []
    return any(
        isinstance(comment, dict) and comment.get("note") == note
        for comment in comments
    )


async def _append(
    store: EventStore,
    state: OrderState,
    event: DealUpdated | DealUpdateFailed,
    checkpoints: Mapping[str, str],
) -> None:
    [written] = await store.append(
        [StreamAppend(state.stream, state.version, [event])], checkpoints=checkpoints
    )
    state.version = written.version

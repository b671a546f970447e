"""Correcting an existing deal in place when its order changed in the shop.

The same step serves a replay after a settings fix: the deal as last sent is
compared with the deal the newest snapshot should be, and only the owned fields
that differ are sent (`PATCH /agreements/{id}`). Lines change by their CRM ids:
the deal's current lines are read, the ones ocsync made are removed
(`_destroy`, *schema* grade) and the right ones added; the deal is read back
and the new lines' ids recorded, so that lines a manager added by hand stay,
even when they carry the same article as one of ocsync's. Where replacing
lines misbehaves, `deals.line_update = "comment"` leaves the lines as they
are and adds a comment listing the right ones instead. The stage moves only
when the shop's status changed to one the site's `stages` map names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import structlog

from daemon.settings import LineUpdate, SiteSettings
from events.snapshot import OrderSnapshot
from events.store import EventStore, StreamAppend
from events.types import DealUpdated, DealUpdateFailed
from projections.deal import Deal
from projections.deal_changes import (
    DealDiff,
    as_logged,
    changed_scalars,
    comparable,
    deal_diff,
)
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import (
    KeepinCRMError,
    PaymentRequired,
    Unauthorized,
    UnexpectedAnswer,
)
from projections.keepincrm.facts import close_as_failed_fields, nested_line_changes
from projections.keepincrm.transport import Answered
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


class LinesWithoutIds(UnexpectedAnswer):
    """The CRM shows a deal's lines without `id`: they cannot be replaced.

    The API notes list the read shape as `jobs[{title,amount,sku,price}]`;
    whether the live CRM answers line ids is unconfirmed. Sending the new
    lines without removing the old ones would leave both, so the correction
    is refused for good, and the operator told how to go on.
    """


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
    restage: int | None = None,
) -> Outcome:
    """Send what changed and record it; raises `CorrectionFailed` to retry later.

    `line_update` is `deals.line_update`: changed lines are replaced by their
    CRM ids, or left alone with a comment listing the right ones (recorded as
    `changes["comment_added"]`, so that the next pass sees them handled).
    `restage` is a stage a replay moves the deal to after a stage map fix.
    """
    snapshot = state.snapshot
    assert snapshot is not None and state.deal_id is not None
    deal_id = state.deal_id

    changes = deal_changes(state, desired, snapshot, site)
    if restage is not None:
        changes.setdefault("stage_id", restage)
    diff = deal_diff(state.sent or {}, desired)
    fix_lines = lines_to_fix(state, diff, line_update)
    note = None
    if fix_lines and line_update == "comment":
        note = lines_note(desired)
    before: list[int] = []
    line_ids = None
    # A comment alone is a create (201) that the client raises on if refused.
    answered = Answered(status=201, attempts=1)
    try:
        if fix_lines and note is None:
            changes["jobs_attributes"], before = await _line_changes(
                crm, state, diff.old_lines or [], desired
            )
        if not changes and note is None:
            await store.set_checkpoints(checkpoints)
            return "unchanged"
        # The PATCH first: sent again after a failed comment, it changes
        # nothing twice, where a comment sent again would be a second one.
        if changes:
            answered = await crm.update_deal(deal_id, changes)
        if "jobs_attributes" in changes:
            line_ids = await read_line_ids(crm, deal_id, besides=before, log=log)
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
        log.warning(
            "deal correction refused",
            deal_id=deal_id,
            status=exc.status,
            error=str(exc),
        )
        failure = DealUpdateFailed(
            marker=state.stream,
            deal_id=deal_id,
            status=exc.status,
            error=str(exc),
            retryable=False,
        )
        await _append(store, state, failure, checkpoints)
        state.update_failure = failure
        return "refused"

    log.info(
        "deal corrected",
        deal_id=deal_id,
        status=answered.status,
        attempt=answered.attempts if changes else None,
        fields=sorted(
            name for name in changes if name not in ("jobs_attributes", COMMENT_ADDED)
        ),
        lines=fix_lines,
        line_update=line_update if fix_lines else None,
    )
    # What the CRM now holds: the lines change only when they were sent.
    recorded = dict(desired)
    if "jobs_attributes" not in changes:
        recorded["jobs_attributes"] = (state.sent or {}).get("jobs_attributes", [])
    await _append(
        store,
        state,
        DealUpdated(
            marker=state.stream,
            deal_id=deal_id,
            deal=recorded,
            changes=changes,
            status=answered.status,
            attempts=answered.attempts if changes else None,
            source_position=state.snapshot_position,
            order_status=snapshot.status_id,
            line_ids=line_ids,
            commented_lines=desired.get("jobs_attributes") if note else None,
        ),
        checkpoints,
    )
    return "updated"


def stage_map_fix(state: OrderState, site: SiteSettings) -> int | None:
    """The stage today's map gives the order's status, when a replay may move it.

    Only when the status is the one last synced (a status change moves the
    stage anyway), the map names it, and it differs from the stage ocsync
    last sent; the caller then moves the deal only if its stage in the CRM is
    still that one, never a stage a manager chose.
    """
    assert state.snapshot is not None
    status = state.snapshot.status_id
    if not state.sent_status or status != state.sent_status:
        return None
    mapped = site.stages.get(str(status))
    if mapped is None or state.sent_stage is None or mapped == state.sent_stage:
        return None
    return mapped


def lines_to_fix(state: OrderState, diff: DealDiff, line_update: LineUpdate) -> bool:
    """Whether the deal's lines need the `line_update` step.

    They do when they differ from the right ones, unless (with `comment`) a
    correction comment already lists exactly those: the lines the CRM keeps
    are recorded as they are, so a later `replace` still corrects them.
    """
    if not diff.lines_changed:
        return False
    if line_update == "comment" and state.commented_lines is not None:
        listed = comparable({"jobs_attributes": state.commented_lines})
        return listed != comparable({"jobs_attributes": diff.new_lines})
    return True


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


async def read_line_ids(
    crm: KeepinCRMClient,
    deal_id: int,
    *,
    besides: Collection[int] = (),
    log: structlog.typing.FilteringBoundLogger,
) -> list[int] | None:
    """The CRM ids of the deal's lines but `besides`: the lines ocsync just sent.

    Read after the CRM took them; None when the deal cannot be read back or a
    line shows no id. The lines are in the CRM either way: a later correction
    then tells ocsync's lines by what they hold instead.
    """
    try:
        jobs = (await crm.get_deal(deal_id)).get("jobs") or []
    except KeepinCRMError as exc:
        log.warning("deal lines not read back", deal_id=deal_id, error=str(exc))
        return None
    ids = [_line_id(job) for job in jobs]
    if any(line_id is None for line_id in ids):
        return None
    return [
        line_id for line_id in ids if line_id is not None and line_id not in besides
    ]


def ocsync_lines(
    current: list[dict[str, Any]],
    line_ids: list[int] | None,
    sent_lines: list[dict[str, Any]],
    desired_lines: list[dict[str, Any]],
) -> list[int]:
    """The ids of the deal's lines (`jobs`, all with ids) that ocsync made.

    By the ids recorded when ocsync sent them; where none are known (a deal
    relinked, or created before ids were kept), the lines holding what ocsync
    sent (article, title, quantity, price), at most as many as it sent. When
    some of ocsync's lines are gone, a pass was cut off after the CRM took a
    correction but before the log recorded it: the lines it added are the
    ones about to be sent, and count as ocsync's too, so that they are not
    left twice.
    """
    if line_ids is not None:
        known = set(line_ids)
        ours = [job for job in current if _line_id(job) in known]
        expected = len(known)
    else:
        ours = _holding(current, sent_lines)
        expected = len(sent_lines)
    if len(ours) < expected:
        rest = [job for job in current if job not in ours]
        ours += _holding(rest, desired_lines)
    return [int(job["id"]) for job in ours]


async def _line_changes(
    crm: KeepinCRMClient,
    state: OrderState,
    sent_lines: list[dict[str, Any]],
    desired: Deal,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Remove the lines ocsync made, add the right ones; hand-made lines stay.

    Also answers the ids of every line the deal held before, to tell the
    added lines when the deal is read back.
    """
    assert state.deal_id is not None
    current = (await crm.get_deal(state.deal_id)).get("jobs") or []
    if any(_line_id(job) is None for job in current):
        raise LinesWithoutIds(
            f"{state.stream}: deal {state.deal_id}: the CRM shows its lines without"
            " an id (jobs[].id), so they cannot be replaced without doubling them;"
            ' set deals.line_update = "comment" in the settings, then'
            f" `ocsync retry {state.stream}` or `ocsync replay deals`",
            status=200,
        )
    desired_lines = as_logged(desired).get("jobs_attributes") or []
    stale = ocsync_lines(current, state.line_ids, sent_lines, desired_lines)
    changes = nested_line_changes(
        removed=stale, added=desired.get("jobs_attributes", [])
    )
    return changes, [int(job["id"]) for job in current]


def _holding(
    jobs: list[dict[str, Any]], lines: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The CRM lines that hold one of `lines` each, at most one per line."""
    wanted = Counter(_sent_key(line) for line in lines)
    found = []
    for job in jobs:
        key = _job_key(job)
        if wanted[key] > 0:
            wanted[key] -= 1
            found.append(job)
    return found


def _sent_key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    product = line.get("product_attributes") or {}
    title = line.get("title") or product.get("title")
    return (
        str(product.get("sku") or ""),
        str(title or ""),
        _number(line.get("amount")),
        _number(product.get("price")),
    )


def _job_key(job: dict[str, Any]) -> tuple[str, str, str, str]:
    # The read shape: `jobs[{title, amount, sku, price}]`.
    return (
        str(job.get("sku") or ""),
        str(job.get("title") or job.get("product_title") or ""),
        _number(job.get("amount")),
        _number(job.get("price")),
    )


def _number(value: Any) -> str:
    """An amount as the same text however it was spelt (2, "2.00", 2.0)."""
    try:
        return f"{Decimal(str(value)).normalize():f}"
    except InvalidOperation:
        return str(value)


def _line_id(job: Any) -> int | None:
    line_id = job.get("id") if isinstance(job, dict) else None
    if isinstance(line_id, int) and not isinstance(line_id, bool):
        return line_id
    return None


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

"""Audit: one order's story, read back from its stream in the log.

Every captured snapshot (with what changed since the one before: order
columns, lines, totals, status, history), every request to the CRM and its
answer, and every correction, each with its position and the time it was
recorded. Read from the log alone: neither the shop nor the CRM is asked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from daemon.settings import DealSettings
from events.snapshot import Line, OrderSnapshot
from events.store import EventStore, RecordedEvent
from events.types import (
    CatalogueLinked,
    DealCreated,
    DealCreateFailed,
    DealRelinked,
    DealRequested,
    DealUpdated,
    DealUpdateFailed,
    OrderChanged,
    OrderPlaced,
    OrderUnreadable,
    RetryRequested,
)
from projections.deal import line_article
from projections.deal_changes import deal_diff
from projections.deal_corrections import COMMENT_ADDED
from projections.order_state import deal_after
from projections.replay_report import line_text

# A line of an order as the audit compares it: article, quantity, price, name.
LineKey = tuple[str, int, str, str]


@dataclass
class Entry:
    """One event of the order's stream, described."""

    position: int
    recorded_at: str
    type: str
    # snapshot, request, answer, failure, correction, correction_failure,
    # relink, retry, unreadable
    kind: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recorded_at": self.recorded_at,
            "type": self.type,
            "kind": self.kind,
            "summary": self.summary,
            **self.details,
        }


@dataclass
class OrderAudit:
    stream: str
    site: str
    order_id: int | None
    deal_id: int | None
    entries: list[Entry]

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "site": self.site,
            "order_id": self.order_id,
            "deal_id": self.deal_id,
            "entries": [entry.as_json() for entry in self.entries],
        }


async def audit_order(
    store: EventStore, stream: str, deals: DealSettings
) -> OrderAudit | None:
    """The timeline of one order stream (`site_a:17`); None when the log has none.

    Lines are compared by the article today's `deals.article_fields` make;
    statuses are named in `deals.language`.
    """
    records = await store.read_stream(stream)
    if not records or any(isinstance(r.event, CatalogueLinked) for r in records):
        return None

    timeline = _Timeline(deals)
    entries = [timeline.entry(record) for record in records]
    site, _, _ = stream.partition(":")
    snapshot = timeline.snapshot
    return OrderAudit(
        stream=stream,
        site=site,
        order_id=snapshot.order_id if snapshot else None,
        deal_id=timeline.deal_id,
        entries=entries,
    )


def render_audit(audit: OrderAudit) -> str:
    """The timeline for a person: one block per event, oldest first."""
    deal = f"deal {audit.deal_id}" if audit.deal_id is not None else "no deal"
    out = [f"{audit.stream}  ({deal}, {len(audit.entries)} events)"]
    for entry in audit.entries:
        out.append(
            f"#{entry.position}  {entry.recorded_at}  {entry.type}: {entry.summary}"
        )
        out.extend(f"    {line}" for line in _detail_lines(entry))
    return "\n".join(out)


def render_audit_json(audit: OrderAudit) -> str:
    return json.dumps(audit.as_json(), ensure_ascii=False, indent=2, default=str)


class _Timeline:
    """Walks a stream once, remembering the previous snapshot and deal sent."""

    def __init__(self, deals: DealSettings) -> None:
        self.article_fields = deals.article_fields
        self.language = deals.language
        self.snapshot: OrderSnapshot | None = None
        self.sent: dict[str, Any] | None = None
        self.deal_id: int | None = None

    def entry(self, record: RecordedEvent) -> Entry:
        def made(kind: str, summary: str, **details: Any) -> Entry:
            return Entry(
                record.position, record.recorded_at, record.type, kind, summary, details
            )

        match record.event:
            case OrderPlaced(snapshot=snapshot) | OrderChanged(snapshot=snapshot):
                summary, details = self._snapshot(snapshot)
                return made("snapshot", summary, **details)
            case DealRequested(deal=deal, source_position=source):
                self.sent = deal
                currency = deal.get("currency")
                # The lines less the discount make the total: show both parts.
                discount = (
                    f" after a discount of {deal['discount']} {currency}"
                    if deal.get("discount")
                    else ""
                )
                summary = (
                    f"create request: {deal.get('title')}, total {deal.get('total')}"
                    f" {currency}{discount}, built from position {source}"
                )
                lines = [line_text(line) for line in deal.get("jobs_attributes", [])]
                return made(
                    "request",
                    summary,
                    source_position=source,
                    lines=lines,
                    total=deal.get("total"),
                    discount=deal.get("discount"),
                )
            case DealCreated(deal_id=deal_id, status=status) as created:
                self.deal_id = deal_id
                if created.found:
                    summary = (
                        f"deal {deal_id} found in the CRM by its marker"
                        f" (status {status}): the create's answer was lost"
                    )
                else:
                    tries = created.attempts
                    summary = f"deal {deal_id} created (status {status}" + (
                        f", attempt {tries})" if tries else ")"
                    )
                return made(
                    "answer",
                    summary,
                    deal_id=deal_id,
                    status=status,
                    attempts=created.attempts,
                    found=created.found,
                )
            case DealCreateFailed(status=status, error=error, retryable=retryable):
                then = "tried again later" if retryable else "parked"
                return made(
                    "failure",
                    f"create failed (status {status}), {then}: {error}",
                    status=status,
                    error=error,
                    retryable=retryable,
                )
            case DealUpdated() as updated:
                summary, details = self._correction(updated)
                return made("correction", summary, **details)
            case DealUpdateFailed(deal_id=deal_id, status=status, error=error):
                return made(
                    "correction_failure",
                    f"correction of deal {deal_id} refused (status {status}): {error}",
                    deal_id=deal_id,
                    status=status,
                    error=error,
                )
            case DealRelinked(deal_id=deal_id, deal=deal):
                self.deal_id, self.sent = deal_id, deal
                return made(
                    "relink",
                    f"deal {deal_id} found in the CRM by its marker and linked again",
                    deal_id=deal_id,
                )
            case OrderUnreadable(field=field, reason=reason):
                return made(
                    "unreadable",
                    f"not readable from the shop, waits for a fix: {reason}",
                    field=field,
                    reason=reason,
                )
            case RetryRequested(reason=reason):
                return made(
                    "retry",
                    f"retry requested{f': {reason}' if reason else ''}",
                    reason=reason,
                )
            case _:
                return made("other", record.type)

    def _snapshot(self, snapshot: OrderSnapshot) -> tuple[str, dict[str, Any]]:
        previous, self.snapshot = self.snapshot, snapshot
        status = self._status(snapshot)
        total = snapshot.order.get("total")
        lines = [self._line_key(line) for line in snapshot.lines]
        details: dict[str, Any] = {
            "status": snapshot.status_id,
            "status_name": status,
            "lines": [_line_json(line) for line in lines],
        }
        if previous is None:
            # Amounts as the shop stores them: base currency, without tax.
            base = snapshot.shop.get("config_currency", "")
            summary = (
                f"captured: status {status}, total {total} {base}".rstrip()
                + f", {len(lines)} lines (prices as stored, without tax)"
            )
            details["changes"] = []
            return summary, details

        changes = self._changes(previous, snapshot)
        details["changes"] = changes
        parts = sorted({change["part"] for change in changes})
        summary = f"changed in the shop: {', '.join(parts) or 'nothing shown'}"
        return summary, details

    def _changes(self, old: OrderSnapshot, new: OrderSnapshot) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        if old.status_id != new.status_id:
            status = (self._status(old), self._status(new))
            changes.append(_change("status", "order_status_id", *status))
        for column in sorted(old.order.keys() | new.order.keys()):
            before, after = old.order.get(column), new.order.get(column)
            if before != after and column != "order_status_id":
                changes.append(_change("order", column, before, after))

        old_lines = Counter(self._line_key(line) for line in old.lines)
        new_lines = Counter(self._line_key(line) for line in new.lines)
        for key in sorted((old_lines - new_lines).elements()):
            changes.append(_change("lines", key[0], _line_json(key), None))
        for key in sorted((new_lines - old_lines).elements()):
            changes.append(_change("lines", key[0], None, _line_json(key)))

        old_totals = {row.code: row.value for row in old.totals}
        new_totals = {row.code: row.value for row in new.totals}
        for code in sorted(old_totals.keys() | new_totals.keys()):
            if old_totals.get(code) != new_totals.get(code):
                changes.append(
                    _change("totals", code, old_totals.get(code), new_totals.get(code))
                )

        seen = {row.order_history_id for row in old.history}
        for row in new.history:
            if row.order_history_id not in seen:
                added = f"status {row.order_status_id} at {row.date_added}"
                if row.comment:
                    added += f": {row.comment}"
                changes.append(
                    _change("history", str(row.order_history_id), None, added)
                )

        for name in sorted(old.extras.keys() | new.extras.keys()):
            if old.extras.get(name) != new.extras.get(name):
                changes.append(
                    _change("extras", name, old.extras.get(name), new.extras.get(name))
                )
        return changes

    def _correction(self, updated: DealUpdated) -> tuple[str, dict[str, Any]]:
        previous = self.sent or {}
        self.sent = deal_after(previous, updated)
        diff = deal_diff(previous, self.sent)
        sent_fields = sorted(
            name
            for name in updated.changes
            if name not in ("jobs_attributes", COMMENT_ADDED)
        )
        fields = {
            name: {"old": old, "new": new} for name, (old, new) in diff.fields.items()
        }
        fields.update(
            (f"custom_fields.{name}", {"old": old, "new": new})
            for name, (old, new) in diff.custom_fields.items()
        )
        for name in sent_fields:
            if name != "custom_fields" and name not in fields:
                fields[name] = {"old": previous.get(name), "new": updated.changes[name]}

        details: dict[str, Any] = {
            "deal_id": updated.deal_id,
            "status": updated.status,
            "attempts": updated.attempts,
            "source_position": updated.source_position,
            "fields": fields,
        }
        handled = []
        if updated.commented_lines is not None:
            # The CRM kept its lines; the comment lists the right ones.
            old_lines = previous.get("jobs_attributes") or []
            details["old_lines"] = [line_text(x) for x in old_lines]
            details["new_lines"] = [line_text(x) for x in updated.commented_lines]
            handled.append("lines commented")
        elif diff.lines_changed:
            details["old_lines"] = [line_text(x) for x in diff.old_lines or []]
            details["new_lines"] = [line_text(x) for x in diff.new_lines or []]
            handled.append("lines replaced")
        sent_lines = updated.changes.get("jobs_attributes") or []
        if sent_lines:
            # What the PATCH really sent: the CRM ids removed, the lines added.
            details["removed_line_ids"] = [
                item["id"] for item in sent_lines if item.get("_destroy")
            ]
            details["added_lines"] = [
                line_text(item) for item in sent_lines if "id" not in item
            ]
        if COMMENT_ADDED in updated.changes:
            details["comment_added"] = updated.changes[COMMENT_ADDED]
        named = ", ".join([*fields, *handled]) or "nothing"
        summary = (
            f"deal {updated.deal_id} corrected (status {updated.status}): {named};"
            f" from the snapshot at position {updated.source_position}"
        )
        return summary, details

    def _status(self, snapshot: OrderSnapshot) -> str:
        """`3 (Відправлено)`: the id and its name in the managers' language."""
        names = snapshot.catalogue.order_statuses.get(snapshot.status_id, {})
        ids = [lang.language_id for lang in snapshot.languages]
        ids.sort(key=lambda i: i != _language_id(snapshot, self.language))
        name = next((names[i] for i in ids if i in names), None)
        return f"{snapshot.status_id} ({name})" if name else str(snapshot.status_id)

    def _line_key(self, line: Line) -> LineKey:
        article = line_article(line, self.article_fields) or ""
        return (article, line.quantity, line.price, line.name)


def _change(part: str, name: str, old: Any, new: Any) -> dict[str, Any]:
    return {"part": part, "field": name, "old": old, "new": new}


def _line_json(key: LineKey) -> dict[str, Any]:
    article, quantity, price, name = key
    return {"article": article, "quantity": quantity, "price": price, "name": name}


def _language_id(snapshot: OrderSnapshot, code: str) -> int | None:
    return next(
        (lang.language_id for lang in snapshot.languages if lang.code == code), None
    )


def _detail_lines(entry: Entry) -> list[str]:
    """The indented lines under an entry's heading in the text timeline."""
    details = entry.details
    out: list[str] = []
    if entry.kind == "snapshot":
        if not details["changes"]:
            out += [f"line: {_line_str(line)}" for line in details["lines"]]
        for change in details["changes"]:
            old, new = change["old"], change["new"]
            if change["part"] == "lines":
                sign, line = ("-", old) if new is None else ("+", new)
                out.append(f"lines {sign} {_line_str(line)}")
            else:
                name = f"{change['part']}.{change['field']}"
                out.append(f"{name}: {_shown(old)} -> {_shown(new)}")
    elif entry.kind == "request":
        out += [f"line: {line}" for line in details["lines"]]
    elif entry.kind == "correction":
        for name, values in details["fields"].items():
            out.append(f"{name}: {_shown(values['old'])} -> {_shown(values['new'])}")
        out += [f"old line: {line}" for line in details.get("old_lines", [])]
        out += [f"new line: {line}" for line in details.get("new_lines", [])]
        if details.get("removed_line_ids"):
            removed = ", ".join(str(i) for i in details["removed_line_ids"])
            out.append(f"sent: remove lines {removed}")
        out += [f"sent: add line {line}" for line in details.get("added_lines", [])]
        if "comment_added" in details:
            out.append("comment added:")
            out += [f"  {text}" for text in details["comment_added"].splitlines()]
    return out


def _line_str(line: dict[str, Any]) -> str:
    return f"{line['article']} × {line['quantity']} @ {line['price']}  {line['name']}"


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False, default=str)

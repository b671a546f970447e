"""Replays for a person: what a deals or a catalogue replay changed, as text."""

from __future__ import annotations

import json
from typing import Any

from projections.catalogue_replay import CatalogueReplay
from projections.replay import DealsReplay


def render_deals_replay(result: DealsReplay) -> str:
    """The replay for a person: each deal's changes, old and new, then counts."""
    out: list[str] = []
    for correction in result.corrections:
        verb = {
            "planned": "would change",
            "updated": "corrected",
            "refused": "refused by the CRM",
            "failed": "not corrected: the CRM did not answer",
        }[correction.outcome]
        out.append(
            f"{correction.stream}  deal {correction.deal_id}  {verb}"
            f"  (snapshot at position {correction.position})"
        )
        if correction.error is not None:
            out.append(f"  error: {correction.error}")
        for name, (old, new) in correction.fields.items():
            out.append(f"  {name}: {_value(old)} -> {_value(new)}")
        if correction.new_lines is not None:
            out.append("  lines:")
            out.extend(f"    old  {line_text(x)}" for x in correction.old_lines or [])
            out.extend(f"    new  {line_text(x)}" for x in correction.new_lines)
    for left in result.stages_left:
        out.append(
            f"{left.stream}  deal {left.deal_id}  stage left: moved by a manager"
            f" (stage {_value(left.crm_stage)} in the CRM, {left.mapped} by the map)"
        )
    for stream, reason in result.unmapped:
        out.append(f"{stream}  not replayed: {reason}")

    verb = "would change" if result.dry_run else "corrected"
    summary = f"{result.changed} deals {verb}, {result.unchanged} unchanged"
    if result.refused:
        summary += f", {len(result.refused)} refused by the CRM"
    if result.unmapped:
        summary += f", {len(result.unmapped)} not mappable"
    if result.stages_left:
        summary += f", {len(result.stages_left)} stages left: moved by a manager"
    summary += (
        f"; {len(result.skipped)} orders skipped: no deal yet"
        " (`ocsync run` creates those)"
    )
    out.append(summary)
    return "\n".join(out)


def render_catalogue_replay(result: CatalogueReplay) -> str:
    """The catalogue replay for a person: each article's old and new item."""
    out = []
    for relink in result.relinked:
        old = _item(relink.old) if relink.linked else "never linked"
        new = _item(relink.new)
        title = f" ({relink.title})" if relink.title else ""
        out.append(f"{relink.article}: {old} -> {new}{title}")
    verb = "would be relinked" if result.dry_run else "relinked"
    out.append(f"{len(result.relinked)} articles {verb}, {result.unchanged} unchanged")
    return "\n".join(out)


def line_text(line: dict[str, Any]) -> str:
    """A deal line as `ARTICLE × QUANTITY @ PRICE CURRENCY  TITLE`."""
    product = line.get("product_attributes") or {}
    price = f"{product.get('price', '')} {product.get('currency', '')}".strip()
    title = line.get("title") or product.get("title") or ""
    return f"{product.get('sku', '')} × {line.get('amount', '')} @ {price}  {title}"


def _value(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False)


def _item(material_id: int | None) -> str:
    return "no item" if material_id is None else f"item {material_id}"

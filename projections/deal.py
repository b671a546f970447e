"""The deal an order should be: a pure function of its snapshot and the settings.

Nothing here does I/O, so every mapping rule is a unit test and a replay with
new settings recomputes deals from the log alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from daemon.settings import DealSettings, SiteSettings
from events.snapshot import Line, Names, OrderSnapshot
from projections.catalogue_names import (
    CatalogueNames,
    looks_double_encoded,
    undouble_utf8,
    variant_pairs,
    variant_text,
)
from projections.deal_client import FieldWarning, client_for
from projections.deal_fields import custom_fields_for, delivery_for, delivery_notes
from projections.deal_totals import (
    ProductLine,
    SettledTotals,
    settle_totals,
)
from projections.errors import DealMappingError
from projections.keepincrm.facts import close_as_failed_fields
from projections.money import DisplayRule, MoneyError
from projections.quick_orders import is_quick_order

Deal = dict[str, Any]


def deal_for(snapshot: OrderSnapshot, site: SiteSettings, deals: DealSettings) -> Deal:
    """Build the KeepinCRM deal body for one captured order.

    Raises `DealMappingError` (site, order, field) when the order cannot be
    turned into a correct deal; the caller parks it with that reason.
    """
    deal, _ = deal_with_warnings(snapshot, site, deals)
    return deal


def deal_with_warnings(
    snapshot: OrderSnapshot, site: SiteSettings, deals: DealSettings
) -> tuple[Deal, list[FieldWarning]]:
    """The deal, and what was odd but not fatal: (field, message) to log."""
    snapshot, repairs = _repaired_text(snapshot)
    builder = _DealBuilder(snapshot, site, deals)
    try:
        deal = builder.build()
    except MoneyError as exc:
        raise DealMappingError(
            site.name, snapshot.order_id, exc.field, str(exc)
        ) from exc
    return deal, [*repairs, *builder.warnings]


class _DealBuilder:
    def __init__(
        self, snapshot: OrderSnapshot, site: SiteSettings, deals: DealSettings
    ) -> None:
        self.snapshot = snapshot
        self.order = snapshot.order
        self.site = site
        self.deals = deals
        self.names = CatalogueNames(snapshot, deals.language)
        self.quick = is_quick_order(snapshot, site.quick_order)
        self.comment: list[str] = []
        self.warnings: list[FieldWarning] = []

    def build(self) -> Deal:
        currency = self.snapshot.currency
        if currency is None:
            raise self._error(
                "currency_id",
                "the order's currency row no longer exists, so its decimal "
                "places are unknown",
            )
        rule = DisplayRule.of(
            self.snapshot, currency.decimal_place, self.site.price_step
        )
        for row in self.snapshot.totals:
            if not row.code.strip():
                # Without its code a row is neither a charge, a discount nor
                # the total: the deal could not add up to what was shown.
                raise self._error(
                    "order_total.code", f"total row {row.title!r} has no code"
                )
        self._check_languages()

        # Lines first: variant text may add to the deal comment.
        lines = [self._line(line, rule, currency.code) for line in self.snapshot.lines]
        products = [
            ProductLine(
                title=job["title"],
                quantity=line.quantity,
                unit_price=job["product_attributes"]["price"],
                line_total_shown=rule.line_total(line),
            )
            for job, line in zip(lines, self.snapshot.lines, strict=True)
        ]
        settled = settle_totals(
            self.snapshot,
            rule,
            products,
            self.deals,
            quick=self.quick,
            currency_code=currency.code,
        )

        self._check_gap(settled, rule)

        client = client_for(self.snapshot, self.deals)
        delivery = delivery_for(self.snapshot, self.site, self.deals, self.names)
        fields, field_warnings = custom_fields_for(
            self.snapshot, self.site, self.deals, delivery, self.names
        )
        fields += [
            {"name": name, "value": value} for name, value in settled.custom_fields
        ]
        self.warnings += [*client.warnings, *delivery.warnings, *field_warnings]

        deal: Deal = {
            "title": self._title(),
            "source_id": self._source_id(),
            "main_responsible_id": self.site.responsible_id,
            "currency": currency.code,
            **settled.deal_fields(),
            "jobs_attributes": lines + settled.extra_lines,
            "client_attributes": client.attributes,
            "custom_fields": fields,
        }
        if self.site.funnel_id is not None:
            deal["funnel_id"] = self.site.funnel_id
        stage_id = self.site.stage_for(self.snapshot.status_id)
        if stage_id is not None:
            deal["stage_id"] = stage_id
        if self.snapshot.status_id in self.site.failed_statuses:
            # Cancelled before it reached the CRM: the deal starts closed.
            deal.update(close_as_failed_fields())

        # What the manager reads first: who and where, then the money as shown.
        comment = [
            *client.comment,
            *delivery_notes(self.snapshot, self.site, self.deals, delivery),
            *self.comment,
            *settled.comment,
        ]
        if comment:
            deal["comment"] = "\n".join(comment)

        return deal

    def _check_gap(self, settled: SettledTotals, rule: DisplayRule) -> None:
        """Refuse an order whose lines are far from its total: not rounding.

        Rounding to the shown places moves each unit by at most half a step,
        so a gap beyond a step per unit and per total row means the order's
        rows disagree (a module changed a quantity and not the totals): such
        an order is parked for a person to look at, never sent off balance.
        """
        gap = settled.rounding
        units = sum(line.quantity for line in self.snapshot.lines)
        rows = len(self.snapshot.totals) + 1
        tolerance = rule.step_size() * (units + rows)
        if abs(gap) > tolerance:
            raise self._error(
                "order_total.total",
                f"the lines add up to {abs(gap)} {'more' if gap < 0 else 'less'}"
                " than the total shown: the order's rows disagree",
            )

    def _title(self) -> str:
        title = f"№{self.snapshot.order_id} {self.site.title}".strip()
        if self.quick and self.site.quick_order is not None:
            return f"{self.site.quick_order.title_prefix} {title}".strip()
        if self.quick:
            return f"Швидке замовлення {title}"
        return title

    def _source_id(self) -> int:
        rule = self.site.quick_order
        if self.quick and rule is not None and rule.source_id is not None:
            return rule.source_id
        return self.site.source_id

    def _line(self, line: Line, rule: DisplayRule, currency: str) -> dict[str, Any]:
        if line.quantity <= 0:
            raise self._error(
                "order_product.quantity",
                f"line {line.name!r} has quantity {line.quantity}",
            )
        self._check_catalogue(line)
        title = self.names.product(line)
        variants = variant_text(variant_pairs(line, self.names))
        job: dict[str, Any] = {
            "amount": line.quantity,
            "title": title,
            "product_attributes": {
                "sku": self._article(line),
                "title": title,
                "price": rule.unit_price(line),
                "currency": currency,
            },
        }
        if variants:
            match self.deals.variant_target:
                case "line_comment":
                    job[self.deals.line_comment_key] = variants
                case "line_title":
                    job["title"] = f"{title} ({variants})"
                case "deal_comment":
                    self.comment.append(f"{title}: {variants}")

        return job

    def _article(self, line: Line) -> str:
        article = line_article(line, self.deals.article_fields)
        if article is None:
            raise self._error(
                "order_product.model",
                f"line {line.name!r} has no {'/'.join(self.deals.article_fields)} "
                "and no model to use as its article",
            )
        return article

    def _check_languages(self) -> None:
        """Warn when names cannot be had in the managers' language."""
        known = {language.language_id for language in self.snapshot.languages}
        if self.names.language_id is None:
            self._warn(
                "deals.language",
                f"{self.deals.language!r} is not a language of the shop: names "
                "as the order stored them",
            )
        # The order's own language is not used for names; a dangling id only
        # tells that the shop's language table changed since.
        language_id = (self.order.get("language_id") or "").strip()
        if language_id.isdigit() and int(language_id) not in known:
            self._warn(
                "language_id",
                f"language {language_id} is not a language of the shop; names "
                f"in {self.deals.language!r}, else as the order stored them",
            )

    def _check_catalogue(self, line: Line) -> None:
        """Warn when a line's product or option is gone from the catalogue."""
        if not line.codes:
            self._warn(
                "order_product.product_id",
                f"product {line.product_id} ({line.name!r}) is no longer in the "
                "shop: name and article as the order stored them",
            )
        for option in line.options:
            # A typed value (text, date, file) has no value row: id 0.
            if option.option_id is None:
                field = "order_option.product_option_id"
            elif option.product_option_value_id and option.option_value_id is None:
                field = "order_option.product_option_value_id"
            else:
                continue
            self._warn(
                field,
                f"option {option.name!r}: {option.value!r} of {line.name!r} is "
                "no longer in the shop: as the order stored it",
            )

    def _warn(self, field: str, message: str) -> None:
        # One line per field: an order of 2,000 lines of deleted products is
        # one warning, not 2,000.
        if all(known != field for known, _ in self.warnings):
            self.warnings.append((field, message))

    def _error(self, field: str, reason: str) -> DealMappingError:
        return DealMappingError(self.site.name, self.snapshot.order_id, field, reason)


def line_article(line: Line, article_fields: tuple[str, ...]) -> str | None:
    """The first non-empty product code of the chain, else the model.

    The model is the shop's own code and always filled; falling back to it
    keeps a line from reaching the CRM without an article, which would make
    the CRM create a new catalogue item for every order (C12). A product
    deleted since the order has no codes left: its order row keeps the model.
    """
    return article_of(line.codes, article_fields) or line.model.strip() or None


def article_of(codes: Mapping[str, str], article_fields: tuple[str, ...]) -> str | None:
    """The article a product's codes give under the settings' chain."""
    for field in article_fields:
        code = codes.get(field, "").strip()
        if code:
            return code
    return codes.get("model", "").strip() or None


def _repaired_text(
    snapshot: OrderSnapshot,
) -> tuple[OrderSnapshot, list[FieldWarning]]:
    """The snapshot with double-encoded text repaired, and a warning per field.

    Text that looks double-encoded but is not one whole (cut at its column's
    length, or mixed with text typed right) is kept as stored, with a warning.
    The log keeps the snapshot as the shop held it; only the deal is repaired.
    """
    found: dict[str, str] = {}

    def fix(field: str, text: str) -> str:
        repaired = undouble_utf8(text)
        if repaired is not None:
            found.setdefault(
                field,
                f"double-encoded text repaired: {text[:60]!r} -> {repaired[:60]!r}",
            )
            return repaired
        if looks_double_encoded(text):
            found.setdefault(
                field,
                f"looks double-encoded but does not decode; kept as stored: "
                f"{text[:60]!r}",
            )
        return text

    def fix_names(table: str, names: Names) -> Names:
        return {
            key: {language: fix(f"{table}.name", name) for language, name in by.items()}
            for key, by in names.items()
        }

    replace = msgspec.structs.replace
    order = {
        column: None if value is None else fix(column, value)
        for column, value in snapshot.order.items()
    }
    lines = [
        replace(
            line,
            name=fix("order_product.name", line.name),
            model=fix("order_product.model", line.model),
            options=[
                replace(
                    option,
                    name=fix("order_option.name", option.name),
                    value=fix("order_option.value", option.value),
                )
                for option in line.options
            ],
        )
        for line in snapshot.lines
    ]
    totals = [
        replace(row, title=fix("order_total.title", row.title))
        for row in snapshot.totals
    ]
    catalogue = snapshot.catalogue
    catalogue = replace(
        catalogue,
        products=fix_names("product_description", catalogue.products),
        options=fix_names("option_description", catalogue.options),
        option_values=fix_names("option_value_description", catalogue.option_values),
        custom_field_values=fix_names(
            "custom_field_value_description", catalogue.custom_field_values
        ),
    )
    if not found:
        return snapshot, []
    repaired = replace(
        snapshot, order=order, lines=lines, totals=totals, catalogue=catalogue
    )
    return repaired, list(found.items())

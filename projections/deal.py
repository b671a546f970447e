"""The deal an order should be: a pure function of its snapshot and the settings.

Nothing here does I/O, so every mapping rule is a unit test and a replay with
new settings recomputes deals from the log alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import phonenumbers

from daemon.settings import DealSettings, SiteSettings
from events.snapshot import Line, OrderSnapshot
from events.types import order_stream
from projections.catalogue_names import CatalogueNames, variant_pairs, variant_text
from projections.errors import DealMappingError
from projections.money import DisplayRule, MoneyError, exact

Deal = dict[str, Any]


def deal_for(snapshot: OrderSnapshot, site: SiteSettings, deals: DealSettings) -> Deal:
    """Build the KeepinCRM deal body for one captured order.

    Raises `DealMappingError` (site, order, field) when the order cannot be
    turned into a correct deal; the caller parks it with that reason.
    """
    try:
        return _DealBuilder(snapshot, site, deals).build()
    except MoneyError as exc:
        raise DealMappingError(
            site.name, snapshot.order_id, exc.field, str(exc)
        ) from exc


class _DealBuilder:
    def __init__(
        self, snapshot: OrderSnapshot, site: SiteSettings, deals: DealSettings
    ) -> None:
        self.snapshot = snapshot
        self.order = snapshot.order
        self.site = site
        self.deals = deals
        self.names = CatalogueNames(snapshot, deals.language)
        self.comment: list[str] = []

    def build(self) -> Deal:
        currency = self.snapshot.currency
        if currency is None:
            raise self._error(
                "currency_id",
                "the order's currency row no longer exists, so its decimal "
                "places are unknown",
            )
        rule = DisplayRule.of(self.snapshot, currency.decimal_place)

        # Lines first: variant text may add to the deal comment.
        lines = [self._line(line, rule, currency.code) for line in self.snapshot.lines]
        deal: Deal = {
            "title": self._title(),
            "source_id": self.site.source_id,
            "main_responsible_id": self.site.responsible_id,
            "currency": currency.code,
            "total": self._total(rule),
            "jobs_attributes": lines,
            "client_attributes": self._client(),
            "custom_fields": self._custom_fields(),
        }
        if self.comment:
            deal["comment"] = "\n".join(self.comment)

        return deal

    def _title(self) -> str:
        return f"№{self.snapshot.order_id} {self.site.title}".strip()

    def _total(self, rule: DisplayRule) -> Decimal:
        # The `total` row is what the customer saw; `order.total` equals it.
        for row in self.snapshot.totals:
            if row.code == "total":
                return rule.shown(exact(row.value, "order_total.total"))
        return rule.shown(exact(self.order.get("total"), "order.total"))

    def _line(self, line: Line, rule: DisplayRule, currency: str) -> dict[str, Any]:
        if line.quantity <= 0:
            raise self._error(
                "order_product.quantity",
                f"line {line.name!r} has quantity {line.quantity}",
            )
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

    def _client(self) -> dict[str, Any]:
        person = _full_name(self.order.get("firstname"), self.order.get("lastname"))
        client: dict[str, Any] = {"person": person or "Покупець"}

        typed_phone = (self.order.get("telephone") or "").strip()
        phone = _normalised_phone(typed_phone, self.deals.phone_region)
        if phone:
            client["phones"] = [phone]
        elif typed_phone:
            self.comment.append(f"Телефон (як введено): {typed_phone}")

        email = (self.order.get("email") or "").strip()
        if email:
            client["email"] = email

        recipient = _full_name(
            self.order.get("shipping_firstname"), self.order.get("shipping_lastname")
        )
        if recipient and recipient != person:
            self.comment.append(f"Отримувач: {recipient}")

        customer_comment = (self.order.get("comment") or "").strip()
        if customer_comment:
            self.comment.append(f"Коментар покупця: {customer_comment}")

        return client

    def _custom_fields(self) -> list[dict[str, str]]:
        fields = self.deals.custom_fields
        order = self.order
        city = _first(order.get("shipping_city"), order.get("payment_city"))
        address = _first(
            _joined(order.get("shipping_address_1"), order.get("shipping_address_2")),
            _joined(order.get("payment_address_1"), order.get("payment_address_2")),
        )
        wanted = [
            (
                fields.marker,
                order_stream(
                    self.site.name, self.snapshot.order_id, self.snapshot.kind
                ),
            ),
            (fields.shipping_method, order.get("shipping_method") or ""),
            (fields.payment_method, order.get("payment_method") or ""),
            (fields.city, city),
            (fields.address, address),
        ]

        return [
            {"name": name, "value": value.strip()}
            for name, value in wanted
            if name and value.strip()
        ]

    def _error(self, field: str, reason: str) -> DealMappingError:
        return DealMappingError(self.site.name, self.snapshot.order_id, field, reason)


def line_article(line: Line, article_fields: tuple[str, ...]) -> str | None:
    """The first non-empty product code of the chain, else the model.

    The model is the shop's own code and always filled; falling back to it
    keeps a line from reaching the CRM without an article, which would make
    the CRM create a new catalogue item for every order (C12). A product
    deleted since the order has no codes left: its order row keeps the model.
    """
    for field in article_fields:
        code = line.codes.get(field, "").strip()
        if code:
            return code
    return line.codes.get("model", "").strip() or line.model.strip() or None


def _normalised_phone(typed: str, region: str) -> str | None:
    """`+380671234567` from any common spelling, None when it is no phone number."""
    if not typed:
        return None
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _full_name(first: str | None, last: str | None) -> str:
    return " ".join(part.strip() for part in (first, last) if part and part.strip())


def _joined(*parts: str | None) -> str:
    return ", ".join(part.strip() for part in parts if part and part.strip())


def _first(*values: str | None) -> str:
    return next((value.strip() for value in values if value and value.strip()), "")

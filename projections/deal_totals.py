"""The deal's total, discount and service lines: the total the customer saw.

The deal total is the `total` row as shown, and the deal adds up to it with
nothing hidden: product lines carry the unit price shown (the CRM multiplies
by the quantity), every charge the customer paid (shipping, fees, tax shown
apart from the prices) is a line of its own or the shipping field, and the
deal discount is whatever the lines exceed the total by: the coupon, voucher,
reward points or store credit, and any rounding in the same direction (units
shown x quantity a hryvnia over the line shown, C4). So, in CRM terms:

    sum(price x amount) + shipping field - discount == total

The parts over the total are always the discount, never a negative line: the
CRM may refuse a negative price or turn it into a negative catalogue item, and
the comment says the discount is rounding when the order had no discount row.
A rounding gap the other way (the parts a kopeck short of the total) is never
a negative discount: it is a small positive line of its own or a note in the
comment, per `deals.rounding_gap`. Quick orders (C7) are the exception: their
modules store unreliable totals, so their total is the sum of their lines.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from daemon.settings import DealSettings
from events.snapshot import Currency, OrderSnapshot, TotalRow
from projections.money import DisplayRule, exact

# Articles of the service lines, stable so that the CRM links each to one
# catalogue item: "fee:<code>" for any other charge row (e.g. fee:handling).
SHIPPING_ARTICLE = "shipping"
TAX_ARTICLE = "tax"
ROUNDING_ARTICLE = "rounding"
FEE_ARTICLE_PREFIX = "fee:"
SERVICE_ARTICLES = frozenset({SHIPPING_ARTICLE, TAX_ARTICLE, ROUNDING_ARTICLE})

DISCOUNT_KIND = "absolute_discount"

# Rows that restate the order rather than charge for something.
_SUMMARY_CODES = frozenset({"sub_total", "total"})
# What a stored total title has in brackets: "Coupon (ZNYZHKA10)".
_BRACKETED = re.compile(r"\(([^()]*)\)")
# Thousands separator and decimal point of the storefront's languages.
_NUMBER_FORMATS = {"en-gb": (",", ".")}
_UKRAINIAN_NUMBERS = (" ", ",")


def is_service_article(article: str) -> bool:
    """True for the articles of lines this module adds (not catalogue products)."""
    return article in SERVICE_ARTICLES or article.startswith(FEE_ARTICLE_PREFIX)


@dataclass(frozen=True)
class ProductLine:
    """One product line as the deal sends it and as the storefront showed it."""

    title: str
    quantity: int
    unit_price: Decimal
    line_total_shown: Decimal

    @property
    def crm_total(self) -> Decimal:
        """What the CRM computes for the line: unit price shown x quantity."""
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class SettledTotals:
    """Everything of a deal that depends on the order's total rows."""

    # Service lines (shipping, tax, fees, rounding) in the jobs_attributes shape.
    extra_lines: list[dict[str, Any]]
    # The deal discount (absolute), None when there is none.
    discount: Decimal | None
    total: Decimal
    # The total rows as shown, then notes on kopecks and the discount.
    comment: list[str]
    # (CRM field name, value): the shipping cost when shipping goes to a field.
    custom_fields: list[tuple[str, str]]
    # The shipping amount in that field (0 when none), for the sum above.
    shipping_field: Decimal
    # total - (lines + shipping field - discount): 0 unless the gap is only
    # stated in the comment (`rounding_gap = "comment"`).
    unsettled_gap: Decimal
    # What rounding accounts for, signed as total - parts: the gap (on a line
    # or in the comment), or minus a discount that no discount row explains.
    # A caller refuses an order whose "rounding" is too large to be one.
    rounding: Decimal = Decimal(0)

    def deal_fields(self) -> dict[str, Any]:
        """`total`, and `discount` with its kind when there is one."""
        fields: dict[str, Any] = {"total": self.total}
        if self.discount is not None:
            fields["discount"] = self.discount
            fields["discount_kind"] = DISCOUNT_KIND
        return fields


def settle_totals(
    snapshot: OrderSnapshot,
    rule: DisplayRule,
    products: list[ProductLine],
    deals: DealSettings,
    *,
    quick: bool,
    currency_code: str,
) -> SettledTotals:
    """Service lines, discount, total and comment that make the deal add up.

    `quick` marks an `order` row the caller recognised as a quick order; a
    snapshot of a module's own table (`kind == "quick_order"`) is one anyway.
    Raises `MoneyError` for a malformed amount.
    """
    return _Settlement(
        snapshot, rule, products, deals, currency_code, quick=quick
    ).settle()


def shown_text(
    amount: Decimal, currency: Currency, places: int, language: str = "uk-ua"
) -> str:
    """An amount as the storefront printed it: "1 633 грн", "$-32,72", "18,00€".

    OpenCart puts the sign on the number, between a left symbol and the digits.
    """
    thousands, point = _NUMBER_FORMATS.get(language, _UKRAINIAN_NUMBERS)
    digits = f"{abs(amount):,.{places}f}"
    number = digits.replace(",", "\0").replace(".", point).replace("\0", thousands)
    sign = "-" if amount < 0 else ""
    return f"{currency.symbol_left}{sign}{number}{currency.symbol_right}"


class _Settlement:
    def __init__(
        self,
        snapshot: OrderSnapshot,
        rule: DisplayRule,
        products: list[ProductLine],
        deals: DealSettings,
        currency_code: str,
        *,
        quick: bool,
    ) -> None:
        self.snapshot = snapshot
        self.rule = rule
        self.products = products
        self.deals = deals
        self.currency_code = currency_code
        self.quick = quick or snapshot.kind == "quick_order"
        self.currency = snapshot.currency or Currency(
            currency_id=0,
            code=currency_code,
            symbol_left="",
            symbol_right=f" {currency_code}",
            decimal_place=rule.places,
            value="1",
        )
        self.lines: list[dict[str, Any]] = []
        self.comment: list[str] = []

    def settle(self) -> SettledTotals:
        rows = sorted(self.snapshot.totals, key=lambda row: row.sort_order)
        shown = [(row, self.rule.shown(_value(row))) for row in rows]

        # What the customer saw, then what the CRM will compute differently.
        if self.quick and shown:
            self.comment.append(
                "Швидке замовлення: підсумки модуля ненадійні, "
                "сума угоди порахована з позицій"
            )
        self.comment += [
            f"{self._title(row)}: {self._text(amount)}" for row, amount in shown
        ]
        self.comment += self._kopeck_notes()

        # Charges become lines (or the shipping field); discount rows are noted.
        shipping_field, discount_rows = self._charges(shown)
        parts = self._lines_total() + shipping_field

        if self.quick:
            total, discount, gap = parts, None, Decimal(0)
        else:
            total = self._total_shown(shown)
            discount, gap = _split(parts, total)
        coupons = -sum(discount_rows, Decimal(0))
        rounding = gap
        if discount is not None and coupons == 0:
            rounding = -discount
            # Nothing the customer saw as a discount: say it is only rounding.
            self.comment.append(
                f"{self.deals.rounding_title}: {self._text(-discount)} знижкою "
                f"в угоді (позиції угоди дають {self._text(parts)}, "
                f"до сплати {self._text(total)})"
            )
        elif discount is not None and discount != coupons:
            self.comment.append(
                f"Знижка в угоді: {self._text(discount)} = позиції "
                f"{self._text(parts)} - до сплати {self._text(total)}"
            )
        unsettled = self._place_gap(gap, parts - (discount or 0), total)

        fields = []
        field_name = self.deals.custom_fields.shipping_cost
        if shipping_field and field_name:
            fields.append((field_name, str(shipping_field)))

        return SettledTotals(
            extra_lines=self.lines,
            discount=discount,
            total=total,
            comment=self.comment,
            custom_fields=fields,
            shipping_field=shipping_field,
            unsettled_gap=unsettled,
            rounding=rounding,
        )

    def _charges(
        self, shown: list[tuple[TotalRow, Decimal]]
    ) -> tuple[Decimal, list[Decimal]]:
        """Add a line per charge row; return the shipping field and discount rows."""
        to_field = (
            self.deals.shipping == "field"
            and self.deals.custom_fields.shipping_cost is not None
        )
        shipping_field = Decimal(0)
        discount_rows: list[Decimal] = []
        for row, amount in shown:
            if row.code in _SUMMARY_CODES:
                continue
            if _value(row) < 0:
                discount_rows.append(amount)
            elif amount == 0:
                continue  # free shipping, a zero fee: nothing to charge
            elif row.code == "tax":
                # With prices shown with tax the lines already carry it; a
                # quick order's tax is worked out from its lines below.
                if not self.rule.prices_with_tax and not self.quick:
                    self._add(TAX_ARTICLE, self._title(row), amount)
            elif row.code == "shipping" and to_field:
                shipping_field += amount
            elif row.code == "shipping":
                self._add(SHIPPING_ARTICLE, self._title(row), amount)
            else:
                self._add(f"{FEE_ARTICLE_PREFIX}{row.code}", self._title(row), amount)
        if self.quick and not self.rule.prices_with_tax:
            self._add_quick_tax(shown)
        return shipping_field, discount_rows

    def _add_quick_tax(self, shown: list[tuple[TotalRow, Decimal]]) -> None:
        # The module's tax row was computed for what it stored (often one
        # unit); the tax per unit on each line is reliable.
        tax = sum(
            (
                exact(line.tax, "order_product.tax") * line.quantity
                for line in self.snapshot.lines
            ),
            Decimal(0),
        )
        amount = self.rule.shown(tax)
        if amount:
            titles = [self._title(row) for row, _ in shown if row.code == "tax"]
            self._add(TAX_ARTICLE, titles[0] if len(titles) == 1 else "Податок", amount)

    def _place_gap(self, gap: Decimal, settled: Decimal, total: Decimal) -> Decimal:
        """Put a rounding gap on a line or in the comment; the gap left unsettled."""
        if gap == 0:
            return gap
        if self.deals.rounding_gap == "line":
            self._add(ROUNDING_ARTICLE, self.deals.rounding_title, gap)
            return Decimal(0)
        # `_split` leaves only a positive gap: the parts short of the total.
        self.comment.append(
            f"{self.deals.rounding_title}: +{self._text(gap)} "
            f"(позиції угоди дають {self._text(settled)}, "
            f"до сплати {self._text(total)})"
        )
        return gap

    def _lines_total(self) -> Decimal:
        """What the CRM adds up: unit price shown x quantity, and service lines."""
        products = sum((p.crm_total for p in self.products), Decimal(0))
        service = sum(
            (job["product_attributes"]["price"] * job["amount"] for job in self.lines),
            Decimal(0),
        )
        return products + service

    def _kopeck_notes(self) -> list[str]:
        return [
            f"{p.title}: {self._text(p.unit_price)} × {p.quantity} = "
            f"{self._text(p.crm_total)}, на сайті сума рядка "
            f"{self._text(p.line_total_shown)}"
            for p in self.products
            if p.crm_total != p.line_total_shown
        ]

    def _total_shown(self, shown: list[tuple[TotalRow, Decimal]]) -> Decimal:
        # The `total` row is what the customer saw; `order.total` equals it.
        for row, amount in shown:
            if row.code == "total":
                return amount
        return self.rule.shown(exact(self.snapshot.order.get("total"), "order.total"))

    def _title(self, row: TotalRow) -> str:
        """The row's title as managers read it, in `deals.language`."""
        if row.code == "shipping":
            code = _shipping_code(self.snapshot.order)
            return self.deals.methods.get(code, row.title) if code else row.title
        template = self.deals.total_titles.get(row.code)
        if template is None:
            return row.title
        detail = _BRACKETED.search(row.title)
        return template.replace("{detail}", detail.group(1) if detail else "")

    def _add(self, article: str, title: str, price: Decimal) -> None:
        self.lines.append(
            {
                "amount": 1,
                "title": title,
                "product_attributes": {
                    "sku": article,
                    "title": title,
                    "price": price,
                    "currency": self.currency_code,
                },
            }
        )

    def _text(self, amount: Decimal) -> str:
        return shown_text(
            amount, self.currency, self.currency.decimal_place, self.deals.language
        )


def _split(parts: Decimal, total: Decimal) -> tuple[Decimal | None, Decimal]:
    """(discount, rounding gap) so that parts - discount + gap == total.

    Parts over the total are a positive discount, with or without a discount
    row, so no line is ever priced below zero; parts short of it are a
    positive gap, never a negative discount.
    """
    excess = parts - total
    if excess > 0:
        return excess, Decimal(0)
    return None, -excess


def _value(row: TotalRow) -> Decimal:
    return exact(row.value, f"order_total.{row.code}")


def _shipping_code(order: dict[str, str | None]) -> str:
    """`shipping_code` (3.0), or the code inside 4.x's JSON `shipping_method`."""
    code = (order.get("shipping_code") or "").strip()
    if code:
        return code
    method = (order.get("shipping_method") or "").strip()
    if method.startswith("{"):
        try:
            parsed = json.loads(method)
        except ValueError:
            return ""
        found = parsed.get("code") if isinstance(parsed, dict) else None
        if isinstance(found, str):
            return found.strip()
    return ""

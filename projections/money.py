"""Amounts as the customer saw them on the storefront.

OpenCart stores every amount in the shop's base currency, without tax, and shows
it as `round(amount * order.currency_value, currency.decimal_place)`, rounding
half away from zero like PHP's `round`. With `config_tax` on, a unit price is
shown with its tax. The order's own `currency_value` is the rate at order time;
the currency row's `value` is today's rate and is never used for an old order.

A site that displays custom-rounded prices (`price_step`, e.g. "1" for whole
hryvnia) rounds every converted amount half away from zero to a multiple of
its step instead.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from events.snapshot import Line, OrderSnapshot


class MoneyError(ValueError):
    """An amount that is not a decimal number; `field` names the column."""

    def __init__(self, field: str, value: object) -> None:
        super().__init__(f"{value!r} is not a decimal amount")
        self.field = field


def exact(value: str | None, field: str) -> Decimal:
    """A MySQL DECIMAL string as an exact Decimal; never through a float."""
    try:
        amount = Decimal(value) if value is not None else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise MoneyError(field, value)
    return amount


def round_half_away(amount: Decimal, places: int) -> Decimal:
    """PHP's `round`: halves go away from zero (ROUND_HALF_UP in Decimal terms)."""
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def round_to_step(amount: Decimal, step: Decimal, places: int) -> Decimal:
    """The nearest multiple of `step`, halves away from zero.

    The result keeps at least `places` decimals (a step of 1 in a currency
    of 2 places gives 4537.00), more when the step itself is finer.
    """
    steps = (amount / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    step_places = max(0, -int(step.as_tuple().exponent))
    return round_half_away(steps * step, max(places, step_places))


class DisplayRule:
    """How one order's amounts were shown: rate, decimal places, tax mode, step.

    `step` None is OpenCart's own rule; a step rounds every amount shown (unit
    prices, line totals, total rows) to a multiple of it after conversion.
    """

    def __init__(
        self,
        rate: Decimal,
        places: int,
        prices_with_tax: bool,
        step: Decimal | None = None,
    ) -> None:
        self.rate = rate
        self.places = places
        self.prices_with_tax = prices_with_tax
        self.step = step

    def step_size(self) -> Decimal:
        """The smallest difference between two amounts shown."""
        return self.step if self.step is not None else Decimal(1).scaleb(-self.places)

    @classmethod
    def of(
        cls, snapshot: OrderSnapshot, places: int, price_step: str | None = None
    ) -> DisplayRule:
        """The rule of one order; `price_step` is the site's `price_step` setting."""
        rate = exact(snapshot.order.get("currency_value"), "currency_value")
        prices_with_tax = snapshot.shop.get("config_tax", "0").strip() == "1"
        step = None
        if price_step is not None:
            step = exact(price_step, "price_step")
            if step <= 0:
                raise MoneyError("price_step", price_step)
        return cls(rate, places, prices_with_tax, step)

    def shown(self, amount: Decimal) -> Decimal:
        """An amount in the base currency as the storefront displayed it."""
        if self.step is not None:
            return round_to_step(amount * self.rate, self.step, self.places)
        return round_half_away(amount * self.rate, self.places)

    def unit_price(self, line: Line) -> Decimal:
        """The unit price shown beside the product, with tax when the shop adds it."""
        unit = exact(line.price, "order_product.price")
        if self.prices_with_tax:
            unit += exact(line.tax, "order_product.tax")
        return self.shown(unit)

    def line_total(self, line: Line) -> Decimal:
        """The line total shown, worked out from the unrounded unit price."""
        unit = exact(line.price, "order_product.price")
        if self.prices_with_tax:
            unit += exact(line.tax, "order_product.tax")
        return self.shown(unit * line.quantity)

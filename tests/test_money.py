"""The storefront's price display rule (cases C4, C5, C6)."""

from decimal import Decimal

import pytest

from projections.money import DisplayRule, MoneyError, exact, round_half_away
from tests.factories import currency, line, snapshot


def test_halves_round_away_from_zero() -> None:
    """PHP's round: 0.5 goes up, -0.5 goes down, never to even."""
    assert round_half_away(Decimal("142.5"), 0) == Decimal("143")
    assert round_half_away(Decimal("-142.5"), 0) == Decimal("-143")
    assert round_half_away(Decimal("0.125"), 2) == Decimal("0.13")


def test_c4_unit_and_line_shown_in_uah_without_decimals() -> None:
    """C4: 10 x 5.00 EUR at 28.55 with 0 places shows 143 a unit, 1428 a line."""
    order = snapshot(rate="28.55000000", config_tax="0")
    rule = DisplayRule.of(order, places=0)
    ten = line(quantity=10, price="5.0000")

    assert rule.unit_price(ten) == Decimal("143")
    assert rule.line_total(ten) == Decimal("1428")


def test_c5_the_orders_own_rate_not_todays() -> None:
    """C5: amounts convert at the order's currency_value, not currency.value."""
    today = currency(value="46.10000000", places=2)
    order = snapshot(rate="44.90000000", currency_row=today, config_tax="0")
    rule = DisplayRule.of(order, places=today.decimal_place)

    assert rule.unit_price(line(price="10.0000")) == Decimal("449.00")


@pytest.mark.parametrize(
    ("config_tax", "unit", "line_total"),
    [("1", "60.03", "120.05"), ("0", "49.00", "98.00")],
)
def test_c6_tax_shown_per_config_tax(
    config_tax: str, unit: str, line_total: str
) -> None:
    """C6: GBP at 0.61250001, price 80 + tax 18, quantity 2, with and without tax."""
    order = snapshot(rate="0.61250001", config_tax=config_tax)
    rule = DisplayRule.of(order, places=2)
    two = line(quantity=2, price="80.0000", tax="18.0000")

    assert rule.unit_price(two) == Decimal(unit)
    assert rule.line_total(two) == Decimal(line_total)


def test_a_non_decimal_amount_names_its_field() -> None:
    """A malformed amount is an error naming the column, never a float guess."""
    with pytest.raises(MoneyError) as caught:
        exact("12,50", "order_product.price")

    assert caught.value.field == "order_product.price"


@pytest.mark.parametrize(
    ("step", "unit", "line_total"),
    [("1", "143", "1428"), ("0.50", "143.00", "1427.50"), ("10", "140", "1430")],
)
def test_price_step_rounds_every_amount_shown(
    step: str, unit: str, line_total: str
) -> None:
    """C4 with a step: 142.75 a unit and 1427.50 a line, each rounded to the step."""
    order = snapshot(rate="28.55000000", config_tax="0")
    rule = DisplayRule.of(order, places=0, price_step=step)
    ten = line(quantity=10, price="5.0000")

    assert rule.unit_price(ten) == Decimal(unit)
    assert rule.line_total(ten) == Decimal(line_total)


def test_price_step_halves_go_away_from_zero() -> None:
    """A step rounds halves away from zero, negative amounts too (coupons)."""
    rule = DisplayRule.of(snapshot(rate="1.00000000"), places=2, price_step="0.50")

    assert rule.shown(Decimal("100.25")) == Decimal("100.50")
    assert rule.shown(Decimal("-100.25")) == Decimal("-100.50")
    assert rule.shown(Decimal("100.24")) == Decimal("100.00")


def test_price_step_keeps_the_currency_places() -> None:
    """A whole-hryvnia step in a 2-place currency still reads 4537.00."""
    rule = DisplayRule.of(snapshot(), places=2, price_step="1")

    assert str(rule.shown(Decimal("100.0000"))) == "4537.00"


def test_a_malformed_price_step_is_a_money_error() -> None:
    """A step that is no positive decimal names `price_step`."""
    for step in ("1,5", "0", "-1"):
        with pytest.raises(MoneyError) as caught:
            DisplayRule.of(snapshot(), places=2, price_step=step)
        assert caught.value.field == "price_step"

"""The deal total is the total shown, and the deal adds up to it (C4, C7, C11).

Stored amounts are those of the fixture orders (site_a.sql, site_b.sql); the
expected amounts are the ones the storefront showed (ORDERS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from daemon.settings import DealFieldSettings, DealSettings
from events.snapshot import Currency, Line, OrderSnapshot, TotalRow
from projections.deal_totals import (
    ProductLine,
    SettledTotals,
    is_service_article,
    settle_totals,
    shown_text,
)
from projections.money import DisplayRule, MoneyError
from tests.factories import (
    currency,
    deal_settings,
    line,
    money_currency,
    order_with_totals,
    total_row,
)

EUR = money_currency("EUR", right="€")
UAH_KOPECKS = currency(places=2)
SHIPPING = "Доставка Новою Поштою"


def tshirt(quantity: int, price: str = "15.0000", tax: str = "3.0000") -> Line:
    return line(quantity=quantity, price=price, tax=tax)


def case(quantity: int = 1) -> Line:
    return line(
        product_id=51,
        name="Чохол для смартфона",
        model="CASE-01",
        quantity=quantity,
        price="9.9900",
        order_product_id=2,
    )


def totals(*rows: tuple[str, str, str]) -> list[TotalRow]:
    """Rows (code, title, value) in the fixtures' sort orders."""
    sort = {"sub_total": 1, "shipping": 3, "coupon": 4, "tax": 5, "total": 9}
    return [
        total_row(code, title, value, sort.get(code, 6)) for code, title, value in rows
    ]


def settle(
    order: OrderSnapshot,
    deals: DealSettings | None = None,
    *,
    quick: bool = False,
    price_step: str | None = None,
) -> SettledTotals:
    places = order.currency.decimal_place if order.currency else 0
    rule = DisplayRule.of(order, places, price_step)
    products = [
        ProductLine(
            title=item.name,
            quantity=item.quantity,
            unit_price=rule.unit_price(item),
            line_total_shown=rule.line_total(item),
        )
        for item in order.lines
    ]
    return settle_totals(
        order,
        rule,
        products,
        deals or deal_settings(),
        quick=quick,
        currency_code=order.currency.code if order.currency else "UAH",
    )


def extras(settled: SettledTotals) -> list[tuple[str, str, Decimal]]:
    return [
        (
            job["product_attributes"]["sku"],
            job["title"],
            job["product_attributes"]["price"],
        )
        for job in settled.extra_lines
    ]


def crm_sum(
    order: OrderSnapshot, settled: SettledTotals, price_step: str | None
) -> Decimal:
    """What the CRM adds up: unit shown x quantity of every line, service lines."""
    places = order.currency.decimal_place if order.currency else 0
    rule = DisplayRule.of(order, places, price_step)
    products = sum((rule.unit_price(i) * i.quantity for i in order.lines), Decimal(0))
    service = sum(
        (
            job["product_attributes"]["price"] * job["amount"]
            for job in settled.extra_lines
        ),
        Decimal(0),
    )
    return products + service


# The fixture orders, as stored.


def site_a_1() -> OrderSnapshot:
    return order_with_totals(
        lines=[tshirt(2), case()],
        totals=totals(
            ("sub_total", "Сума", "39.9900"),
            ("shipping", SHIPPING, "2.5000"),
            ("tax", "ПДВ 20%", "6.0000"),
            ("total", "Всього до сплати", "48.4900"),
        ),
    )


def site_a_3() -> OrderSnapshot:
    camera = line(
        product_id=30,
        name="Фотоапарат Canon EOS 5D",
        model="CAN-5D",
        price="80.0000",
        tax="16.0000",
    )
    return order_with_totals(
        lines=[camera],
        totals=totals(
            ("sub_total", "Сума", "80.0000"),
            ("shipping", SHIPPING, "2.5000"),
            ("coupon", "Купон (ZNYZHKA10)", "-8.0000"),
            ("tax", "ПДВ 20%", "14.4000"),
            ("total", "Всього до сплати", "88.9000"),
        ),
    )


def site_a_6() -> OrderSnapshot:
    product8 = line(
        product_id=35, name="Товар 8", model="PRD-08", quantity=3, price="115.0000"
    )
    monitor = line(
        product_id=47,
        name="Монітор HP LP3065",
        model="HP-LP3065",
        price="100.0000",
        tax="20.0000",
        order_product_id=2,
    )
    return order_with_totals(
        lines=[product8, monitor],
        totals=totals(
            ("sub_total", "Сума", "445.0000"),
            ("shipping", "Безкоштовна доставка", "0.0000"),
            ("tax", "ПДВ 20%", "20.0000"),
            ("total", "Всього до сплати", "465.0000"),
        ),
        shipping_code="free.free",
    )


def site_a_7() -> OrderSnapshot:
    classic = line(
        product_id=48,
        name="Плеєр iPod Classic",
        model="IPC-01",
        quantity=2,
        price="100.0000",
    )
    return order_with_totals(
        lines=[classic, tshirt(1, price="18.0000", tax="3.6000")],
        totals=totals(
            ("sub_total", "Сума", "218.0000"),
            ("shipping", "Безкоштовна доставка", "0.0000"),
            ("tax", "ПДВ 20%", "3.6000"),
            ("total", "Всього до сплати", "221.6000"),
        ),
        shipping_code="free.free",
    )


def site_a_9() -> OrderSnapshot:
    return order_with_totals(
        lines=[tshirt(5)],
        totals=totals(
            ("sub_total", "Сума", "75.0000"),
            ("shipping", SHIPPING, "2.5000"),
            ("coupon", "Купон (MINUS5)", "-5.0000"),
            ("tax", "ПДВ 20%", "14.0000"),
            ("total", "Всього до сплати", "86.5000"),
        ),
        rate="1.00000000",
        currency_row=EUR,
    )


def site_b_1() -> OrderSnapshot:
    return order_with_totals(
        lines=[tshirt(2, price="17.0000", tax="3.4000"), case()],
        totals=totals(
            ("sub_total", "Сума", "43.9900"),
            ("shipping", SHIPPING, "2.5000"),
            ("tax", "ПДВ 20%", "6.8000"),
            ("total", "Всього до сплати", "53.2900"),
        ),
        currency_row=UAH_KOPECKS,
        config_tax="0",
    )


def site_b_3() -> OrderSnapshot:
    camera = line(
        product_id=30,
        name="Фотоапарат Canon EOS 5D",
        model="CAN-5D",
        quantity=2,
        price="80.0000",
        tax="16.0000",
    )
    return order_with_totals(
        lines=[camera],
        totals=totals(
            ("sub_total", "Сума", "160.0000"),
            ("shipping", SHIPPING, "2.5000"),
            ("coupon", "Купон (ZNYZHKA10)", "-16.0000"),
            ("tax", "ПДВ 20%", "28.8000"),
            ("total", "Всього до сплати", "175.3000"),
        ),
        currency_row=UAH_KOPECKS,
        config_tax="0",
    )


def site_b_6() -> OrderSnapshot:
    nano = line(product_id=36, name="Плеєр iPod Nano", model="IPN-01", price="100.0000")
    return order_with_totals(
        lines=[nano, case(3)],
        totals=totals(
            ("sub_total", "Сума", "129.9700"),
            ("shipping", SHIPPING, "2.5000"),
            ("coupon", "Купон (MINUS5)", "-5.0000"),
            ("total", "Всього до сплати", "127.4700"),
        ),
        currency_row=UAH_KOPECKS,
        config_tax="0",
    )


def c11(coupon: str | None = None) -> OrderSnapshot:
    """C11: flat shipping 5.0000 on an order in EUR (with an optional coupon)."""
    rows = [("sub_total", "Сума", "20.0000"), ("shipping", SHIPPING, "5.0000")]
    total = Decimal("25.0000")
    if coupon is not None:
        rows.append(("coupon", "Купон (MINUS2)", coupon))
        total += Decimal(coupon)
    rows.append(("total", "Всього до сплати", str(total)))
    return order_with_totals(
        lines=[tshirt(1, price="20.0000", tax="0.0000")],
        totals=totals(*rows),
        rate="1.00000000",
        currency_row=EUR,
        config_tax="0",
    )


def c4() -> OrderSnapshot:
    """C4: base EUR, 10 x 5.0000 in UAH at 28.55 with 0 places."""
    return order_with_totals(
        lines=[tshirt(10, price="5.0000", tax="0.0000")],
        totals=totals(
            ("sub_total", "Сума", "50.0000"),
            ("total", "Всього до сплати", "50.0000"),
        ),
        rate="28.55000000",
        config_tax="0",
        shipping_code="",
    )


def short_by_a_hryvnia() -> OrderSnapshot:
    """3 x 4.99 EUR in UAH: units 226 x 3 = 678, total shown 679."""
    return order_with_totals(
        lines=[tshirt(3, price="4.9900", tax="0.0000")],
        totals=totals(
            ("sub_total", "Сума", "14.9700"),
            ("total", "Всього до сплати", "14.9700"),
        ),
        config_tax="0",
    )


def quick_c7(config_tax: str = "1") -> OrderSnapshot:
    """C7: quantity 3, the module stored one unit as the order's total."""
    return order_with_totals(
        lines=[tshirt(3)],
        totals=totals(
            ("sub_total", "Сума", "15.0000"),
            ("tax", "ПДВ 20%", "3.0000"),
            ("total", "Всього до сплати", "18.0000"),
        ),
        config_tax=config_tax,
        shipping_code="",
    )


def field_settings(**overrides: Any) -> DealSettings:
    fields = DealFieldSettings(marker="field_1", shipping_cost="field_9")
    return deal_settings(custom_fields=fields, **overrides)


# The fixture orders.


def test_site_a_1_shipping_line_and_the_kopeck_note() -> None:
    """site_a #1: 817 x 2 + 453 + shipping 113 = 2 200; the T-shirt's kopeck noted."""
    settled = settle(site_a_1())

    assert extras(settled) == [("shipping", SHIPPING, Decimal("113"))]
    assert settled.total == Decimal("2200")
    assert settled.discount is None
    assert settled.comment == [
        "Сума: 1 814 грн",
        "Доставка Новою Поштою: 113 грн",
        "ПДВ 20%: 272 грн",
        "Всього до сплати: 2 200 грн",
        "Футболка з логотипом: 817 грн × 2 = 1 634 грн, на сайті сума рядка 1 633 грн",
    ]


def test_shipping_title_comes_from_the_methods_map() -> None:
    """The shipping line and its comment row use the method's Ukrainian name."""
    deals = deal_settings(methods={"flat.flat": "Нова Пошта, відділення"})

    settled = settle(site_a_1(), deals)

    assert extras(settled)[0][1] == "Нова Пошта, відділення"
    assert "Нова Пошта, відділення: 113 грн" in settled.comment


def test_site_a_3_discount_is_the_coupon_with_its_tax() -> None:
    """site_a #3: 4 356 + 113 - 4 033 = 436, the coupon -363 with its share of VAT."""
    settled = settle(site_a_3())

    assert settled.discount == Decimal("436")
    assert settled.total == Decimal("4033")
    assert settled.deal_fields() == {
        "total": Decimal("4033"),
        "discount": Decimal("436"),
        "discount_kind": "absolute_discount",
    }
    assert "Купон (ZNYZHKA10): -363 грн" in settled.comment
    assert "Знижка в угоді: 436 грн = позиції 4 469 грн - до сплати 4 033 грн" in (
        settled.comment
    )


def test_site_a_9_fixed_coupon_in_euro() -> None:
    """site_a #9: 18,00 x 5 + 2,50 - 86,50 = 6,00 discount."""
    settled = settle(site_a_9())

    assert extras(settled) == [("shipping", SHIPPING, Decimal("2.50"))]
    assert settled.discount == Decimal("6.00")
    assert settled.total == Decimal("86.50")
    assert settled.comment[:5] == [
        "Сума: 75,00€",
        "Доставка Новою Поштою: 2,50€",
        "Купон (MINUS5): -5,00€",
        "ПДВ 20%: 14,00€",
        "Всього до сплати: 86,50€",
    ]


def test_an_order_placed_in_english_lists_its_totals_in_ukrainian() -> None:
    """total_titles: "Sub-Total", "Coupon (MINUS5)", "Total" read in Ukrainian."""
    english = order_with_totals(
        lines=[tshirt(5)],
        totals=totals(
            ("sub_total", "Sub-Total", "75.0000"),
            ("shipping", SHIPPING, "2.5000"),
            ("coupon", "Coupon (MINUS5)", "-5.0000"),
            ("tax", "ПДВ 20%", "14.0000"),
            ("total", "Total", "86.5000"),
        ),
        rate="1.00000000",
        currency_row=EUR,
    )
    titles = {"sub_total": "Сума", "total": "Всього до сплати"}
    titles["coupon"] = "Купон ({detail})"

    settled = settle(english, deal_settings(total_titles=titles))
    as_stored = settle(english)

    assert settled.comment[:5] == [
        "Сума: 75,00€",
        "Доставка Новою Поштою: 2,50€",
        "Купон (MINUS5): -5,00€",
        "ПДВ 20%: 14,00€",
        "Всього до сплати: 86,50€",
    ]
    assert as_stored.comment[2] == "Coupon (MINUS5): -5,00€"


def test_site_b_1_tax_shown_apart_is_a_line() -> None:
    """site_b #1 (config_tax 0): ПДВ 308,52 is a line; a kopeck over: discount 0,01."""
    settled = settle(site_b_1())

    assert extras(settled) == [
        ("shipping", SHIPPING, Decimal("113.43")),
        ("tax", "ПДВ 20%", Decimal("308.52")),
    ]
    assert settled.discount == Decimal("0.01")
    assert settled.total == Decimal("2417.77")
    assert settled.comment[-1] == (
        "Округлення: -0,01 грн знижкою в угоді "
        "(позиції угоди дають 2 417,78 грн, до сплати 2 417,77 грн)"
    )


def test_site_b_3_coupon_without_tax_in_prices() -> None:
    """site_b #3: 7 259,20 + 113,43 + 1 306,66 - 7 953,36 = 725,93 discount."""
    settled = settle(site_b_3())

    assert [sku for sku, _, _ in extras(settled)] == ["shipping", "tax"]
    assert settled.discount == Decimal("725.93")
    assert settled.total == Decimal("7953.36")
    assert "Купон (ZNYZHKA10): -725,92 грн" in settled.comment


def test_site_b_6_line_total_a_kopeck_off() -> None:
    """site_b #6: 453,25 x 3 = 1 359,75 against 1 359,74 shown, named in the comment."""
    settled = settle(site_b_6())

    assert settled.discount == Decimal("226.87")
    assert settled.total == Decimal("5783.31")
    assert (
        "Чохол для смартфона: 453,25 грн × 3 = 1 359,75 грн, "
        "на сайті сума рядка 1 359,74 грн"
    ) in settled.comment


def test_site_a_7_free_shipping_adds_no_line() -> None:
    """site_a #7: free shipping shows 0 грн in the comment and adds no line."""
    settled = settle(site_a_7())

    assert settled.extra_lines == []
    assert settled.total == Decimal("10054")
    assert "Безкоштовна доставка: 0 грн" in settled.comment


# Shipping as a field (C11).


def test_c11_flat_shipping_as_a_line() -> None:
    """C11: 5.0000 EUR shipping is a line of 5,00 by default."""
    settled = settle(c11())

    assert extras(settled) == [("shipping", SHIPPING, Decimal("5.00"))]
    assert settled.custom_fields == []
    assert settled.total == Decimal("25.00")


def test_c11_flat_shipping_as_a_field() -> None:
    """C11: with shipping = "field" the amount shown goes to the shipping field."""
    settled = settle(c11(), field_settings(shipping="field"))

    assert settled.extra_lines == []
    assert settled.custom_fields == [("field_9", "5.00")]
    assert settled.shipping_field == Decimal("5.00")
    assert settled.total == Decimal("25.00")
    assert settled.discount is None


def test_c11_field_shipping_with_a_coupon() -> None:
    """Lines 20 + shipping field 5 - discount 2 = total 23."""
    settled = settle(c11("-2.0000"), field_settings(shipping="field"))

    assert settled.discount == Decimal("2.00")
    assert settled.total == Decimal("23.00")


def test_field_shipping_without_a_field_name_stays_a_line() -> None:
    """No shipping_cost field configured: the shipping is a line, not dropped."""
    settled = settle(c11(), deal_settings(shipping="field"))

    assert extras(settled) == [("shipping", SHIPPING, Decimal("5.00"))]
    assert settled.custom_fields == []


# Rounding gaps.


def test_gap_short_of_the_total_as_a_line() -> None:
    """Units 226 x 3 = 678 against 679 shown: a +1 rounding line."""
    settled = settle(short_by_a_hryvnia())

    assert extras(settled) == [("rounding", "Округлення", Decimal("1"))]
    assert settled.total == Decimal("679")
    assert settled.discount is None


def test_gap_short_of_the_total_in_the_comment() -> None:
    """With rounding_gap = "comment" the gap is stated, the total stays as shown."""
    deals = deal_settings(rounding_gap="comment", rounding_title="Різниця")

    settled = settle(short_by_a_hryvnia(), deals)

    assert settled.extra_lines == []
    assert settled.total == Decimal("679")
    assert settled.unsettled_gap == Decimal("1")
    assert settled.comment[-1] == (
        "Різниця: +1 грн (позиції угоди дають 678 грн, до сплати 679 грн)"
    )


@pytest.mark.parametrize("rounding_gap", ["line", "comment"])
def test_parts_over_the_total_without_discount_rows_is_a_discount(
    rounding_gap: str,
) -> None:
    """site_a #6: 5 218 x 3 + 5 444 = 21 098 over 21 097, no coupon: discount 1."""
    settled = settle(site_a_6(), deal_settings(rounding_gap=rounding_gap))

    assert settled.extra_lines == []
    assert settled.discount == Decimal("1")
    assert settled.total == Decimal("21097")
    assert settled.unsettled_gap == 0
    assert "Товар 8: 5 218 грн × 3 = 15 654 грн, на сайті сума рядка 15 653 грн" in (
        settled.comment
    )
    assert settled.comment[-1] == (
        "Округлення: -1 грн знижкою в угоді "
        "(позиції угоди дають 21 098 грн, до сплати 21 097 грн)"
    )


def test_c4_units_over_the_line_shown_are_a_discount() -> None:
    """C4: 143 x 10 = 1 430 against 1 428 shown: total 1 428, discount 2, no line."""
    settled = settle(c4())

    assert settled.total == Decimal("1428")
    assert settled.discount == Decimal("2")
    assert settled.extra_lines == []
    assert "Округлення: -2 грн знижкою в угоді" in settled.comment[-1]


def test_discount_rows_never_give_a_negative_discount() -> None:
    """A coupon shown as 0 with the parts short: no discount, a +1 rounding line."""
    order = order_with_totals(
        lines=[tshirt(3, price="4.9900", tax="0.0000")],
        totals=totals(
            ("sub_total", "Сума", "14.9700"),
            ("coupon", "Купон (TINY)", "-0.0010"),
            ("total", "Всього до сплати", "14.9690"),
        ),
        config_tax="0",
    )

    settled = settle(order)

    assert settled.discount is None
    assert extras(settled) == [("rounding", "Округлення", Decimal("1"))]


# Other rows.


def test_fees_become_lines_and_negative_rows_discounts() -> None:
    """handling, low_order_fee, an unknown charge: lines; voucher, credit: discount."""
    order = order_with_totals(
        lines=[tshirt(1, price="20.0000", tax="0.0000")],
        totals=[
            total_row("sub_total", "Сума", "20.0000", 1),
            total_row("handling", "Обробка", "1.0000", 2),
            total_row("low_order_fee", "Мала сума", "2.0000", 3),
            total_row("cod_fee", "Комісія за накладений платіж", "0.5000", 4),
            total_row("voucher", "Сертифікат", "-3.0000", 5),
            total_row("credit", "Кредит магазину", "-1.0000", 6),
            total_row("total", "Всього до сплати", "19.5000", 9),
        ],
        rate="1.00000000",
        currency_row=EUR,
        config_tax="0",
    )

    settled = settle(order)

    assert extras(settled) == [
        ("fee:handling", "Обробка", Decimal("1.00")),
        ("fee:low_order_fee", "Мала сума", Decimal("2.00")),
        ("fee:cod_fee", "Комісія за накладений платіж", Decimal("0.50")),
    ]
    assert settled.discount == Decimal("4.00")
    assert all(is_service_article(sku) for sku, _, _ in extras(settled))
    assert not is_service_article("TS-01")


def test_comment_rows_follow_the_sort_order() -> None:
    """Rows stored out of order are listed by sort_order."""
    order = order_with_totals(
        lines=[tshirt(1, price="20.0000", tax="0.0000")],
        totals=[
            total_row("total", "Всього до сплати", "25.0000", 9),
            total_row("shipping", SHIPPING, "5.0000", 3),
            total_row("sub_total", "Сума", "20.0000", 1),
        ],
        rate="1.00000000",
        currency_row=EUR,
        config_tax="0",
    )

    assert settle(order).comment == [
        "Сума: 20,00€",
        "Доставка Новою Поштою: 5,00€",
        "Всього до сплати: 25,00€",
    ]


def test_a_malformed_total_row_names_its_field() -> None:
    """A total row that is no decimal raises MoneyError naming the row."""
    order = order_with_totals(
        lines=[tshirt(1)],
        totals=totals(("coupon", "Купон", "-8,00"), ("total", "Всього", "10.0000")),
    )

    with pytest.raises(MoneyError) as caught:
        settle(order)

    assert caught.value.field == "order_total.coupon"


# Quick orders (C7).


@pytest.mark.parametrize("as_kind", [False, True])
def test_c7_quick_order_total_from_its_lines(as_kind: bool) -> None:
    """C7: 817 x 3 = 2 451, not the one unit the module stored; no discount."""
    order = quick_c7()
    if as_kind:
        order = order_with_totals(
            lines=order.lines, totals=order.totals, shipping_code="", kind="quick_order"
        )

    settled = settle(order, quick=not as_kind)

    assert settled.total == Decimal("2451")
    assert settled.discount is None
    assert settled.extra_lines == []
    assert settled.comment[0].startswith("Швидке замовлення")


def test_c7_quick_order_tax_shown_apart_comes_from_its_lines() -> None:
    """config_tax 0: the tax line is 3 units' tax (408), not the module's row."""
    settled = settle(quick_c7(config_tax="0"), quick=True)

    assert extras(settled) == [("tax", "ПДВ 20%", Decimal("408"))]
    assert settled.total == Decimal("681") * 3 + Decimal("408")


# Custom price steps.


def test_price_step_of_one_hryvnia() -> None:
    """price_step "1": site_b #1 shows 771,00 / 453,00 / 113,00 / 309,00 / 2 418,00."""
    settled = settle(site_b_1(), price_step="1")

    assert extras(settled) == [
        ("shipping", SHIPPING, Decimal("113.00")),
        ("tax", "ПДВ 20%", Decimal("309.00")),
        ("rounding", "Округлення", Decimal("1.00")),
    ]
    assert settled.total == Decimal("2418.00")
    assert "Всього до сплати: 2 418,00 грн" in settled.comment


def test_price_step_of_fifty_kopecks() -> None:
    """price_step "0.50": 771,50 x 2 + 453,00 + 113,50 + 308,50 = 2 418,00 exactly."""
    settled = settle(site_b_1(), price_step="0.50")

    assert extras(settled) == [
        ("shipping", SHIPPING, Decimal("113.50")),
        ("tax", "ПДВ 20%", Decimal("308.50")),
    ]
    assert settled.total == Decimal("2418.00")
    assert (
        "Футболка з логотипом: 771,50 грн × 2 = 1 543,00 грн, "
        "на сайті сума рядка 1 542,50 грн" in settled.comment
    )


# Formatting.


@pytest.mark.parametrize(
    ("amount", "row", "places", "language", "text"),
    [
        ("1633", currency(), 0, "uk-ua", "1 633 грн"),
        ("-363", currency(), 0, "uk-ua", "-363 грн"),
        ("-32.72", money_currency("USD", left="$"), 2, "uk-ua", "$-32,72"),
        ("18.00", EUR, 2, "uk-ua", "18,00€"),
        ("2417.77", UAH_KOPECKS, 2, "uk-ua", "2 417,77 грн"),
        ("1234567.5", EUR, 2, "uk-ua", "1 234 567,50€"),
        ("10094.83", UAH_KOPECKS, 2, "en-gb", "10,094.83 грн"),
        ("540", money_currency("USD", left="$"), 2, "en-gb", "$540.00"),
    ],
)
def test_shown_text_like_the_storefront(
    amount: str, row: Currency, places: int, language: str, text: str
) -> None:
    """Symbols, sign after a left symbol, thousands and decimal point by language."""
    assert shown_text(Decimal(amount), row, places, language) == text


# The invariant.

CASES: dict[str, tuple[Callable[[], OrderSnapshot], dict[str, Any]]] = {
    "site_a_1": (site_a_1, {}),
    "site_a_3": (site_a_3, {}),
    "site_a_6": (site_a_6, {}),
    "site_a_6_comment": (site_a_6, {"deals": deal_settings(rounding_gap="comment")}),
    "site_a_7": (site_a_7, {}),
    "site_a_9": (site_a_9, {}),
    "site_a_9_field": (site_a_9, {"deals": field_settings(shipping="field")}),
    "site_b_1": (site_b_1, {}),
    "site_b_1_comment": (site_b_1, {"deals": deal_settings(rounding_gap="comment")}),
    "site_b_3": (site_b_3, {}),
    "site_b_3_field": (site_b_3, {"deals": field_settings(shipping="field")}),
    "site_b_6": (site_b_6, {}),
    "c4": (c4, {}),
    "c11": (c11, {}),
    "c11_field": (c11, {"deals": field_settings(shipping="field")}),
    "short": (short_by_a_hryvnia, {}),
    "short_comment": (
        short_by_a_hryvnia,
        {"deals": deal_settings(rounding_gap="comment")},
    ),
    "c7": (quick_c7, {"quick": True}),
    "step_1": (site_b_1, {"price_step": "1"}),
    "step_050": (site_b_1, {"price_step": "0.50"}),
    "step_1_site_a_3": (site_a_3, {"price_step": "1"}),
}


@pytest.mark.parametrize("name", CASES)
def test_the_deal_adds_up_to_the_total(name: str) -> None:
    """Lines + shipping field - discount (+ a gap stated in the comment) = total."""
    build, options = CASES[name]
    order = build()

    settled = settle(order, **options)

    parts = crm_sum(order, settled, options.get("price_step"))
    parts += settled.shipping_field - (settled.discount or 0)
    assert parts + settled.unsettled_gap == settled.total
    assert settled.discount is None or settled.discount > 0
    assert all(price > 0 for _, _, price in extras(settled))
    if settled.unsettled_gap:
        assert options["deals"].rounding_gap == "comment"

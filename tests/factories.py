"""Builders of small, realistic snapshots and settings for unit tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from daemon.settings import DealFieldSettings, DealSettings, SiteSettings
from events.snapshot import (
    Catalogue,
    Currency,
    Language,
    Line,
    LineOption,
    OrderSnapshot,
    TotalRow,
)

ENGLISH, UKRAINIAN = 1, 2


def site(**overrides: Any) -> SiteSettings:
    values: dict[str, Any] = {
        "name": "site_a",
        "title": "Техно Світ",
        "database": "mysql://reader@127.0.0.1/site_a",
        "source_id": 11,
        "responsible_id": 7,
        "sync_from": "all",
    }
    values.update(overrides)
    return SiteSettings(**values)


def deal_settings(**overrides: Any) -> DealSettings:
    values: dict[str, Any] = {
        "custom_fields": DealFieldSettings(
            marker="field_1",
            shipping_method="field_2",
            payment_method="field_3",
            city="field_4",
            address="field_5",
        )
    }
    values.update(overrides)
    return DealSettings(**values)


def option(
    name: str,
    value: str,
    *,
    option_id: int | None = None,
    option_value_id: int | None = None,
    type: str = "select",
    product_option_id: int = 1,
    product_option_value_id: int | None = None,
) -> LineOption:
    if product_option_value_id is None:
        product_option_value_id = option_value_id or 0
    return LineOption(
        order_option_id=0,
        product_option_id=product_option_id,
        product_option_value_id=product_option_value_id,
        option_id=option_id,
        option_value_id=option_value_id,
        name=name,
        value=value,
        type=type,
    )


def line(
    *,
    product_id: int = 50,
    name: str = "Футболка з логотипом",
    model: str = "TS-01",
    quantity: int = 1,
    price: str = "15.0000",
    tax: str = "0.0000",
    codes: dict[str, str] | None = None,
    options: list[LineOption] | None = None,
    order_product_id: int = 1,
) -> Line:
    if codes is None:
        codes = {"model": model, "sku": "", "upc": "", "ean": ""}
    total = str(quantity * Decimal(price))
    return Line(
        order_product_id=order_product_id,
        product_id=product_id,
        name=name,
        model=model,
        quantity=quantity,
        price=price,
        total=total,
        tax=tax,
        codes=codes,
        options=options or [],
    )


def currency(
    code: str = "UAH", places: int = 0, value: str = "45.37000000"
) -> Currency:
    return Currency(
        currency_id=4,
        code=code,
        symbol_left="",
        symbol_right=" грн",
        decimal_place=places,
        value=value,
    )


def snapshot(
    *,
    lines: list[Line] | None = None,
    order: dict[str, str | None] | None = None,
    total: str = "48.4900",
    rate: str = "45.37000000",
    currency_row: Currency | None = None,
    config_tax: str = "1",
    catalogue: Catalogue | None = None,
    order_id: int = 1,
    with_currency: bool = True,
) -> OrderSnapshot:
    columns: dict[str, str | None] = {
        "order_id": str(order_id),
        "firstname": "Олена",
        "lastname": "Коваленко",
        "email": "olena@example.com",
        "telephone": "+38 (067) 123-45-67",
        "shipping_firstname": "Олена",
        "shipping_lastname": "Коваленко",
        "shipping_city": "Київ",
        "shipping_address_1": "вул. Велика Васильківська, 72",
        "shipping_address_2": "",
        "shipping_method": "Доставка Новою Поштою",
        "payment_method": "Оплата при отриманні",
        "comment": "",
        "order_status_id": "1",
        "currency_code": "UAH",
        "currency_value": rate,
        "total": total,
        "language_id": str(UKRAINIAN),
    }
    columns.update(order or {})
    if currency_row is None and with_currency:
        currency_row = currency(value=rate)
    return OrderSnapshot(
        site="site_a",
        order_id=order_id,
        order=columns,
        lines=lines if lines is not None else [line()],
        totals=[TotalRow(code="total", title="Всього", value=total, sort_order=9)],
        history=[],
        currency=currency_row,
        shop={"config_tax": config_tax, "config_currency": "EUR"},
        languages=[
            Language(language_id=ENGLISH, code="en-gb"),
            Language(language_id=UKRAINIAN, code="uk-ua"),
        ],
        catalogue=catalogue or Catalogue(),
    )

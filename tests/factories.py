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
    total: str | None = None,
    rate: str = "45.37000000",
    currency_row: Currency | None = None,
    config_tax: str = "1",
    catalogue: Catalogue | None = None,
    order_id: int = 1,
    with_currency: bool = True,
) -> OrderSnapshot:
    """An order whose total, by default, is what its lines add up to."""
    if lines is None:
        lines = [line()]
    if total is None:
        with_tax = config_tax == "1"
        total = str(
            sum(
                (Decimal(x.price) + (Decimal(x.tax) if with_tax else 0)) * x.quantity
                for x in lines
            )
        )
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
        lines=lines,
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


def total_row(code: str, title: str, value: str, sort_order: int) -> TotalRow:
    return TotalRow(code=code, title=title, value=value, sort_order=sort_order)


def money_currency(
    code: str,
    *,
    left: str = "",
    right: str = "",
    places: int = 2,
    value: str = "1.00000000",
) -> Currency:
    """A currency row with its own symbols: "$" on the left, "€" on the right."""
    return Currency(
        currency_id=3,
        code=code,
        symbol_left=left,
        symbol_right=right,
        decimal_place=places,
        value=value,
    )


def order_with_totals(
    *,
    lines: list[Line],
    totals: list[TotalRow],
    rate: str = "45.37000000",
    currency_row: Currency | None = None,
    config_tax: str = "1",
    shipping_code: str = "flat.flat",
    kind: str = "order",
    order_id: int = 1,
) -> OrderSnapshot:
    """A snapshot whose `order_total` rows (and `order.total`) are given."""
    # Imported here: this builder was appended without touching the header.
    import msgspec

    total = next((row.value for row in totals if row.code == "total"), "0.0000")
    base = snapshot(
        lines=lines,
        order={"shipping_code": shipping_code},
        total=total,
        rate=rate,
        currency_row=currency_row,
        config_tax=config_tax,
        order_id=order_id,
    )
    return msgspec.structs.replace(base, totals=totals, kind=kind)


def every_deal_field(**overrides: Any) -> DealFieldSettings:
    """Field settings that send every delivery fact, each to a field of its own."""
    values: dict[str, Any] = {
        "marker": "field_1",
        "shipping_method": "field_2",
        "payment_method": "field_3",
        "city": "field_4",
        "address": "field_5",
        "country": "field_6",
        "region": "field_7",
        "branch": "field_8",
        "recipient": "field_9",
        "comment": "field_10",
        "order_number": "field_11",
    }
    values.update(overrides)
    return DealFieldSettings(**values)


def custom_field_catalogue(**overrides: Any) -> Catalogue:
    """site_a's custom fields: 1 call time (text), 2 Nova Poshta branch (select)."""
    values: dict[str, Any] = {
        "custom_fields": {
            1: {ENGLISH: "Preferred call time", UKRAINIAN: "Зручний час дзвінка"},
            2: {ENGLISH: "Nova Poshta branch", UKRAINIAN: "Відділення Нової Пошти"},
        },
        "custom_field_values": {
            1: {
                ENGLISH: "Branch No. 1 (Kyiv, Pyrohivskyi shliakh 135)",
                UKRAINIAN: "Відділення №1 (Київ, Пирогівський шлях, 135)",
            },
            2: {
                ENGLISH: "Branch No. 7 (Lviv, Horodotska 359)",
                UKRAINIAN: "Відділення №7 (Львів, вул. Городоцька, 359)",
            },
            4: {ENGLISH: "Parcel locker No. 5012", UKRAINIAN: "Поштомат №5012"},
        },
        "country_codes": {220: "UA"},
    }
    values.update(overrides)
    return Catalogue(**values)


def crm_client(client_id: int, person: str | None, *phones: str) -> dict[str, Any]:
    """A client as the CRM's client search answers it."""
    return {"id": client_id, "person": person, "phones": list(phones)}

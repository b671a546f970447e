"""The pure order -> deal mapping: names, variants, articles, client, fields."""

from decimal import Decimal

import msgspec
import pytest

from daemon.settings import QuickOrderSettings
from events.snapshot import Catalogue
from projections.deal import deal_for
from projections.errors import DealMappingError
from tests.factories import (
    ENGLISH,
    UKRAINIAN,
    deal_settings,
    line,
    option,
    site,
    snapshot,
)

TSHIRT_CATALOGUE = Catalogue(
    products={50: {ENGLISH: "Logo T-shirt", UKRAINIAN: "Футболка з логотипом"}},
    options={227: {ENGLISH: "Color", UKRAINIAN: "Колір"}},
    option_values={19: {ENGLISH: "Red", UKRAINIAN: "Червоний"}},
)


def test_deal_core_fields() -> None:
    """Title, source, responsible, currency and the total shown."""
    deal = deal_for(snapshot(), site(), deal_settings())

    assert deal["title"] == "№1 Техно Світ"
    assert deal["source_id"] == 11
    assert deal["main_responsible_id"] == 7
    assert deal["currency"] == "UAH"
    assert deal["total"] == Decimal("681")  # 15.00 EUR at 45.37, no decimals


def test_marker_and_order_facts_go_to_custom_fields() -> None:
    """The marker site:order never depends on settings; methods, city, address."""
    fields = {
        f["name"]: f["value"]
        for f in deal_for(snapshot(), site(), deal_settings())["custom_fields"]
    }

    assert fields == {
        "field_1": "site_a:1",
        "field_2": "Доставка Новою Поштою",
        "field_3": "Оплата при отриманні",
        "field_4": "Київ",
        "field_5": "вул. Велика Васильківська, 72",
    }


def test_line_carries_article_quantity_and_price_shown() -> None:
    """C4-style line: the CRM gets the unit price shown and the quantity."""
    order = snapshot(lines=[line(quantity=2, price="15.0000", tax="3.0000")])

    job = deal_for(order, site(), deal_settings())["jobs_attributes"][0]

    assert job["amount"] == 2
    assert job["product_attributes"]["sku"] == "TS-01"
    assert job["product_attributes"]["price"] == Decimal("817")
    assert job["product_attributes"]["currency"] == "UAH"


def test_c4_deal_total_is_the_total_shown() -> None:
    """C4: 143 x 10 with 1 428 shown: the deal says 1 428, discount 2, no 1 430."""
    ten = line(quantity=10, price="5.0000", tax="0.0000")
    order = snapshot(lines=[ten], rate="28.55000000", config_tax="0")

    deal = deal_for(order, site(), deal_settings())

    assert deal["total"] == Decimal("1428")
    assert deal["discount"] == Decimal("2")
    assert deal["discount_kind"] == "absolute_discount"
    [job] = deal["jobs_attributes"]
    assert (job["amount"], job["product_attributes"]["price"]) == (10, Decimal("143"))
    assert all(j["product_attributes"]["price"] > 0 for j in deal["jobs_attributes"])
    assert "Всього: 1 428 грн" in deal["comment"].splitlines()


def test_c2_variants_stay_on_their_own_line() -> None:
    """C2: line A carries its options; line B, without options, carries none."""
    tshirt = line(
        options=[
            option("Колір", "Червоний", type="select"),
            option("Розмір", "M", type="select", product_option_id=2),
        ]
    )
    case = line(product_id=51, name="Чохол", model="CASE-01", order_product_id=2)

    jobs = deal_for(snapshot(lines=[tshirt, case]), site(), deal_settings())[
        "jobs_attributes"
    ]

    assert jobs[0]["comment"] == "Колір: Червоний; Розмір: M"
    assert "comment" not in jobs[1]


def test_c3_every_ticked_checkbox_value_in_shop_order() -> None:
    """C3: two ticked values of one checkbox are two pairs, in the shop's order."""
    ticked = [
        option("Прапорці", "Прапорець 1", type="checkbox", product_option_id=223),
        option("Прапорці", "Прапорець 3", type="checkbox", product_option_id=223),
    ]

    job = deal_for(snapshot(lines=[line(options=ticked)]), site(), deal_settings())[
        "jobs_attributes"
    ][0]

    assert job["comment"] == "Прапорці: Прапорець 1; Прапорці: Прапорець 3"


def test_names_in_ukrainian_for_an_order_placed_in_english() -> None:
    """Product, option and value names come from the Ukrainian catalogue rows."""
    english = line(
        name="Logo T-shirt",
        options=[option("Color", "Red", option_id=227, option_value_id=19)],
    )
    order = snapshot(lines=[english], catalogue=TSHIRT_CATALOGUE)

    job = deal_for(order, site(), deal_settings())["jobs_attributes"][0]

    assert job["title"] == "Футболка з логотипом"
    assert job["product_attributes"]["title"] == "Футболка з логотипом"
    assert job["comment"] == "Колір: Червоний"


def test_typed_option_values_stay_as_typed() -> None:
    """A text option has no catalogue value: the buyer's text is the value."""
    typed = option("Текст", "Напис: Олександр", type="text", option_id=227)
    order = snapshot(lines=[line(options=[typed])], catalogue=TSHIRT_CATALOGUE)

    job = deal_for(order, site(), deal_settings())["jobs_attributes"][0]

    assert job["comment"] == "Колір: Напис: Олександр"


def test_file_option_shows_the_uploaded_file_name() -> None:
    """A file option shows the buyer's file name, not the upload code it stores."""
    code = "c" * 40
    lost = "d" * 40
    files = [
        option("Макет", code, type="file", product_option_id=3),
        option("Логотип", lost, type="file", product_option_id=4),
    ]
    order = msgspec.structs.replace(
        snapshot(lines=[line(options=files)]), uploads={code: "Макет & лого.pdf"}
    )

    job = deal_for(order, site(), deal_settings())["jobs_attributes"][0]

    assert job["comment"] == f"Макет: Макет & лого.pdf; Логотип: {lost}"


@pytest.mark.parametrize(
    ("target", "title", "comment_key", "deal_comment"),
    [
        ("line_comment", "Футболка", "note", None),
        ("line_title", "Футболка (Колір: Червоний)", None, None),
        ("deal_comment", "Футболка", None, "Футболка: Колір: Червоний"),
    ],
)
def test_variant_target_is_a_setting(
    target: str, title: str, comment_key: str | None, deal_comment: str | None
) -> None:
    """Variant text goes to the line comment, the line title or the deal comment."""
    tshirt = line(name="Футболка", options=[option("Колір", "Червоний")])
    settings = deal_settings(variant_target=target, line_comment_key="note")

    deal = deal_for(snapshot(lines=[tshirt]), site(), settings)
    job = deal["jobs_attributes"][0]

    assert job["title"] == title
    assert (comment_key in job) is (comment_key is not None)
    in_deal_comment = "Колір: Червоний" in deal.get("comment", "")
    assert in_deal_comment is (deal_comment is not None)
    if deal_comment is not None:
        assert deal_comment in deal["comment"].splitlines()


def test_c12_model_is_the_article_when_sku_is_empty() -> None:
    """C12: an empty sku falls through to the model; never an empty article."""
    settings = deal_settings(article_fields=("sku",))
    no_sku = line(codes={"model": "AC-30", "sku": "  "}, model="AC-30")

    job = deal_for(snapshot(lines=[no_sku]), site(), settings)["jobs_attributes"][0]

    assert job["product_attributes"]["sku"] == "AC-30"


def test_article_field_chain_takes_the_first_filled_code() -> None:
    """With ["sku", "model"] a filled sku wins, trimmed."""
    settings = deal_settings(article_fields=("sku", "model"))
    with_sku = line(codes={"model": "MB-01", "sku": " MGN63UA/A "}, model="MB-01")

    job = deal_for(snapshot(lines=[with_sku]), site(), settings)["jobs_attributes"][0]

    assert job["product_attributes"]["sku"] == "MGN63UA/A"


def test_c13_deleted_product_syncs_from_the_orders_own_name_and_model() -> None:
    """C13: no product row left, so no codes: the order's name and model are used."""
    gone = line(product_id=77, name="Старий товар", model="OLD-77", codes={})

    job = deal_for(snapshot(lines=[gone]), site(), deal_settings())["jobs_attributes"][
        0
    ]

    assert job["title"] == "Старий товар"
    assert job["product_attributes"]["sku"] == "OLD-77"


def test_client_phone_normalised_and_recipient_in_comment() -> None:
    """The buyer's phone as +380...; a different recipient is named in the comment."""
    order = snapshot(
        order={
            "telephone": "(067) 555 66 77",
            "shipping_firstname": "Наталія",
            "shipping_lastname": "Савченко",
        }
    )

    deal = deal_for(order, site(), deal_settings())

    assert deal["client_attributes"] == {
        "person": "Олена Коваленко",
        "phones": ["+380675556677"],
        "email": "olena@example.com",
    }
    assert "Отримувач: Наталія Савченко" in deal["comment"]


def test_a_phone_that_is_no_number_is_kept_in_the_comment() -> None:
    """`12345` is not sent as a phone; the deal comment keeps it as typed."""
    deal = deal_for(snapshot(order={"telephone": "12345"}), site(), deal_settings())

    assert "phones" not in deal["client_attributes"]
    assert "Телефон (як введено): 12345" in deal["comment"]


def test_missing_currency_row_is_a_mapping_error_naming_the_field() -> None:
    """A currency deleted since the order parks it with site, order and field."""
    with pytest.raises(DealMappingError) as caught:
        deal_for(snapshot(with_currency=False), site(), deal_settings())

    assert str(caught.value).startswith("site site_a order 1 field currency_id")


def test_zero_quantity_is_a_mapping_error() -> None:
    """A line with quantity 0 is refused with the field named."""
    with pytest.raises(DealMappingError, match=r"order_product\.quantity"):
        deal_for(snapshot(lines=[line(quantity=0)]), site(), deal_settings())


def test_c7_quick_order_row_becomes_a_quick_deal() -> None:
    """C7: phone as name, dummy email, no methods, total of one unit for three.

    The deal has quantity 3 at the price shown, the real total (three units),
    the phone as the client's phone, no dummy email, a title and source that
    say it is a quick order.
    """
    rule = QuickOrderSettings(empty_methods=True, emails=("null@nu.ll",), source_id=99)
    three = line(quantity=3, price="15.0000", tax="3.0000")
    order = snapshot(
        lines=[three],
        total="18.0000",  # the module stored one unit's price
        order={
            "firstname": "0671234567",
            "lastname": "",
            "telephone": "",
            "email": "null@nu.ll",
            "shipping_method": "",
            "payment_method": "",
            "shipping_code": "",
            "payment_code": "",
        },
    )

    deal = deal_for(order, site(quick_order=rule), deal_settings())
    [job] = deal["jobs_attributes"]

    assert job["amount"] == 3
    assert job["product_attributes"]["price"] == Decimal("817")
    assert deal["total"] == Decimal("2451")
    assert deal["client_attributes"]["phones"] == ["+380671234567"]
    assert "email" not in deal["client_attributes"]
    assert deal["title"].startswith("Швидке замовлення №1")
    assert deal["source_id"] == 99


@pytest.mark.parametrize(
    ("filled", "quick"),
    [
        ({}, True),
        ({"payment_city": "Київ"}, False),
        ({"shipping_address_1": "Відділення №1"}, False),
        ({"payment_address_1": " "}, True),
    ],
)
def test_empty_address_rule_recognises_a_quick_order(
    filled: dict[str, str], quick: bool
) -> None:
    """empty_address: address line 1 and city of both addresses must be empty."""
    rule = QuickOrderSettings(empty_methods=True, empty_address=True)
    empty = {
        "shipping_method": "",
        "payment_method": "",
        "shipping_address_1": "",
        "shipping_city": "",
        "payment_address_1": "",
        "payment_city": "",
    }
    order = snapshot(order={**empty, **filled})

    deal = deal_for(order, site(quick_order=rule), deal_settings())

    assert deal["title"].startswith("Швидке замовлення") is quick


def test_an_ordinary_order_is_no_quick_order_by_default() -> None:
    """Without a rule, an order with empty methods is an ordinary order."""
    order = snapshot(order={"shipping_method": "", "payment_method": ""})

    deal = deal_for(order, site(), deal_settings())

    assert deal["title"] == "№1 Техно Світ"
    assert deal["source_id"] == 11


def test_lines_far_from_the_total_shown_park_the_order() -> None:
    """A quantity changed without the totals is no rounding: parked, never sent."""
    edited = snapshot(lines=[line(quantity=3)], total="15.0000")

    with pytest.raises(DealMappingError, match=r"order_total\.total: the lines add"):
        deal_for(edited, site(), deal_settings())


def test_an_order_cancelled_before_it_was_sent_starts_closed() -> None:
    """A failed status at creation: the deal is created at its stage, failed."""
    cancelled = snapshot(order={"order_status_id": "7"})
    rules = site(stages={"7": 107}, failed_statuses=(7,))

    deal = deal_for(cancelled, rules, deal_settings())

    assert (deal["stage_id"], deal["result"]) == (107, "failed")

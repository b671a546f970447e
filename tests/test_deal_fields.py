"""Delivery facts and deal custom fields: custom field columns, branch, methods."""

from collections.abc import Mapping
from typing import Any

import msgspec

from events.snapshot import OrderSnapshot
from projections.catalogue_names import CatalogueNames
from projections.deal_fields import (
    Delivery,
    custom_fields_for,
    delivery_for,
    delivery_notes,
)
from tests import factories
from tests.factories import (
    ENGLISH,
    UKRAINIAN,
    custom_field_catalogue,
    deal_settings,
    every_deal_field,
    site,
    snapshot,
)

# site_a #7: Григорій Савченко buys, Наталія Савченко receives in Вінниця.
SITE_A_7 = {
    "firstname": "Григорій",
    "lastname": "Савченко",
    "shipping_firstname": "Наталія",
    "shipping_lastname": "Савченко",
    "shipping_city": "Вінниця",
    "shipping_address_1": "вул. Соборна, 10",
    "shipping_country": "Ukraine",
    "shipping_country_id": "220",
    "shipping_zone": "Vinnyts'ka Oblast'",
    "shipping_custom_field": '{"2":"4"}',
    "payment_custom_field": '{"2":""}',
    "custom_field": '{"1":"\\u043f\\u0456\\u0441\\u043b\\u044f 18:00"}',
    "shipping_code": "free.free",
    "payment_code": "cod",
}


def order(
    columns: Mapping[str, str | None] | None = None, **changes: Any
) -> OrderSnapshot:
    """A site_a snapshot with its custom field catalogue and the columns given."""
    built = snapshot(order=dict(columns or {}), catalogue=custom_field_catalogue())
    return msgspec.structs.replace(built, **changes) if changes else built


def delivery(
    snap: OrderSnapshot, site_changes: dict[str, Any] | None = None, **deals: Any
) -> Delivery:
    settings = deal_settings(**deals)
    names = CatalogueNames(snap, settings.language)
    return delivery_for(snap, site(**(site_changes or {})), settings, names)


def fields(
    snap: OrderSnapshot, site_changes: dict[str, Any] | None = None, **deals: Any
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The custom fields as {name: value}, and the warnings of both steps."""
    settings = deal_settings(**deals)
    site_settings = site(**(site_changes or {}))
    names = CatalogueNames(snap, settings.language)
    facts = delivery_for(snap, site_settings, settings, names)
    sent, warnings = custom_fields_for(snap, site_settings, settings, facts, names)
    assert len({field["name"] for field in sent}) == len(sent)
    return {f["name"]: f["value"] for f in sent}, [*facts.warnings, *warnings]


def mapped(key: str) -> dict[str, Any]:
    return {"custom_fields": {key: "field_20"}}


def test_c15_select_in_shipping_custom_field_is_its_label() -> None:
    """C15: `{"3": "7"}` in shipping_custom_field becomes value 7's Ukrainian label."""
    catalogue = custom_field_catalogue(
        custom_field_values={
            7: {ENGLISH: "Parcel locker No. 7", UKRAINIAN: "Поштомат №7"}
        }
    )
    snap = order({"shipping_custom_field": '{"3": "7"}'}, catalogue=catalogue)

    sent, warnings = fields(snap, mapped("shipping_custom_field.3"))

    assert sent["field_20"] == "Поштомат №7"
    assert warnings == []


def test_select_label_in_the_managers_language_whatever_the_buyer_used() -> None:
    """An English-language order still sends the Ukrainian label."""
    snap = order({"language_id": str(ENGLISH), "custom_field": '{"2":"2"}'})

    sent, _ = fields(snap, mapped("custom_field.2"))

    assert sent["field_20"] == "Відділення №7 (Львів, вул. Городоцька, 359)"


def test_checkbox_ids_become_labels_joined() -> None:
    """A checkbox answer (a list of value ids) is its labels, joined with ", "."""
    snap = order({"custom_field": '{"5": ["4", "1"]}'})

    sent, _ = fields(snap, mapped("custom_field.5"))

    assert sent["field_20"] == (
        "Поштомат №5012, Відділення №1 (Київ, Пирогівський шлях, 135)"
    )


def test_text_field_as_typed_through_json_and_html_escapes() -> None:
    """Text is \\u-unescaped by JSON and HTML-unescaped exactly once (C9)."""
    typed = '{"1":"\\u0422\\u041e\\u0412 &quot;\\u0420\\u043e\\u043c&quot; &amp;amp;"}'

    sent, _ = fields(order({"custom_field": typed}), mapped("custom_field.1"))

    assert sent["field_20"] == 'ТОВ "Ром" &amp;'


def test_unanswered_and_unknown_fields_are_not_sent() -> None:
    """An empty answer, a missing id and 4.1's `[]` column send nothing."""
    snap = order({"custom_field": '{"1":""}', "payment_custom_field": "[]"})
    site_map = {
        "custom_fields": {
            "custom_field.1": "field_20",
            "custom_field.9": "field_21",
            "payment_custom_field.2": "field_22",
        }
    }

    sent, warnings = fields(snap, site_map)

    assert not {"field_20", "field_21", "field_22"} & set(sent)
    assert warnings == []


def test_malformed_json_warns_and_keeps_what_reads() -> None:
    """A cut-off JSON column gives its whole pairs and a warning naming it."""
    snap = order({"custom_field": '{"1":"\\u043f\\u0456\\u0441\\u043b\\u044f","2":"4'})
    site_map = {"custom_fields": {"custom_field.1": "field_20", "custom_field.2": "f"}}

    sent, warnings = fields(snap, site_map)

    assert sent["field_20"] == "після"
    assert "f" not in sent
    assert [field for field, _ in warnings] == ["custom_field"]


def test_unreadable_column_warns_once() -> None:
    """A column read for the branch and for the map is reported once."""
    snap = order({"shipping_custom_field": "not json"})
    site_map = {
        "branch_from": "custom_field:2",
        "custom_fields": {"shipping_custom_field.2": "field_20"},
    }

    sent, warnings = fields(snap, site_map)

    assert "field_20" not in sent
    assert warnings == [("shipping_custom_field", "neither JSON nor PHP serialize()")]


def php_string(text: str) -> str:
    return f's:{len(text.encode("utf-8"))}:"{text}";'


def test_php_serialized_columns_before_2_1_are_read() -> None:
    """OpenCart before 2.1 kept custom fields as PHP serialize(): read it too."""
    ticked = f"a:2:{{i:0;{php_string('4')}i:1;{php_string('2')}}}"
    serialized = (
        f"a:3:{{i:1;{php_string('після 18:00')}"
        f"{php_string('2')}{php_string('1')}i:5;{ticked}}}"
    )
    site_map = {
        "custom_fields": {
            "custom_field.1": "field_20",
            "custom_field.2": "field_21",
            "custom_field.5": "field_22",
        }
    }

    sent, warnings = fields(order({"custom_field": serialized}), site_map)

    assert sent["field_20"] == "після 18:00"
    assert sent["field_21"] == "Відділення №1 (Київ, Пирогівський шлях, 135)"
    assert sent["field_22"].startswith("Поштомат №5012, Відділення №7")
    assert warnings == []


def test_broken_php_serialized_column_warns() -> None:
    """A PHP string whose length does not match is reported, not a crash."""
    snap = order({"custom_field": 'a:1:{i:1;s:99:"short";}'})

    sent, warnings = fields(snap, mapped("custom_field.1"))

    assert "field_20" not in sent
    assert [field for field, _ in warnings] == ["custom_field"]


def test_order_columns_as_stored() -> None:
    """`order.<column>` sends the column as the snapshot holds it."""
    snap = order({"store_name": "Техно & Світ", "fax": ""})
    site_map = {"custom_fields": {"order.store_name": "field_20", "order.fax": "f"}}

    sent, _ = fields(snap, site_map)

    assert sent["field_20"] == "Техно & Світ"
    assert "f" not in sent


def test_country_through_pycountry_by_iso_code() -> None:
    """UA (country_id 220 in the catalogue) is "Україна" in the managers' language."""
    facts = delivery(order(SITE_A_7))

    assert facts.country == "Україна"


def test_country_of_another_language_setting() -> None:
    """Names follow `deals.language`: English keeps the ISO name."""
    facts = delivery(order(SITE_A_7), language="en-gb")

    assert facts.country == "Ukraine"


def test_country_without_code_falls_back_to_glossary_then_name() -> None:
    """No ISO code: the glossary, then the English name looked up, then as stored."""
    no_code = {**SITE_A_7, "shipping_country_id": "999"}
    glossary = {"Ukraine": "Україна (з глосарію)"}

    assert delivery(order(no_code), glossary=glossary).country == (
        "Україна (з глосарію)"
    )
    assert delivery(order(no_code)).country == "Україна"
    unknown = {**no_code, "shipping_country": "Атлантида"}
    assert delivery(order(unknown)).country == "Атлантида"


def test_glossary_names_a_russian_city_in_ukrainian() -> None:
    """site_a #6: "Одесса" becomes "Одеса"; the zone goes through it too."""
    snap = order(
        {"shipping_city": "Одесса", "shipping_zone": "Odes'ka Oblast'"},
    )
    glossary = {"одесса": "Одеса", "Odes'ka Oblast'": "Одеська область"}

    facts = delivery(snap, glossary=glossary)

    assert facts.city == "Одеса"
    assert facts.region == "Одеська область"


def test_branch_from_shipping_address_1() -> None:
    """By default the branch is address line 1, sent once: not in the address too."""
    snap = order({"shipping_address_1": "Відділення №5", "shipping_address_2": "кв. 3"})

    with_field = delivery(snap, custom_fields=every_deal_field())
    without = delivery(snap)

    assert (with_field.branch, with_field.address) == ("Відділення №5", "кв. 3")
    assert without.address == "Відділення №5, кв. 3"


def test_branch_from_city_colon_branch() -> None:
    """`Київ : Відділення №1` in shipping_city is split into city and branch."""
    snap = order({"shipping_city": "Київ : Відділення №1 : вул. Хрещатик"})

    facts = delivery(snap, {"branch_from": "city_colon_branch"})

    assert facts.city == "Київ"
    assert facts.branch == "Відділення №1 : вул. Хрещатик"
    assert facts.address == "вул. Велика Васильківська, 72"


def test_branch_from_custom_field_prefers_the_shipping_address() -> None:
    """site_a #7: the select on the shipping address wins over the empty payment one."""
    facts = delivery(order(SITE_A_7), {"branch_from": "custom_field:2"})

    assert facts.branch == "Поштомат №5012"


def test_branch_from_custom_field_falls_back_to_payment_then_account() -> None:
    """No shipping answer: the payment address's, then the account field's."""
    snap = order({"payment_custom_field": '{"2":"1"}', "custom_field": '{"2":"2"}'})
    account = order({"custom_field": '{"2":"2"}'})

    assert delivery(snap, {"branch_from": "custom_field:2"}).branch.startswith(
        "Відділення №1"
    )
    assert delivery(account, {"branch_from": "custom_field:2"}).branch.startswith(
        "Відділення №7"
    )


def test_branch_from_a_site_query() -> None:
    """`query:np.branch` is the column of the first row of that query's rows."""
    rows = [
        {"order_id": "1", "branch": "Відделение №3"},
        {"order_id": "1", "branch": "second"},
    ]
    snap = order(extras={"np": rows})
    site_changes = {
        "branch_from": "query:np.branch",
        "queries": {"np": "SELECT ... WHERE order_id IN %(order_ids)s"},
    }

    facts = delivery(snap, site_changes, glossary={"Відделение №3": "Відділення №3"})

    assert facts.branch == "Відділення №3"


def test_city_from_a_nova_poshta_table_goes_through_the_glossary() -> None:
    """`city_from = "query:np.city"`: the module's city, then the glossary."""
    snap = order(extras={"np": [{"order_id": "1", "city": "Одесса"}]})
    site_changes = {
        "city_from": "query:np.city",
        "queries": {"np": "SELECT ... WHERE order_id IN %(order_ids)s"},
    }

    facts = delivery(snap, site_changes, glossary={"Одесса": "Одеса"})
    no_row = delivery(order(), site_changes)

    assert facts.city == "Одеса"
    assert no_row.city == "Київ"


def test_city_from_a_custom_field() -> None:
    """`city_from = "custom_field:1"` takes that field's answer, not shipping_city."""
    snap = order({"shipping_custom_field": '{"1":"Харків"}'})

    facts = delivery(snap, {"city_from": "custom_field:1"})

    assert facts.city == "Харків"


def test_city_from_city_colon_branch_with_another_branch_source() -> None:
    """The part before the colon is the city even when the branch comes elsewhere."""
    snap = order({"shipping_city": "Київ : Відділення №1"})

    facts = delivery(snap, {"city_from": "city_colon_branch"})

    assert facts.city == "Київ"
    assert facts.branch == "вул. Велика Васильківська, 72"


def test_query_without_the_column_warns() -> None:
    """A query that returns no such column is reported; no rows is no branch."""
    site_changes = {
        "branch_from": "query:np.branch",
        "queries": {"np": "SELECT ... %(order_ids)s"},
    }
    wrong = order(extras={"np": [{"order_id": "1", "ref": "x"}]})

    assert delivery(order(), site_changes).warnings == ()
    facts = delivery(wrong, site_changes)
    assert facts.branch == ""
    assert [field for field, _ in facts.warnings] == ["query:np.branch"]


def test_payment_address_when_nothing_was_shipped() -> None:
    """OpenCart 3.0 without shipping: city, address and country from payment_*."""
    empty_shipping = {
        "shipping_firstname": "",
        "shipping_lastname": "",
        "shipping_city": "",
        "shipping_address_1": "",
        "payment_city": "Полтава",
        "payment_address_1": "вул. Європейська, 1",
        "payment_country": "Ukraine",
        "payment_country_id": "220",
    }

    facts = delivery(order(empty_shipping))

    assert (facts.city, facts.address) == ("Полтава", "вул. Європейська, 1")
    assert facts.country == "Україна"
    assert facts.recipient == ""


def test_methods_by_code() -> None:
    """3.0 codes name the methods in Ukrainian; the extension alone works too."""
    methods = {"free.free": "Безкоштовна доставка", "cod": "Накладений платіж"}

    facts = delivery(order(SITE_A_7), methods=methods)

    assert facts.shipping_method == "Безкоштовна доставка"
    assert facts.payment_method == "Накладений платіж"


def test_methods_without_code_keep_the_stored_title() -> None:
    """An unmapped code keeps the title the order stored, unescaped once."""
    snap = order({"shipping_code": "flat.flat", "shipping_method": "Flat &amp; fast"})

    assert delivery(snap).shipping_method == "Flat & fast"


def test_4_1_json_method_columns() -> None:
    """4.1 keeps `{"name": .., "code": ..}` in the method columns."""
    snap = order(
        {
            "shipping_method": (
                '{"code":"flat.flat","name":"\\u0414\\u043e\\u0441\\u0442\\u0430'
                '\\u0432\\u043a\\u0430","cost":"2.50","text":"113,43 грн"}'
            ),
            "payment_method": '{"code":"cod.cod","name":"Cash On Delivery"}',
        }
    )

    plain = delivery(snap)
    mapped_methods = delivery(snap, methods={"cod": "Накладений платіж"})

    assert (plain.shipping_method, plain.payment_method) == (
        "Доставка",
        "Cash On Delivery",
    )
    assert mapped_methods.payment_method == "Накладений платіж"


def test_broken_json_method_is_sent_as_stored_with_a_warning() -> None:
    """A method column that starts like JSON but is none goes as stored."""
    facts = delivery(order({"shipping_method": "{Кур'єр"}))

    assert facts.shipping_method == "{Кур'єр"
    assert [field for field, _ in facts.warnings] == ["shipping_method"]


def test_recipient_differing_from_the_buyer() -> None:
    """site_a #7: Наталія Савченко receives what Григорій Савченко bought."""
    assert delivery(order(SITE_A_7)).recipient == "Наталія Савченко"


def test_recipient_is_the_buyer_in_any_order() -> None:
    """The buyer's own name, in another order or case, is no recipient."""
    snap = order({"shipping_firstname": "КОВАЛЕНКО", "shipping_lastname": "олена"})

    assert delivery(snap).recipient == ""


def test_every_fact_to_its_field() -> None:
    """Marker, methods, place, recipient, comment and order number, each sent."""
    snap = order({**SITE_A_7, "comment": "<b>ok</b>"}, order_id=7)

    sent, warnings = fields(
        snap,
        {"branch_from": "custom_field:2"},
        custom_fields=every_deal_field(),
        glossary={"Vinnyts'ka Oblast'": "Вінницька область"},
    )

    assert sent == {
        "field_1": "site_a:7",
        "field_2": "Доставка Новою Поштою",
        "field_3": "Оплата при отриманні",
        "field_4": "Вінниця",
        "field_5": "вул. Соборна, 10",
        "field_6": "Україна",
        "field_7": "Вінницька область",
        "field_8": "Поштомат №5012",
        "field_9": "Наталія Савченко",
        "field_10": "<b>ok</b>",
        "field_11": "7",
    }
    assert warnings == []


def test_quick_order_marker_is_told_apart() -> None:
    """A quick order of a module's own table carries its own marker."""
    sent, _ = fields(order(kind="quick_order"))

    assert sent["field_1"] == "site_a:quick-1"


def test_two_facts_for_one_field_first_wins_and_warns() -> None:
    """The marker keeps its field even when the site map names it too."""
    site_map = {"custom_fields": {"order.store_name": "field_1"}}

    sent, warnings = fields(order({"store_name": "Техно Світ"}), site_map)

    assert sent["field_1"] == "site_a:1"
    assert warnings == [("order.store_name", "CRM field field_1 already holds marker")]


def test_empty_values_are_left_out() -> None:
    """Facts with nothing in them are not sent."""
    snap = order({"shipping_method": "", "shipping_address_1": "", "comment": " "})

    sent, _ = fields(snap, custom_fields=every_deal_field())

    assert "field_2" not in sent
    assert "field_5" not in sent
    assert "field_10" not in sent


def test_delivery_notes_for_facts_without_a_field() -> None:
    """Recipient, a branch not in the address, and the buyer's comment: comment."""
    snap = order({**SITE_A_7, "comment": "Дзвоніть після 18:00"})
    settings = deal_settings()
    site_settings = site(branch_from="custom_field:2")
    facts = delivery_for(
        snap, site_settings, settings, CatalogueNames(snap, settings.language)
    )

    assert delivery_notes(snap, site_settings, settings, facts) == [
        "Отримувач: Наталія Савченко",
        "Відділення: Поштомат №5012",
        "Коментар покупця: Дзвоніть після 18:00",
    ]
    everything = deal_settings(custom_fields=every_deal_field())
    assert delivery_notes(snap, site_settings, everything, facts) == []


def test_regions_in_opencarts_romanisation_come_out_in_ukrainian() -> None:
    """3.0's "L'vivs'ka Oblast'" and 4.1's "Lvivska" are both Львівська область."""
    for stored in ("L'vivs'ka Oblast'", "Lvivska"):
        order = factories.snapshot(
            order={"shipping_zone": stored, "shipping_country_id": "220"},
            catalogue=factories.custom_field_catalogue(),
        )
        names = CatalogueNames(order, "uk-ua")

        delivery = delivery_for(
            order, factories.site(), factories.deal_settings(), names
        )

        assert delivery.region == "Львівська область"

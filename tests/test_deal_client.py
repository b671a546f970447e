"""The buyer as a CRM client: phones, email, company, name, and reuse by phone."""

from typing import Any

import pytest

from projections.deal_client import (
    NAMELESS_PERSON,
    client_for,
    normalised_phone,
    pick_client,
    same_person,
)
from tests.factories import crm_client, deal_settings, snapshot
from tests.orders_md import shown_orders


@pytest.mark.parametrize(
    "typed",
    ["+38 (067) 123-45-67", "0671234567", "380671234567", "67 123 45 67"],
)
def test_c8_spellings_become_one_number(typed: str) -> None:
    """C8: every common spelling of one number becomes +380671234567."""
    facts = client_for(snapshot(order={"telephone": typed}), deal_settings())

    assert facts.phone == "+380671234567"
    assert facts.attributes["phones"] == ["+380671234567"]
    assert facts.comment == []
    assert facts.warnings == []


def test_c8_every_fixture_telephone_is_a_valid_number() -> None:
    """Each telephone of ORDERS.md, as typed, becomes a +380 number of its digits."""
    telephones = {order.telephone for order in shown_orders()}

    assert len(telephones) >= 12
    for typed in telephones:
        phone = normalised_phone(typed, "UA")
        assert phone is not None, typed
        assert phone.startswith("+380") and len(phone) == 13, typed
        assert phone.endswith("".join(filter(str.isdigit, typed))[-9:]), typed


def test_c8_no_number_goes_to_the_comment_and_warns() -> None:
    """C8: `12345` is kept as typed in the comment; the client is still made."""
    facts = client_for(snapshot(order={"telephone": "12345"}), deal_settings())

    assert facts.phone is None
    assert "phones" not in facts.attributes
    assert facts.attributes["person"] == "Олена Коваленко"
    assert facts.comment == ["Телефон (як введено): 12345"]
    assert [field for field, _ in facts.warnings] == ["telephone"]


def test_old_trunk_prefix_eight_is_read() -> None:
    """`8 067 123 45 67` (the old long-distance prefix) is a Ukrainian number."""
    assert normalised_phone("8 067 123 45 67", "UA") == "+380671234567"


@pytest.mark.parametrize("email", ["null@nu.ll", "NoEmail@shop.ua", "x@localhost"])
def test_dummy_email_is_not_sent(email: str) -> None:
    """A made-up email (any case) matching `dummy_emails` is left out."""
    facts = client_for(snapshot(order={"email": email}), deal_settings())

    assert "email" not in facts.attributes
    assert facts.warnings == []


def test_real_email_is_sent() -> None:
    """The buyer's email goes to the client as typed."""
    facts = client_for(snapshot(), deal_settings())

    assert facts.attributes["email"] == "olena@example.com"


def test_email_without_at_goes_to_the_comment() -> None:
    """Text that is no email address is kept in the comment, not sent as email."""
    facts = client_for(snapshot(order={"email": "немає"}), deal_settings())

    assert "email" not in facts.attributes
    assert facts.comment == ["E-mail (як введено): немає"]
    assert [field for field, _ in facts.warnings] == ["email"]


def test_c9_names_stay_unescaped_once() -> None:
    """C9: a snapshot's name is already unescaped once and is sent as it is."""
    order = snapshot(order={"firstname": "Тарас & Co", "lastname": "AT&amp;T"})

    facts = client_for(order, deal_settings())

    assert facts.attributes["person"] == "Тарас & Co AT&amp;T"


def test_company_only_when_filled() -> None:
    """A blank company is refused by the CRM, so it is sent only when filled."""
    blank = client_for(snapshot(order={"payment_company": "  "}), deal_settings())
    filled = client_for(
        snapshot(order={"payment_company": 'ТОВ "Ромашка"'}), deal_settings()
    )

    assert "company" not in blank.attributes
    assert filled.attributes["company"] == 'ТОВ "Ромашка"'


def test_4_1_company_from_the_shipping_address() -> None:
    """OpenCart 4.1 has no payment address: the company is the shipping one."""
    order = snapshot(
        order={"payment_company": "", "shipping_company": "ФОП Гончаренко"}
    )

    assert client_for(order, deal_settings()).attributes["company"] == "ФОП Гончаренко"


def test_c7_phone_in_firstname_is_the_phone() -> None:
    """C7: a quick order's phone in firstname is the phone; the person a placeholder."""
    order = snapshot(
        order={"firstname": "067 555 44 33", "lastname": "", "telephone": ""}
    )

    facts = client_for(order, deal_settings())

    assert facts.attributes == {
        "person": NAMELESS_PERSON,
        "phones": ["+380675554433"],
        "email": "olena@example.com",
    }
    assert facts.named is False


def test_c7_empty_name_is_a_placeholder() -> None:
    """A buyer with no name at all is sent as "Покупець"."""
    facts = client_for(
        snapshot(order={"firstname": "", "lastname": None}), deal_settings()
    )

    assert facts.person == NAMELESS_PERSON
    assert facts.phone == "+380671234567"


def test_phone_in_name_and_telephone_both_kept() -> None:
    """A different valid phone typed as the name becomes a second phone."""
    order = snapshot(order={"firstname": "0931112233", "lastname": ""})

    facts = client_for(order, deal_settings())

    assert facts.attributes["phones"] == ["+380671234567", "+380931112233"]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Олена Коваленко", "коваленко олена", True),
        ("Олена  Коваленко", "КОВАЛЕНКО, Олена", True),
        ("Мар'яна Ільченко", "Ільченко Мар’яна", True),
        ("Олена Коваленко", "Петро Коваленко", False),
        ("Олена Коваленко", "Олена", False),
        ("", "", False),
        (None, "Олена", False),
    ],
)
def test_same_person(a: str | None, b: str | None, same: bool) -> None:
    """Names match in any order and case, punctuation aside; empty matches nothing."""
    assert same_person(a, b) is same


BUYERS = [
    crm_client(31, "Олена Коваленко", "+380671234567"),
    crm_client(12, "Петро Коваленко", "067 123 45 67"),
    crm_client(45, "Ірина Бондаренко", "+380671234567"),
    crm_client(27, "Taras Melnyk", "+380 67 123 4567"),
    crm_client(8, "Богдан Кравчук", "0671234567"),
]


def test_phone_and_name_never_merges_different_names() -> None:
    """Five buyers on one phone: only the client with this buyer's name is reused."""
    for buyer in BUYERS:
        first, last = str(buyer["person"]).split()
        facts = client_for(
            snapshot(order={"firstname": last, "lastname": first}), deal_settings()
        )

        assert pick_client(BUYERS, facts, "phone_and_name") == buyer["id"]


def test_phone_and_name_family_stays_apart() -> None:
    """Олена and Петро Коваленко share a phone: a new Петро is no Олена."""
    olena = [crm_client(31, "Олена Коваленко", "+380671234567")]
    facts = client_for(snapshot(order={"firstname": "Петро"}), deal_settings())

    assert pick_client(olena, facts, "phone_and_name") is None


def test_phone_and_name_takes_the_oldest_of_exact_matches() -> None:
    """Two clients with the same name and phone: the oldest (lowest id)."""
    twins = [
        crm_client(40, "Олена Коваленко", "+380671234567"),
        crm_client(9, "коваленко олена", "+380671234567"),
    ]
    facts = client_for(snapshot(), deal_settings())

    assert pick_client(twins, facts, "phone_and_name") == 9


def test_phone_and_name_needs_the_phone_too() -> None:
    """The same name on another phone is another client."""
    other = [crm_client(5, "Олена Коваленко", "+380501112233")]
    facts = client_for(snapshot(), deal_settings())

    assert pick_client(other, facts, "phone_and_name") is None


def test_nameless_buyer_reuses_only_an_unambiguous_client() -> None:
    """A quick order without a name is matched by phone only to one person."""
    facts = client_for(
        snapshot(order={"firstname": "0671234567", "lastname": ""}), deal_settings()
    )
    one = [crm_client(3, "Олена Коваленко", "+380671234567")]

    assert pick_client(one, facts, "phone_and_name") == 3
    assert pick_client(BUYERS, facts, "phone_and_name") is None


def test_phone_match_takes_the_oldest_client() -> None:
    """`phone`: of several clients with the phone, the oldest (lowest id)."""
    facts = client_for(snapshot(), deal_settings())

    assert pick_client(BUYERS, facts, "phone") == 8


def test_never_and_no_phone_reuse_nothing() -> None:
    """`never` makes a new client; so does a buyer without a valid phone."""
    facts = client_for(snapshot(), deal_settings())
    no_phone = client_for(snapshot(order={"telephone": "12345"}), deal_settings())

    assert pick_client(BUYERS, facts, "never") is None
    assert pick_client(BUYERS, no_phone, "phone") is None


def test_candidates_without_id_or_phones_are_skipped() -> None:
    """Odd CRM answers (no id, phones not a list) never match."""
    odd: list[dict[str, Any]] = [
        {"person": "Олена Коваленко", "phones": ["+380671234567"]},
        {"id": 4, "person": "Олена Коваленко", "phones": "+380671234567"},
    ]
    facts = client_for(snapshot(), deal_settings())

    assert pick_client(odd, facts, "phone") is None

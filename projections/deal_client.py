"""The buyer as a CRM client: name, phones, email, company, and who to reuse.

Pure functions of the snapshot and the settings. What cannot be sent as it was
typed (a phone that is no number, an email without `@`) is kept for the deal
comment and reported as a warning, never dropped in silence: the deal is still
created.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from daemon.settings import ClientMatch, DealSettings
from events.snapshot import OrderSnapshot
from projections.catalogue_names import undouble_utf8

# (field, message) for the caller to log with the site and the order bound.
FieldWarning = tuple[str, str]

# The person of a client whose buyer gave no name (quick orders often put the
# phone in the name field instead).
NAMELESS_PERSON = "Покупець"

_NAME_TOKEN = re.compile(r"\w+")
# A name made only of what phone numbers are written with, digits included.
_PHONE_LIKE = re.compile(r"^[\d\s()+\-./]*\d[\d\s()+\-./]*$")


@dataclass(frozen=True)
class ClientFacts:
    """The client of one deal, and what could not go into it as typed."""

    # `client_attributes` of the deal body.
    attributes: dict[str, Any]
    # The buyer's phone in E.164, None when no valid number was given.
    phone: str | None
    # False when the buyer gave no real name and `person` is a placeholder.
    named: bool
    # The region phones were read in, to compare the CRM's phones the same way.
    phone_region: str
    # Lines for the deal comment.
    comment: list[str] = field(default_factory=list)
    warnings: list[FieldWarning] = field(default_factory=list)

    @property
    def person(self) -> str:
        return str(self.attributes["person"])


def client_for(snapshot: OrderSnapshot, deals: DealSettings) -> ClientFacts:
    """The buyer of the order as `client_attributes`, with comment lines.

    A name that is itself a phone number (a quick order's firstname) is no
    name: the client is "Покупець", and that phone is used when the telephone
    column is empty (or added as a second phone when it differs).
    """
    order = snapshot.order
    region = deals.phone_region
    comment: list[str] = []
    warnings: list[FieldWarning] = []

    # Name: a phone typed into the name fields is a phone, not a person. The
    # deal's snapshot comes repaired already; the projection also looks for an
    # existing client with the snapshot as captured, which must match the same.
    name = full_name(
        _undoubled(order.get("firstname")), _undoubled(order.get("lastname"))
    )
    named = bool(name) and not _PHONE_LIKE.match(name)
    typed_phones = [(order.get("telephone") or "").strip()]
    if name and not named:
        typed_phones.append(name)

    phones: list[str] = []
    for index, typed in enumerate(typed_phones):
        number = normalised_phone(typed, region)
        if number is not None:
            if number not in phones:
                phones.append(number)
        elif typed and (index == 0 or not phones):
            comment.append(f"Телефон (як введено): {typed}")
            warnings.append(("telephone", f"{typed!r} is not a valid phone number"))

    attributes: dict[str, Any] = {"person": name if named else NAMELESS_PERSON}
    if phones:
        attributes["phones"] = phones

    email = (order.get("email") or "").strip()
    if email and not _is_dummy(email, deals.dummy_emails):
        if "@" in email:
            attributes["email"] = email
        else:
            comment.append(f"E-mail (як введено): {email}")
            warnings.append(("email", f"{email!r} is not an email address"))

    # A blank company is refused by the CRM: send one only when there is one.
    company = _first(order.get("payment_company"), order.get("shipping_company"))
    if company:
        attributes["company"] = company

    return ClientFacts(
        attributes=attributes,
        phone=phones[0] if phones else None,
        named=named,
        phone_region=region,
        comment=comment,
        warnings=warnings,
    )


def normalised_phone(typed: str | None, region: str) -> str | None:
    """`+380671234567` from any common spelling; None when it is no number.

    Besides what `phonenumbers` reads, the old trunk prefix `8` before a
    Ukrainian number (`8 067 123 45 67`, still typed by some buyers) is read.
    """
    typed = (typed or "").strip()
    if not typed:
        return None
    number = _valid_number(typed, region)
    if number is None and region.upper() == "UA":
        digits = re.sub(r"\D", "", typed)
        if len(digits) == 11 and digits.startswith("80"):
            number = _valid_number(f"+3{digits}", region)
    if number is None:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def same_person(a: str | None, b: str | None) -> bool:
    """The same name in any order and case: `Олена Коваленко` = `коваленко олена`.

    Punctuation is ignored; an empty name matches nothing, not even another
    empty one.
    """
    tokens_a, tokens_b = _name_tokens(a), _name_tokens(b)
    return bool(tokens_a) and tokens_a == tokens_b


def pick_client(
    candidates: list[dict[str, Any]], facts: ClientFacts, match: ClientMatch
) -> int | None:
    """The id of a CRM client (found by phone) to reuse for this buyer, or None.

    - `never`: None, a new client every time.
    - `phone`: any client with the buyer's phone; of several, the oldest
      (lowest id), which is the one managers have worked with longest.
    - `phone_and_name`: a client with the phone and the same name (`same_person`);
      of several, the oldest. A family sharing one phone stays apart. A buyer
      who gave no name is matched on the phone only when every client with that
      phone is one and the same person: a wrong merge is worse than a duplicate.
    """
    if match == "never" or facts.phone is None:
        return None

    with_phone = [
        candidate
        for candidate in candidates
        if isinstance(candidate.get("id"), int)
        and facts.phone in _candidate_phones(candidate, facts.phone_region)
    ]
    if match == "phone_and_name":
        if facts.named:
            with_phone = [
                candidate
                for candidate in with_phone
                if same_person(_text(candidate.get("person")), facts.person)
            ]
        elif not _one_person(with_phone):
            return None
    if not with_phone:
        return None

    return min(int(candidate["id"]) for candidate in with_phone)


def full_name(first: str | None, last: str | None) -> str:
    """`first last` with blanks left out."""
    return " ".join(part.strip() for part in (first, last) if part and part.strip())


def phone_search_term(phone: str) -> str:
    """What to look a normalised phone up by in the CRM: its national number.

    A card a manager typed by hand holds `067 123 45 67` or `0671234567` as
    often as `+380671234567`; the national digits (`671234567`) are inside
    every one of them. `pick_client` then compares whole numbers.
    """
    number = phonenumbers.parse(phone)
    return phonenumbers.national_significant_number(number)


def _valid_number(typed: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _is_dummy(email: str, patterns: tuple[str, ...]) -> bool:
    folded = email.casefold()
    return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in patterns)


def _name_tokens(name: str | None) -> Counter[str]:
    folded = unicodedata.normalize("NFKC", name or "").casefold()
    return Counter(_NAME_TOKEN.findall(folded))


def _candidate_phones(candidate: dict[str, Any], region: str) -> set[str]:
    phones = candidate.get("phones")
    if not isinstance(phones, list):
        return set()
    normalised = (normalised_phone(_text(phone), region) for phone in phones)
    return {phone for phone in normalised if phone is not None}


def _one_person(candidates: list[dict[str, Any]]) -> bool:
    persons = [_text(candidate.get("person")) for candidate in candidates]
    return all(same_person(person, persons[0]) for person in persons)


def _undoubled(text: str | None) -> str | None:
    """Text stored double-encoded by an old shop, decoded; any other as it is."""
    return (undouble_utf8(text) or text) if text else text


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _first(*values: str | None) -> str:
    return next((value.strip() for value in values if value and value.strip()), "")

"""Where an order goes and how it is paid, and the CRM custom fields that say so.

`delivery_for` reads country, region, city, branch, address, recipient and the
two methods from wherever the shop keeps them (OpenCart 3.0 or 4.1 columns, the
payment address when nothing needed shipping, the site's own queries), in the
managers' language. `custom_fields_for` turns those facts, the marker and the
site's own map into the deal's `custom_fields`.

Custom field columns (`custom_field`, `payment_custom_field`,
`shipping_custom_field`) come byte for byte from the shop: JSON (PHP
`serialize()` before OpenCart 2.1) keyed by `custom_field_id`, with values
HTML-escaped. A column that cannot be read whole gives what can be read and a
warning; it never stops the deal.
"""

from __future__ import annotations

import functools
import gettext
import html
import json
import re
from dataclasses import dataclass
from typing import Any

import pycountry

from daemon.settings import DealSettings, SiteSettings
from events.snapshot import OrderSnapshot, Row
from events.types import order_stream
from projections.catalogue_names import CatalogueNames
from projections.deal_client import FieldWarning, full_name, same_person

# A custom field's answer: text, a chosen value id, or ticked ids (checkbox).
_Answer = str | list[str]

# `"2": "text"` pairs of a JSON object, for reading what a cut-off column holds.
_JSON_PAIR = re.compile(r'"(\d+)"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Delivery:
    """Where and how the order travels, in the managers' language; "" = unknown."""

    country: str = ""
    region: str = ""
    city: str = ""
    branch: str = ""
    address: str = ""
    shipping_method: str = ""
    payment_method: str = ""
    # The shipping name when it is not the buyer's.
    recipient: str = ""
    warnings: tuple[FieldWarning, ...] = ()


def delivery_for(
    snapshot: OrderSnapshot,
    site: SiteSettings,
    deals: DealSettings,
    names: CatalogueNames,
) -> Delivery:
    """The delivery facts of one order (see `SiteSettings.branch_from`, `city_from`)."""
    order = snapshot.order
    answers = _CustomFieldAnswers(snapshot, names)
    warnings: list[FieldWarning] = []

    # OpenCart 3.0 leaves shipping_* empty when nothing needed shipping.
    side = "shipping_" if _has_address(order, "shipping_") else "payment_"
    address_1 = _text(order.get(f"{side}address_1"))
    address_2 = _text(order.get(f"{side}address_2"))
    city_column = _text(order.get(f"{side}city"))
    before_colon, _, after_colon = (part.strip() for part in city_column.partition(":"))

    # The branch, from where this site keeps it.
    if site.branch_from == "shipping_address_1":
        branch = address_1
    elif site.branch_from == "city_colon_branch":
        branch = after_colon
    else:
        branch = _sourced(site.branch_from, snapshot, answers, warnings)

    # The city likewise; a "city : branch" column holds it before the colon.
    if "city_colon_branch" in (site.city_from, site.branch_from):
        city_column = before_colon
    city = city_column
    if site.city_from not in ("shipping_city", "city_colon_branch"):
        # A module's table or a custom field with no city: the address's own.
        city = _sourced(site.city_from, snapshot, answers, warnings) or city_column

    # Address line 1 is sent once: as the branch when a branch field takes it.
    if site.branch_from == "shipping_address_1" and deals.custom_fields.branch:
        address = address_2
    else:
        address = _joined(address_1, address_2)

    buyer = full_name(order.get("firstname"), order.get("lastname"))
    shipped_to = full_name(order.get(f"{side}firstname"), order.get(f"{side}lastname"))
    recipient = "" if not buyer or same_person(shipped_to, buyer) else shipped_to

    glossary = _Glossary(deals.glossary)
    return Delivery(
        country=_country(snapshot, side, deals.language, glossary),
        region=_region(snapshot, side, deals.language, glossary),
        city=glossary(city),
        branch=glossary(branch),
        address=address,
        shipping_method=_method(order, "shipping", deals, warnings),
        payment_method=_method(order, "payment", deals, warnings),
        recipient=recipient,
        warnings=(*warnings, *answers.warnings),
    )


def custom_fields_for(
    snapshot: OrderSnapshot,
    site: SiteSettings,
    deals: DealSettings,
    delivery: Delivery,
    names: CatalogueNames,
) -> tuple[list[dict[str, str]], list[FieldWarning]]:
    """The deal's `custom_fields` and the warnings met while reading them.

    In order: the marker, the delivery facts, the buyer's comment and the order
    number (each to its field in `deals.custom_fields`), then the site's own
    map. Empty values are left out; when two facts fill one CRM field the
    first wins and the other is reported. Warnings `delivery` already holds are
    not repeated.
    """
    fields = deals.custom_fields
    marker = order_stream(site.name, snapshot.order_id, snapshot.kind)
    facts: list[tuple[str, str | None, str]] = [
        ("marker", fields.marker, marker),
        ("shipping_method", fields.shipping_method, delivery.shipping_method),
        ("payment_method", fields.payment_method, delivery.payment_method),
        ("country", fields.country, delivery.country),
        ("region", fields.region, delivery.region),
        ("city", fields.city, delivery.city),
        ("branch", fields.branch, delivery.branch),
        ("address", fields.address, delivery.address),
        ("recipient", fields.recipient, delivery.recipient),
        ("comment", fields.comment, _text(snapshot.order.get("comment"))),
        ("order_number", fields.order_number, str(snapshot.order_id)),
    ]

    # The site's own map: custom field answers and order columns.
    answers = _CustomFieldAnswers(snapshot, names)
    for key, name in site.custom_fields.items():
        column, _, detail = key.partition(".")
        if column == "order":
            value = _text(snapshot.order.get(detail))
        else:
            value = answers.first(detail, (column.removesuffix("custom_field"),))
        facts.append((key, name, value))

    result: list[dict[str, str]] = []
    filled_by: dict[str, str] = {}
    warnings = [w for w in answers.warnings if w not in delivery.warnings]
    for fact, crm_field, value in facts:
        if not crm_field or not value.strip():
            continue
        if crm_field in filled_by:
            warnings.append(
                (fact, f"CRM field {crm_field} already holds {filled_by[crm_field]}")
            )
            continue
        filled_by[crm_field] = fact
        result.append({"name": crm_field, "value": value.strip()})

    return result, warnings


def delivery_notes(
    snapshot: OrderSnapshot,
    site: SiteSettings,
    deals: DealSettings,
    delivery: Delivery,
) -> list[str]:
    """Deal comment lines for what a manager needs and no CRM field carries.

    The recipient, the branch (unless it is address line 1, which the address
    field then carries) and the buyer's comment.
    """
    fields = deals.custom_fields
    notes: list[str] = []
    if delivery.recipient and not fields.recipient:
        notes.append(f"Отримувач: {delivery.recipient}")
    branch_in_address = site.branch_from == "shipping_address_1"
    if delivery.branch and not fields.branch and not branch_in_address:
        notes.append(f"Відділення: {delivery.branch}")
    comment = _text(snapshot.order.get("comment"))
    if comment and not fields.comment:
        notes.append(f"Коментар покупця: {comment}")

    return notes


class _CustomFieldAnswers:
    """The order's custom field columns, read once, answers as labels."""

    def __init__(self, snapshot: OrderSnapshot, names: CatalogueNames) -> None:
        self._order = snapshot.order
        self._values = snapshot.catalogue.custom_field_values
        self._language_id = names.language_id
        self._columns: dict[str, dict[str, _Answer]] = {}
        self.warnings: list[FieldWarning] = []

    def first(self, field_id: str, prefixes: tuple[str, ...]) -> str:
        """The first non-empty answer to the field in `<prefix>custom_field`."""
        for prefix in prefixes:
            answer = self._column(f"{prefix}custom_field").get(field_id)
            text = self._label(answer) if answer is not None else ""
            if text:
                return text
        return ""

    def _column(self, column: str) -> dict[str, _Answer]:
        if column not in self._columns:
            raw = (self._order.get(column) or "").strip()
            try:
                self._columns[column] = _answers(raw)
            except ValueError as exc:
                self.warnings.append((column, str(exc)))
                self._columns[column] = _salvaged(raw)
        return self._columns[column]

    def _label(self, answer: _Answer) -> str:
        """A chosen value's label in the managers' language; text as typed.

        The snapshot does not say a field's type: an answer that is the id of
        a known custom field value is taken as that value.
        """
        if isinstance(answer, list):
            return ", ".join(filter(None, (self._label(item) for item in answer)))
        text = answer.strip()
        labels = self._values.get(int(text), {}) if _is_id(text) else {}
        label = labels.get(self._language_id or -1) if labels else None
        if label is None and labels:
            label = next(iter(labels.values()))
        return (label or text).strip()


def _answers(raw: str) -> dict[str, _Answer]:
    """A custom field column as {custom_field_id: answer}; ValueError if unread."""
    if raw in ("", "[]", "{}", "a:0:{}", "N;"):
        return {}
    if raw.startswith(("{", "[")):
        try:
            decoded: object = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at {exc.pos})") from exc
    elif raw.startswith("a:"):
        try:
            decoded, end = _php_value(raw.encode("utf-8"), 0)
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise ValueError("not a readable PHP serialize() array") from exc
        if end != len(raw.encode("utf-8")):
            raise ValueError("text after the PHP serialize() array")
    else:
        raise ValueError("neither JSON nor PHP serialize()")
    if not isinstance(decoded, dict):
        raise ValueError("not an object keyed by custom_field_id")

    answers: dict[str, _Answer] = {}
    for key, value in decoded.items():
        if isinstance(value, list):
            answers[str(key)] = [_answer_text(item) for item in value]
        else:
            answers[str(key)] = _answer_text(value)
    return answers


def _answer_text(value: object) -> str:
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return html.unescape(str(value))


def _salvaged(raw: str) -> dict[str, _Answer]:
    """The complete `"id": "text"` pairs of a broken JSON column (a cut one)."""
    answers: dict[str, _Answer] = {}
    for key, value in _JSON_PAIR.findall(raw):
        try:
            answers[key] = html.unescape(json.loads(f'"{value}"'))
        except json.JSONDecodeError:
            continue
    return answers


def _php_value(data: bytes, pos: int) -> tuple[object, int]:
    """One value of PHP `serialize()` at `pos`, and where the next one starts."""
    if data[pos : pos + 2] == b"N;":
        return None, pos + 2
    tag, colon = data[pos : pos + 1], data[pos + 1 : pos + 2]
    if colon != b":":
        raise ValueError(f"unexpected {data[pos : pos + 2]!r}")
    if tag in (b"i", b"b", b"d"):
        end = data.index(b";", pos)
        number = data[pos + 2 : end].decode("ascii")
        return (float(number) if tag == b"d" else int(number)), end + 1
    if tag == b"s":
        # s:<byte length>:"<bytes>";
        length_end = data.index(b":", pos + 2)
        start = length_end + 2
        end = start + int(data[pos + 2 : length_end])
        if data[start - 1 : start] != b'"' or data[end : end + 2] != b'";':
            raise ValueError("string length does not match")
        return data[start:end].decode("utf-8"), end + 2
    if tag == b"a":
        # a:<count>:{<key><value>...}
        count_end = data.index(b":", pos + 2)
        count = int(data[pos + 2 : count_end])
        if data[count_end + 1 : count_end + 2] != b"{":
            raise ValueError("array not opened")
        pos = count_end + 2
        items: dict[object, object] = {}
        for _ in range(count):
            key, pos = _php_value(data, pos)
            items[key], pos = _php_value(data, pos)
        if data[pos : pos + 1] != b"}":
            raise ValueError("array not closed")
        # A checkbox's ticked ids are an array keyed 0, 1, ...: a list.
        if list(items) == list(range(count)):
            return list(items.values()), pos + 1
        return items, pos + 1
    raise ValueError(f"unknown type {tag!r}")


def _sourced(
    source: str,
    snapshot: OrderSnapshot,
    answers: _CustomFieldAnswers,
    warnings: list[FieldWarning],
) -> str:
    """A fact kept in `custom_field:<id>` or `query:<name>.<column>`; "" if none."""
    kind, _, detail = source.partition(":")
    if kind == "custom_field":
        return answers.first(detail, ("shipping_", "payment_", ""))
    if kind == "query":
        return _query_value(snapshot, detail, warnings)
    return ""


def _query_value(
    snapshot: OrderSnapshot, source: str, warnings: list[FieldWarning]
) -> str:
    """`name.column` of the first row the site's query returned for this order."""
    name, _, column = source.partition(".")
    rows: list[Row] = [
        row
        for row in snapshot.extras.get(name, [])
        if row.get("order_id") in (None, str(snapshot.order_id))
    ]
    if not rows:
        return ""
    if column not in rows[0]:
        warnings.append((f"query:{source}", f"query {name!r} returns no {column!r}"))
        return ""
    return _text(rows[0][column])


def _method(
    order: Row, kind: str, deals: DealSettings, warnings: list[FieldWarning]
) -> str:
    """A method in Ukrainian through `deals.methods`, else the title stored.

    From OpenCart 4.0.2 the `*_method` column holds JSON with the title and
    the code, and there is no `*_code` column. A code is looked up whole
    (`novaposhta.department`), then by its extension (`cod` for `cod.cod`).
    """
    stored = (order.get(f"{kind}_method") or "").strip()
    title, code = stored, _text(order.get(f"{kind}_code"))
    if stored.startswith("{"):
        try:
            method = json.loads(stored)
        except json.JSONDecodeError:
            warnings.append((f"{kind}_method", "not valid JSON; sent as stored"))
            method = None
        if isinstance(method, dict):
            title = str(method.get("name") or method.get("title") or "")
            code = str(method.get("code") or code)

    for key in (code, code.partition(".")[0]):
        if key and key in deals.methods:
            return deals.methods[key]
    return html.unescape(title).strip()


def _country(
    snapshot: OrderSnapshot, side: str, language: str, glossary: _Glossary
) -> str:
    """The country in `language` by its ISO code, else the stored name."""
    order = snapshot.order
    country_id = _text(order.get(f"{side}country_id"))
    code = (
        snapshot.catalogue.country_codes.get(int(country_id))
        if _is_id(country_id)
        else None
    )
    stored = _text(order.get(f"{side}country"))
    if code:
        name = _country_name(code, language)
        if name:
            return name
    if not stored:
        return ""
    if stored in glossary:
        return glossary(stored)
    # 3.0 stores the English name of its `country` table ("Ukraine").
    try:
        found = pycountry.countries.lookup(stored)
    except LookupError:
        return stored
    return _country_name(found.alpha_2, language) or stored


def _region(
    snapshot: OrderSnapshot, side: str, language: str, glossary: _Glossary
) -> str:
    """The region (OpenCart's zone) in `language`, through ISO 3166-2 names.

    OpenCart stores zone names in its own romanisation ("L'vivs'ka Oblast'",
    "Lvivska" in 4.1); ISO's are close enough to match once apostrophes and
    the word "oblast" are set aside. The glossary wins over both.
    """
    stored = _text(snapshot.order.get(f"{side}zone"))
    if not stored or stored in glossary:
        return glossary(stored)
    country_id = _text(snapshot.order.get(f"{side}country_id"))
    code = (
        snapshot.catalogue.country_codes.get(int(country_id))
        if _is_id(country_id)
        else None
    )
    if not code:
        return stored
    return _region_name(code, _region_key(stored), language) or stored


def _region_key(name: str) -> str:
    plain = re.sub(r"['’ʼ`]", "", name.casefold())
    return re.sub(r"\b(oblast|oblast'|region)\b|\W", "", plain)


@functools.lru_cache(maxsize=512)
def _region_name(alpha_2: str, key: str, language: str) -> str | None:
    found = pycountry.subdivisions.get(  # type: ignore[no-untyped-call]
        country_code=alpha_2.upper()
    )
    for subdivision in found or []:
        if _region_key(subdivision.name) == key:
            base = language.partition("-")[0].lower()
            translations = gettext.translation(
                "iso3166-2", pycountry.LOCALES_DIR, languages=[base], fallback=True
            )
            return translations.gettext(subdivision.name)
    return None


@functools.lru_cache(maxsize=512)
def _country_name(alpha_2: str, language: str) -> str | None:
    country = pycountry.countries.get(alpha_2=alpha_2.upper())
    if country is None:
        return None
    return _translations(language).gettext(country.name)


@functools.lru_cache(maxsize=8)
def _translations(language: str) -> gettext.NullTranslations:
    # "uk-ua" -> "uk"; a language without translations keeps English names.
    base = language.partition("-")[0].lower()
    return gettext.translation(
        "iso3166-1", pycountry.LOCALES_DIR, languages=[base], fallback=True
    )


class _Glossary:
    """Text as shops store it to its Ukrainian name, exact or in any case."""

    def __init__(self, entries: dict[str, str]) -> None:
        self._exact = entries
        self._folded = {key.strip().casefold(): value for key, value in entries.items()}

    def __contains__(self, text: str) -> bool:
        return text in self._exact or text.strip().casefold() in self._folded

    def __call__(self, text: str) -> str:
        text = text.strip()
        return self._exact.get(text) or self._folded.get(text.casefold(), text)


def _has_address(order: Row, side: str) -> bool:
    return any(
        _text(order.get(f"{side}{column}"))
        for column in ("address_1", "city", "country", "firstname")
    )


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _joined(*parts: str) -> str:
    return ", ".join(part for part in parts if part)

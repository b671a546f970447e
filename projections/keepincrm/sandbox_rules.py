"""What the sandbox accepts in a deal body, checked as strictly as a real CRM would.

A body is parsed into drafts (`DealDraft`, `DealChanges`) or refused with
`InvalidRequest`, which carries the errors keyed by the path of the field
(`jobs_attributes[0].product_attributes.price`) as the CRM's 422 answer does.

Where the API notes report a disagreement (a flat `price` on a line was
rejected by one integrator and accepted by another), the sandbox takes the
strict side: it is there to catch our own mistakes before a live account does.
By the same choice it refuses a deal naming both `client_id` and
`client_attributes`, and a client with neither a person nor a company.

A deal's `result` is what the read shape of `GET /agreements/{id}` shows:
null (open), "successful" or "failed". The sandbox takes it on create and on
PATCH and refuses any other value; that the API takes it there at all is a
*guess* (no source shows how a deal is closed), kept in the client's
`close_as_failed_fields`.

Money is `Decimal` from the body to the answer: `decode_json` reads every JSON
number with a fraction or an exponent as a `Decimal` holding the digits sent
(`3629.60` stays `Decimal("3629.60")`), and `encode_json` writes a `Decimal`
back as a bare JSON number with those same digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

DISCOUNT_KINDS: Final = frozenset({"absolute_discount", "percent_discount"})
# A deal's `result` besides null (still open), as the read shape shows it.
DEAL_RESULTS: Final = frozenset({"successful", "failed"})

# Deal fields kept as columns; each maps to how its value is checked.
_TEXT_FIELDS: Final = ("comment", "currency", "ordered_at")
_NUMBER_FIELDS: Final = ("total", "discount")
_ID_FIELDS: Final = (
    "source_id",
    "main_responsible_id",
    "funnel_id",
    "stage_id",
)
_DEAL_FIELDS: Final = frozenset(
    {
        "title",
        "discount_kind",
        "result",
        "client_id",
        "client_attributes",
        "jobs_attributes",
        "custom_fields",
        *_TEXT_FIELDS,
        *_NUMBER_FIELDS,
        *_ID_FIELDS,
    }
)
_LINE_FIELDS: Final = frozenset(
    {"id", "_destroy", "title", "amount", "product_attributes"}
)
_TRUE_FLAGS: Final = (True, 1, "1", "true")

# Strict JSON (NaN, Infinity and bad UTF-8 are malformed); fractions as Decimal.
_DECODER: Final = msgspec.json.Decoder(float_hook=Decimal)
# Decimals out as bare numbers, digit for digit; text stays UTF-8, not escaped.
_ENCODER: Final = msgspec.json.Encoder(decimal_format="number")


def decode_json(data: bytes | str) -> Any:
    """JSON with its fractional numbers as exact `Decimal`s (integers stay `int`).

    Raises `ValueError` (a `msgspec.DecodeError`) on malformed JSON.
    """
    return _DECODER.decode(data)


def encode_json(value: Any) -> bytes:
    """`value` as UTF-8 JSON, each `Decimal` a JSON number with its own digits."""
    return _ENCODER.encode(value)


def parse_number(value: Any) -> Decimal | None:
    """An exact amount from a JSON number or a string holding one; None otherwise.

    Rails reads both spellings. Booleans and non-finite values are not amounts.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # Not from a body (decode_json gives Decimals): its shortest spelling.
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


class InvalidRequest(Exception):
    """A body the CRM would refuse with 422; `errors` maps field paths to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k} {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class LineDraft:
    """A new deal line (`jobs_attributes[]` without an `id`)."""

    # Where the line was in the body, for naming it in a refusal.
    path: str
    title: str | None
    amount: Decimal
    sku: str | None
    product_title: str | None
    price: Decimal | None
    currency: str | None
    # Keys the CRM has no known column for (e.g. a per-line `comment`): kept
    # and shown back, so a person can see what we sent.
    extra: dict[str, Any]


@dataclass(frozen=True)
class LineEdit:
    """A change to an existing line: only the columns that were sent."""

    line_id: int
    values: dict[str, Any]
    extra: dict[str, Any]


@dataclass(frozen=True)
class ClientDraft:
    """A new client from `client_attributes`."""

    person: str | None
    company: str | None
    email: str | None
    phones: list[str]
    lead: bool
    source_id: int | None
    status_id: int | None
    custom_fields: list[tuple[str, str | None]]


@dataclass(frozen=True)
class DealDraft:
    """A deal as `POST /agreements` received it, checked."""

    fields: dict[str, Any]
    client_id: int | None
    client: ClientDraft | None
    lines: list[LineDraft]
    custom_fields: list[tuple[str, str | None]]
    unpermitted: dict[str, Any]


@dataclass(frozen=True)
class DealChanges:
    """What a `PATCH /agreements/{id}` asks to change, checked."""

    fields: dict[str, Any]
    client_id: int | None = None
    client: ClientDraft | None = None
    custom_fields: list[tuple[str, str | None]] | None = None
    new_lines: list[LineDraft] = field(default_factory=list)
    line_edits: list[LineEdit] = field(default_factory=list)
    removed_line_ids: list[int] = field(default_factory=list)


def parse_new_deal(body: Any) -> DealDraft:
    """Check a create body; raise `InvalidRequest` with every fault found."""
    errors = _Errors()
    if not isinstance(body, dict):
        errors.add("base", "the body must be a JSON object")
        raise InvalidRequest(errors.by_field)

    if not _is_text(body.get("title")):
        errors.add("title", "can't be blank")
    fields = _deal_fields(body, errors)

    client_id = _optional_id(body, "client_id", "client_id", errors)
    client = None
    if "client_attributes" in body:
        client = _client(body["client_attributes"], "client_attributes", errors)
    if client_id is not None and client is not None:
        errors.add("client_id", "send either client_id or client_attributes")

    lines = []
    for index, item in enumerate(_list(body, "jobs_attributes", errors)):
        path = f"jobs_attributes[{index}]"
        if isinstance(item, dict) and ("id" in item or "_destroy" in item):
            errors.add(f"{path}.id", "a new deal has no lines to change yet")
        elif (line := _new_line(item, path, errors)) is not None:
            lines.append(line)

    custom_fields = _custom_fields(body.get("custom_fields"), "custom_fields", errors)
    errors.raise_if_any()
    return DealDraft(
        fields=fields,
        client_id=client_id,
        client=client,
        lines=lines,
        custom_fields=custom_fields or [],
        unpermitted={k: v for k, v in body.items() if k not in _DEAL_FIELDS},
    )


def parse_deal_changes(body: Any) -> DealChanges:
    """Check a PATCH body; lines follow Rails nested attributes (*schema* grade).

    An item with `id` changes that line, with `id` and `_destroy` removes it,
    without `id` adds a line.
    """
    errors = _Errors()
    if not isinstance(body, dict):
        errors.add("base", "the body must be a JSON object")
        raise InvalidRequest(errors.by_field)

    if "title" in body and not _is_text(body["title"]):
        errors.add("title", "can't be blank")
    fields = _deal_fields(body, errors)
    client_id = _optional_id(body, "client_id", "client_id", errors)
    client = None
    if "client_attributes" in body:
        client = _client(body["client_attributes"], "client_attributes", errors)

    changes = DealChanges(
        fields=fields,
        client_id=client_id,
        client=client,
        custom_fields=_custom_fields(
            body.get("custom_fields"), "custom_fields", errors
        ),
    )
    for index, item in enumerate(_list(body, "jobs_attributes", errors)):
        path = f"jobs_attributes[{index}]"
        if not isinstance(item, dict) or "id" not in item:
            if (line := _new_line(item, path, errors)) is not None:
                changes.new_lines.append(line)
            continue
        line_id = _optional_id(item, "id", f"{path}.id", errors)
        if line_id is None:
            continue
        if item.get("_destroy") in _TRUE_FLAGS:
            changes.removed_line_ids.append(line_id)
        else:
            values, extra = _line_values(item, path, errors, partial=True)
            changes.line_edits.append(LineEdit(line_id, values, extra))

    errors.raise_if_any()
    return changes


def parse_comment(body: Any) -> str:
    """The note of a `POST /agreements/{id}/comments` body, kept as sent (HTML too).

    Refuses a body without a note, or whose note is not text or is blank.
    """
    errors = _Errors()
    if not isinstance(body, dict):
        errors.add("base", "the body must be a JSON object")
        raise InvalidRequest(errors.by_field)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        errors.add("note", "must be text")
    elif not _is_text(note):
        errors.add("note", "can't be blank")
    errors.raise_if_any()
    assert isinstance(note, str)
    return note


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_field.setdefault(path, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_field:
            raise InvalidRequest(self.by_field)


def _deal_fields(body: dict[str, Any], errors: _Errors) -> dict[str, Any]:
    """The deal's own columns present in `body`, checked."""
    fields: dict[str, Any] = {}
    if _is_text(body.get("title")):
        fields["title"] = body["title"].strip()
    for name in _TEXT_FIELDS:
        if name in body:
            fields[name] = _optional_text(body, name, name, errors)
    for name in _NUMBER_FIELDS:
        if name in body:
            fields[name] = _optional_number(body, name, name, errors)
    for name in _ID_FIELDS:
        if name in body:
            fields[name] = _optional_id(body, name, name, errors)
    if "discount_kind" in body:
        fields["discount_kind"] = _discount_kind(body, "discount_kind", errors)
    if "result" in body:
        fields["result"] = _deal_result(body, errors)
    return fields


def _new_line(item: Any, path: str, errors: _Errors) -> LineDraft | None:
    if not isinstance(item, dict):
        errors.add(path, "must be an object")
        return None
    values, extra = _line_values(item, path, errors, partial=False)
    return LineDraft(
        path=path,
        title=values.get("title"),
        amount=values.get("amount", Decimal(0)),
        sku=values.get("sku"),
        product_title=values.get("product_title"),
        price=values.get("price"),
        currency=values.get("currency"),
        extra=extra,
    )


def _line_values(
    item: dict[str, Any], path: str, errors: _Errors, *, partial: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A line's columns and its extra keys; `partial` for a change to a line."""
    values: dict[str, Any] = {}
    if "title" in item:
        values["title"] = _optional_text(item, "title", f"{path}.title", errors)
    if "amount" in item or not partial:
        amount = parse_number(item.get("amount"))
        if amount is None or amount <= 0:
            errors.add(f"{path}.amount", "must be a number greater than 0")
        else:
            values["amount"] = amount
    # Sandbox choice: a flat price was reported rejected by one integrator.
    if "price" in item:
        errors.add(
            f"{path}.price", "is not a line field; send product_attributes.price"
        )
    if "discount_kind" in item:
        _discount_kind(item, "discount_kind", errors, f"{path}.discount_kind")

    product = item.get("product_attributes")
    if isinstance(product, dict):
        product_path = f"{path}.product_attributes"
        for key, column in (("sku", "sku"), ("title", "product_title")):
            if key in product:
                values[column] = _optional_text(
                    product, key, f"{product_path}.{key}", errors
                )
        if "price" in product:
            values["price"] = _optional_number(
                product, "price", f"{product_path}.price", errors
            )
        if "currency" in product:
            values["currency"] = _optional_text(
                product, "currency", f"{product_path}.currency", errors
            )
    elif product is not None or not partial:
        errors.add(f"{path}.product_attributes", "can't be blank")

    extra = {k: v for k, v in item.items() if k not in _LINE_FIELDS and k != "price"}
    return values, extra


def _client(value: Any, path: str, errors: _Errors) -> ClientDraft | None:
    if not isinstance(value, dict):
        errors.add(path, "must be an object")
        return None
    # Reported: a blank company string is refused; an absent one is fine.
    if "company" in value and not _is_text(value["company"]):
        errors.add(f"{path}.company", "can't be blank")
    person = _optional_text(value, "person", f"{path}.person", errors)
    company = value.get("company") if _is_text(value.get("company")) else None
    if not person and "company" not in value:
        errors.add(f"{path}.person", "can't be blank")

    phones = value.get("phones", [])
    if not isinstance(phones, list) or not all(isinstance(p, str) for p in phones):
        errors.add(f"{path}.phones", "must be a list of strings")
        phones = []
    lead = value.get("lead", False)
    if not isinstance(lead, bool):
        errors.add(f"{path}.lead", "must be true or false")

    return ClientDraft(
        person=person,
        company=company,
        email=_optional_text(value, "email", f"{path}.email", errors),
        phones=phones,
        lead=lead is True,
        source_id=_optional_id(value, "source_id", f"{path}.source_id", errors),
        status_id=_optional_id(value, "status_id", f"{path}.status_id", errors),
        custom_fields=_custom_fields(
            value.get("custom_fields"), f"{path}.custom_fields", errors
        )
        or [],
    )


def _custom_fields(
    value: Any, path: str, errors: _Errors
) -> list[tuple[str, str | None]] | None:
    """`[{name, value}]` as pairs; values are kept as text, as a form would."""
    if value is None:
        return None
    if not isinstance(value, list):
        errors.add(path, "must be a list of {name, value}")
        return None
    pairs = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not _is_text(entry.get("name")):
            errors.add(f"{path}[{index}].name", "can't be blank")
            continue
        raw = entry.get("value")
        if isinstance(raw, dict | list):
            errors.add(f"{path}[{index}].value", "must be text or a number")
            continue
        text = None if raw is None else _as_text(raw)
        pairs.append((entry["name"], text))
    return pairs


def _list(body: dict[str, Any], key: str, errors: _Errors) -> list[Any]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(key, "must be a list")
        return []
    return value


def _discount_kind(
    body: dict[str, Any], key: str, errors: _Errors, path: str | None = None
) -> str | None:
    value = body.get(key)
    if value is not None and (
        not isinstance(value, str) or value not in DISCOUNT_KINDS
    ):
        errors.add(path or key, f"must be one of {', '.join(sorted(DISCOUNT_KINDS))}")
        return None
    return value


def _deal_result(body: dict[str, Any], errors: _Errors) -> str | None:
    value = body.get("result")
    # A list or an object is unhashable: test the type before the set.
    if value is not None and (not isinstance(value, str) or value not in DEAL_RESULTS):
        errors.add(
            "result", f"must be null or one of {', '.join(sorted(DEAL_RESULTS))}"
        )
        return None
    return value


def _optional_text(
    body: dict[str, Any], key: str, path: str, errors: _Errors
) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        errors.add(path, "must be text")
        return None
    return value


def _optional_number(
    body: dict[str, Any], key: str, path: str, errors: _Errors
) -> Decimal | None:
    value = body.get(key)
    if value is None:
        return None
    number = parse_number(value)
    if number is None:
        errors.add(path, "must be a number")
    return number


def _optional_id(
    body: dict[str, Any], key: str, path: str, errors: _Errors
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        errors.add(path, "must be a positive integer id")
        return None
    return value


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

"""A local stand-in for the KeepinCRM API: the subset ocsync uses, kept in SQLite.

Routes (under `/v1`, each behind the `X-Auth-Token` check):

    POST  /agreements          create a deal (checked by `sandbox_rules`), 201 {id, ...}
    GET   /agreements          paged, `q[title_eq]`, `q[custom_fields_jcont][<name>]`
    GET   /agreements/{id}     the read shape of the API notes
    PATCH /agreements/{id}     fields, and lines Rails-style (*schema* grade);
                               `ignore_price_list` prices its lines as on create
    POST  /agreements/{id}/comments   `{"note"}`, 201 {id, note, created_at}
    GET   /materials           paged, `q[sku_eq]`; seeded from a catalogue file
    GET   /clients             paged, `q[trigram_idx_cont]` (a phone, or part of one)

Lists answer 25 items a page whatever `per_page` says (honouring it is a *guess*).
A filter the sandbox does not model answers 400 rather than being ignored, so a
test never passes on a filter that did nothing.

Where the API notes are silent, the sandbox picks a side, and says so here:
a deal sent without `total` gets the sum of its lines; line keys with no known
field (a per-line `comment`) are stored and shown back in `jobs`; custom field
values are kept as text, filtered by exact value under the name as sent, and
merged by name on PATCH; a PATCH naming a line the deal lacks answers 404, as
Rails would; lists run oldest first; stage, funnel and source names are
placeholders (no dictionaries are kept), but `stage.id` is the `stage_id` last
sent; `result` (null, "successful" or "failed") is taken on create and PATCH
like any scalar field (*guess*: see the client's `close_as_failed_fields`); a
deal's comments are shown in its read shape as `comments` [{id, note,
created_at}], oldest first (the real read shape has no such list that we know
of), and adding one leaves the deal's `updated_at` as it was; a blank note is
refused with 422. What the notes report is modelled as reported: re-sent
`client_attributes` make a new client, lines re-sent without `id` are added
again.

Amounts are `Decimal` throughout, never floats: read from the body digit for
digit (`sandbox_rules.decode_json`), kept as text in the file, and answered as
JSON numbers spelt as they were sent (a price sent as 3629.60 reads back as
3629.60, an amount sent as 2 as 2). Sandbox choice: a total made of its lines
is rounded to kopecks, halves away from zero (Ruby BigDecimal's default mode).

Fault injection (5xx, timeouts after storing, 429 bursts, dropped connections)
belongs in a middleware appended to `app.middlewares` before the app starts:
it then runs after the token check and around the handlers, which know nothing
of it.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from aiohttp import web
from yarl import URL

from projections.keepincrm.sandbox_faults import FaultPlan, install_faults
from projections.keepincrm.sandbox_rules import (
    DealChanges,
    DealDraft,
    InvalidRequest,
    LineDraft,
    decode_json,
    encode_json,
    parse_comment,
    parse_deal_changes,
    parse_new_deal,
    parse_number,
)
from projections.keepincrm.sandbox_store import SandboxStore

UnknownArticle = Literal["create", "refuse"]
PAGE_SIZE: Final = 25
API_PREFIX: Final = "/v1"
# A total made of its lines is kept to kopecks.
_KOPECK: Final = Decimal("0.01")

_LOG = structlog.get_logger("ocsync.keepincrm.sandbox")


@dataclass(frozen=True)
class _Settings:
    token: str
    unknown_article: UnknownArticle


_STORE: Final = web.AppKey("store", SandboxStore)
_SETTINGS: Final = web.AppKey("settings", _Settings)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_sandbox_app(
    store_path: Path,
    token: str,
    catalogue: Path | None,
    unknown_article: UnknownArticle,
    *,
    faults: FaultPlan | None = None,
) -> web.Application:
    """Build the sandbox app over the SQLite file `store_path` (made if missing).

    `catalogue` is a JSON list of `{"sku", "title", "price"}` added to (or
    refreshed in) the materials. `unknown_article` says what a deal line whose
    article is not in the catalogue does: "create" a material, as the real CRM
    may, or "refuse" the deal with a 422 naming the article. `faults` makes
    the API fail on purpose by that plan (see `sandbox_faults`).
    """
    materials = read_catalogue(catalogue) if catalogue is not None else []
    store = SandboxStore(store_path)
    store.seed_materials(materials)

    app = web.Application(middlewares=[_require_token])
    app[_STORE] = store
    app[_SETTINGS] = _Settings(token=token, unknown_article=unknown_article)
    app.add_routes(
        [
            web.post(f"{API_PREFIX}/agreements", _create_deal),
            web.get(f"{API_PREFIX}/agreements", _list_deals),
            web.get(API_PREFIX + r"/agreements/{deal_id:\d+}", _get_deal),
            web.patch(API_PREFIX + r"/agreements/{deal_id:\d+}", _change_deal),
            web.post(API_PREFIX + r"/agreements/{deal_id:\d+}/comments", _add_comment),
            web.get(f"{API_PREFIX}/materials", _list_materials),
            web.get(f"{API_PREFIX}/clients", _list_clients),
        ]
    )
    app.on_cleanup.append(_close_store)
    if faults is not None:
        install_faults(app, faults)
    return app


async def serve_sandbox(
    host: str,
    port: int,
    store_path: Path,
    token: str,
    catalogue: Path | None,
    unknown_article: UnknownArticle,
    *,
    faults: FaultPlan | None = None,
) -> None:
    """Serve the sandbox on `host:port` (0: any free port) until cancelled."""
    app = create_sandbox_app(
        store_path, token, catalogue, unknown_article, faults=faults
    )
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        url = URL.build(scheme="http", host=host, port=bound_port, path=API_PREFIX)
        _LOG.info("keepincrm sandbox listening", url=str(url), store=str(store_path))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def read_catalogue(path: Path) -> list[tuple[str, str, Decimal]]:
    """Read a catalogue file: a JSON list of `{"sku", "title", "price"}`.

    A price is a JSON number or a string holding one, kept as an exact Decimal.
    """
    try:
        entries = decode_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ValueError(f"catalogue {path}: cannot read it as JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise ValueError(f"catalogue {path}: expected a JSON list of materials")

    materials = []
    for index, entry in enumerate(entries):
        price = parse_number(entry.get("price")) if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sku"), str)
            and isinstance(entry.get("title"), str)
            and price is not None
        ):
            raise ValueError(
                f"catalogue {path}: item {index} needs a text sku and title"
                f" and a numeric price, got {entry!r:.120}"
            )
        materials.append((entry["sku"], entry["title"], price))
    return materials


@web.middleware
async def _require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    expected = request.app[_SETTINGS].token.encode()
    given = request.headers.get("X-Auth-Token", "").encode()
    if not hmac.compare_digest(given, expected):
        return _json_response({"message": "Unauthorized", "errors": []}, status=401)
    return await handler(request)


async def _close_store(app: web.Application) -> None:
    app[_STORE].close()


async def _create_deal(request: web.Request) -> web.StreamResponse:
    store, settings = request.app[_STORE], request.app[_SETTINGS]
    try:
        draft = parse_new_deal(await _json_body(request))
        _check_references(store, settings, draft.client_id, draft.lines)
    except InvalidRequest as refusal:
        return _refused(refusal)

    # The query options decide prices and total, as in the real create call.
    if request.query.get("ignore_price_list") != "true":
        draft = replace(
            draft, lines=[_price_listed(store, line) for line in draft.lines]
        )
    draft = _with_total(draft, request.query.get("products_total_as_total"))

    row = store.add_deal(
        draft,
        dict(request.query),
        create_materials=settings.unknown_article == "create",
    )
    answer = {
        "id": row["id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
    return _json_response(answer, status=201)


async def _list_deals(request: web.Request) -> web.StreamResponse:
    store = request.app[_STORE]
    filters = _ransack_filters(request)
    title = filters.pop("title_eq", None)
    prefix = "custom_fields_jcont]["
    custom_fields = [
        (key.removeprefix(prefix), filters.pop(key))
        for key in list(filters)
        if key.startswith(prefix)
    ]
    if filters:
        return _unmodelled_filters(filters)

    rows, total = store.deals(title, custom_fields, *_window(request))
    return _page_response(request, [_deal_view(store, row) for row in rows], total)


async def _get_deal(request: web.Request) -> web.StreamResponse:
    store = request.app[_STORE]
    row = store.deal(int(request.match_info["deal_id"]))
    if row is None:
        return _not_found()
    return _json_response(_deal_view(store, row))


async def _change_deal(request: web.Request) -> web.StreamResponse:
    store, settings = request.app[_STORE], request.app[_SETTINGS]
    deal_id = int(request.match_info["deal_id"])
    if store.deal(deal_id) is None:
        return _not_found()
    try:
        changes: DealChanges = parse_deal_changes(await _json_body(request))
        _check_references(store, settings, changes.client_id, changes.new_lines)
    except InvalidRequest as refusal:
        return _refused(refusal)

    # The price list rules the lines a PATCH sends just as it rules a create's.
    if request.query.get("ignore_price_list") != "true":
        changes = _changes_price_listed(store, deal_id, changes)

    try:
        store.change_deal(
            deal_id, changes, create_materials=settings.unknown_article == "create"
        )
    except LookupError:
        # Rails answers a nested id that is not on the record with a 404.
        return _not_found()
    row = store.deal(deal_id)
    assert row is not None, "the deal was just changed"
    return _json_response(_deal_view(store, row))


async def _add_comment(request: web.Request) -> web.StreamResponse:
    store = request.app[_STORE]
    deal_id = int(request.match_info["deal_id"])
    if store.deal(deal_id) is None:
        return _not_found()
    try:
        note = parse_comment(await _json_body(request))
    except InvalidRequest as refusal:
        return _refused(refusal)
    row = store.add_deal_comment(deal_id, note)
    return _json_response(_comment_view(row), status=201)


async def _list_materials(request: web.Request) -> web.StreamResponse:
    filters = _ransack_filters(request)
    sku = filters.pop("sku_eq", None)
    if filters:
        return _unmodelled_filters(filters)
    rows, total = request.app[_STORE].materials(sku, *_window(request))
    return _page_response(request, [_material_view(row) for row in rows], total)


async def _list_clients(request: web.Request) -> web.StreamResponse:
    filters = _ransack_filters(request)
    term = filters.pop("trigram_idx_cont", "")
    if filters:
        return _unmodelled_filters(filters)
    rows, total = request.app[_STORE].clients_matching(term, *_window(request))
    return _page_response(request, [_client_view(row) for row in rows], total)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, amounts as Decimal; malformed JSON gets a bare 400."""
    try:
        return decode_json(await request.read())
    except ValueError:
        raise web.HTTPBadRequest() from None


def _check_references(
    store: SandboxStore,
    settings: _Settings,
    client_id: int | None,
    lines: list[LineDraft],
) -> None:
    """Refuse a missing client, and unknown articles when told to."""
    errors: dict[str, list[str]] = {}
    if client_id is not None and store.client(client_id) is None:
        errors["client"] = ["must exist"]
    if settings.unknown_article == "refuse":
        for line in lines:
            if line.sku and store.material_by_sku(line.sku) is None:
                path = f"{line.path}.product_attributes.sku"
                errors[path] = [f"unknown article {line.sku!r}"]
    if errors:
        raise InvalidRequest(errors)


def _price_listed(store: SandboxStore, line: LineDraft) -> LineDraft:
    """Without `ignore_price_list=true`, a catalogue item's price wins."""
    material = store.material_by_sku(line.sku) if line.sku else None
    if material is None:
        return line
    return replace(line, price=Decimal(material["price"]))


def _changes_price_listed(
    store: SandboxStore, deal_id: int, changes: DealChanges
) -> DealChanges:
    """A PATCH without `ignore_price_list=true`: catalogue prices win on its lines.

    Sandbox choice: a changed line is priced by the article it has after the
    change (the one sent, else its own), whichever of its columns was sent.
    """
    skus = {row["id"]: row["sku"] for row in store.deal_lines(deal_id)}
    edits = []
    for edit in changes.line_edits:
        sku = edit.values["sku"] if "sku" in edit.values else skus.get(edit.line_id)
        material = store.material_by_sku(sku) if sku else None
        if material is not None:
            values = {**edit.values, "price": Decimal(material["price"])}
            edit = replace(edit, values=values)
        edits.append(edit)
    return replace(
        changes,
        new_lines=[_price_listed(store, line) for line in changes.new_lines],
        line_edits=edits,
    )


def _with_total(draft: DealDraft, products_total_as_total: str | None) -> DealDraft:
    """The deal total as the query asks; sandbox choice: no total sent, lines sum."""
    lines_sum = sum(
        (line.amount * (line.price or Decimal(0)) for line in draft.lines), Decimal(0)
    )
    if products_total_as_total == "true" or draft.fields.get("total") is None:
        total = lines_sum.quantize(_KOPECK, rounding=ROUND_HALF_UP)
        return replace(draft, fields={**draft.fields, "total": total})
    return draft


def _ransack_filters(request: web.Request) -> dict[str, str]:
    """`q[...]` parameters without their `q[` `]` wrapper."""
    return {
        key[2:-1]: value
        for key, value in request.query.items()
        if key.startswith("q[") and key.endswith("]")
    }


def _window(request: web.Request) -> tuple[int, int]:
    """The offset and limit of the page asked for (`page` counts from 1)."""
    page = request.query.get("page", "1")
    number = int(page) if page.isdigit() and int(page) > 0 else 1
    return (number - 1) * PAGE_SIZE, PAGE_SIZE


def _page_response(
    request: web.Request, items: list[Any], total: int
) -> web.StreamResponse:
    offset, limit = _window(request)
    pagination = {
        "total_pages": (total + limit - 1) // limit,
        "current_page": offset // limit + 1,
        "total_count": total,
    }
    return _json_response({"items": items, "pagination": pagination})


def _deal_view(store: SandboxStore, row: sqlite3.Row) -> dict[str, Any]:
    """A deal in the read shape of `GET /agreements/{id}`."""
    client = store.client(row["client_id"]) if row["client_id"] is not None else None
    custom_fields = store.deal_custom_fields(row["id"])
    return {
        "id": row["id"],
        "title": row["title"],
        "total": _amount(row["total"]),
        # The sandbox records no payments.
        "paid": Decimal(0),
        "credit": _amount(row["total"]),
        "currency": row["currency"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "ordered_at": row["ordered_at"],
        "comment": row["comment"],
        "result": row["result"],
        "discount": _amount(row["discount"]),
        "discount_kind": row["discount_kind"],
        # The sandbox keeps no dictionaries: names are placeholders.
        "stage": _named(row["stage_id"], "name", "stage"),
        "funnel": _named(row["funnel_id"], "title", "funnel"),
        "source": _named(row["source_id"], "name", "source"),
        "main_responsible": (
            {"id": row["main_responsible_id"]} if row["main_responsible_id"] else None
        ),
        "client_id": row["client_id"],
        "client": _client_view(client, brief=True) if client is not None else None,
        "custom_fields_detailed": [
            {"name": field["name"], "value": field["value"]} for field in custom_fields
        ],
        "deliveries": [],
        "jobs": [_line_view(line) for line in store.deal_lines(row["id"])],
        # Sandbox choice: the real read shape has no comments list we know of.
        "comments": [_comment_view(c) for c in store.deal_comments(row["id"])],
    }


def _comment_view(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "note": row["note"], "created_at": row["created_at"]}


def _line_view(row: sqlite3.Row) -> dict[str, Any]:
    # Sandbox choice: keys with no known CRM field (a per-line comment) are
    # shown back beside the known ones, which they never override.
    extra = decode_json(row["extra"])
    return {
        **extra,
        "id": row["id"],
        "title": row["title"] or row["product_title"],
        "amount": _amount(row["amount"]),
        "sku": row["sku"],
        "price": _amount(row["price"]),
    }


def _client_view(row: sqlite3.Row, *, brief: bool = False) -> dict[str, Any]:
    view = {
        "id": row["id"],
        "person": row["person"],
        "company": row["company"],
        "phones": decode_json(row["phones"]),
        "email": row["email"],
    }
    if brief:
        return view
    return {
        **view,
        "lead": bool(row["lead"]),
        "source_id": row["source_id"],
        "status_id": row["status_id"],
        "custom_fields": decode_json(row["custom_fields"]),
        "created_at": row["created_at"],
    }


def _material_view(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "sku": row["sku"],
        "title": row["title"],
        "unit": row["unit"],
        "price_amount": _amount(row["price"]),
        "cost_amount": None,
        "currency": row["currency"],
        "category": None,
        "stock_available": None,
        "custom_fields": [],
        "irrelevant": False,
    }


def _amount(text: str | None) -> Decimal | None:
    """An amount column (the decimal's text) as the Decimal it was."""
    return Decimal(text) if text is not None else None


def _json_response(body: Any, status: int = 200) -> web.StreamResponse:
    """`body` as JSON; amounts are bare numbers with the digits they were sent with."""
    return web.Response(
        body=encode_json(body),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def _named(item_id: int | None, key: str, kind: str) -> dict[str, Any] | None:
    return {"id": item_id, key: f"{kind} {item_id}"} if item_id is not None else None


def _refused(refusal: InvalidRequest) -> web.StreamResponse:
    phrases = [f"{path} {', '.join(msgs)}" for path, msgs in refusal.errors.items()]
    body = {
        "message": f"Validation failed: {'; '.join(phrases)}",
        "errors": refusal.errors,
    }
    return _json_response(body, status=422)


def _unmodelled_filters(filters: dict[str, str]) -> web.StreamResponse:
    names = ", ".join(f"q[{name}]" for name in filters)
    return _json_response(
        {"message": f"the sandbox does not model the filter {names}"}, status=400
    )


def _not_found() -> web.StreamResponse:
    # The real CRM answers 404 with a page, not JSON.
    return web.Response(status=404, text="<h1>Not Found</h1>", content_type="text/html")

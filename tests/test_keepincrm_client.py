"""The KeepinCRM client against the sandbox, served for real on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from projections.keepincrm import (
    KeepinCRMClient,
    NotFound,
    Unauthorized,
    ValidationFailed,
    serve_sandbox,
)
from projections.keepincrm.facts import close_as_failed_fields, nested_line_changes
from projections.keepincrm.sandbox import (
    UnknownArticle,
    create_sandbox_app,
    read_catalogue,
)

TOKEN = "sandbox-secret-7f3a"
# The account's limiter stays in the path, spaced 1 ms instead of 0.67 s.
FAST_RATE = 60_000

CATALOGUE = [
    # The catalogue's own price differs from the one the shop sends.
    {"sku": "CUP-1", "title": "Чашка", "price": 450},
    {"sku": "SAUCER-1", "title": "Блюдце", "price": 250},
]


@dataclass
class Sandbox:
    """A sandbox being served, with the file it keeps."""

    url: str
    store_path: Path
    requests: list[str]

    def client(self, token: str = TOKEN) -> KeepinCRMClient:
        return KeepinCRMClient(
            self.url, token, timeout=5, requests_per_minute=FAST_RATE
        )


OpenSandbox = Callable[..., Awaitable[Sandbox]]

_EXACT = msgspec.json.Encoder(decimal_format="number")


@pytest.fixture
async def open_sandbox(tmp_path: Path) -> AsyncIterator[OpenSandbox]:
    """Serve sandboxes on loopback; each is closed after the test."""
    servers: list[TestServer] = []

    async def open_one(
        catalogue: list[dict[str, Any]] = CATALOGUE,
        unknown_article: UnknownArticle = "create",
    ) -> Sandbox:
        index = len(servers)
        catalogue_path = tmp_path / f"catalogue-{index}.json"
        # Decimals in a catalogue are written as exact JSON numbers.
        catalogue_path.write_bytes(_EXACT.encode(catalogue))
        store_path = tmp_path / f"sandbox-{index}.sqlite3"
        app = create_sandbox_app(store_path, TOKEN, catalogue_path, unknown_article)

        # A middleware added before start, as fault injection will be.
        requests: list[str] = []

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            requests.append(request.path_qs)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(record)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return Sandbox(str(server.make_url("/v1")), store_path, requests)

    yield open_one
    for server in servers:
        await server.close()


def order_deal(number: str = "1234", **changes: Any) -> dict[str, Any]:
    """A deal as ocsync sends it for one OpenCart order."""
    deal: dict[str, Any] = {
        "title": f"№ {number}",
        "comment": "Нова Пошта, Київ, відділення 12",
        "total": Decimal("1300.00"),
        "currency": "UAH",
        "source_id": 3,
        "main_responsible_id": 7,
        "stage_id": 11,
        "client_attributes": {
            "person": "Олена Коваль",
            "phones": ["+380671234567"],
            "email": "olena@example.com",
            "lead": False,
        },
        "jobs_attributes": [
            {
                "amount": 2,
                "title": "Чашка",
                "comment": "Колір: синій",
                "product_attributes": {
                    "sku": "CUP-1",
                    "title": "Чашка",
                    "price": Decimal("500.00"),
                    "currency": "UAH",
                },
            },
            {
                "amount": 1,
                "title": "Блюдце",
                "product_attributes": {"sku": "SAUCER-1", "price": 250},
            },
        ],
        "custom_fields": [{"name": "field_12", "value": number}],
    }
    deal.update(changes)
    return deal


async def test_created_deal_reads_back_with_lines_client_and_fields(
    open_sandbox: OpenSandbox,
) -> None:
    """A created deal reads back with its lines, its client and its custom fields."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal("1234"))
        deal = await crm.get_deal(deal_id)

    assert deal["id"] == deal_id
    assert deal["title"] == "№ 1234"
    assert deal["source"]["id"] == 3
    assert deal["main_responsible"] == {"id": 7}
    assert deal["stage"]["id"] == 11
    assert [(j["sku"], j["amount"], j["price"]) for j in deal["jobs"]] == [
        ("CUP-1", 2, 500),
        ("SAUCER-1", 1, 250),
    ]
    assert all(isinstance(job["id"], int) for job in deal["jobs"])
    assert deal["jobs"][0]["comment"] == "Колір: синій"
    assert deal["client"]["person"] == "Олена Коваль"
    assert deal["client"]["phones"] == ["+380671234567"]
    assert deal["custom_fields_detailed"] == [{"name": "field_12", "value": "1234"}]


async def test_create_keeps_the_prices_and_total_sent(
    open_sandbox: OpenSandbox,
) -> None:
    """The create call's query keeps our line prices and our total, not the CRM's."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal = await crm.get_deal(await crm.create_deal(order_deal(total=1300)))

    # Catalogue says 450 for CUP-1; the lines sum to 1250; we sent 1300.
    assert deal["jobs"][0]["price"] == 500
    assert deal["total"] == 1300
    create_call = next(r for r in sandbox.requests if r.startswith("/v1/agreements?"))
    assert "ignore_price_list=true" in create_call
    assert "products_total_as_total=false" in create_call


async def test_corrected_lines_keep_the_prices_sent(
    open_sandbox: OpenSandbox,
) -> None:
    """A PATCH carrying lines sends ignore_price_list: the catalogue's 450 loses."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup, saucer = (job["id"] for job in (await crm.get_deal(deal_id))["jobs"])
        added = {"amount": 1, "product_attributes": {"sku": "CUP-1", "price": 480}}

        await crm.update_deal(
            deal_id,
            {
                "jobs_attributes": nested_line_changes(
                    changed={cup: {"product_attributes": {"price": 490}}},
                    removed=[saucer],
                    added=[added],
                )
            },
        )
        await crm.update_deal(deal_id, {"comment": "Оплачено"})
        deal = await crm.get_deal(deal_id)

    assert [(j["sku"], j["price"]) for j in deal["jobs"]] == [
        ("CUP-1", 490),
        ("CUP-1", 480),
    ]
    patches = [r for r in sandbox.requests if r.startswith(f"/v1/agreements/{deal_id}")]
    lines_patch, comment_patch = patches[-3], patches[-2]
    assert "ignore_price_list=true" in lines_patch
    assert "products_total_as_total=false" in lines_patch
    assert "?" not in comment_patch


async def test_patch_without_ignore_price_list_gets_catalogue_prices(
    open_sandbox: OpenSandbox,
) -> None:
    """The sandbox prices a PATCH's changed and added lines by its catalogue."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup, saucer = (job["id"] for job in (await crm.get_deal(deal_id))["jobs"])
    body = json.dumps(
        {
            "jobs_attributes": [
                {"id": cup, "amount": 3},
                {"id": saucer, "product_attributes": {"sku": "CUP-1", "price": 1}},
                {"amount": 1, "product_attributes": {"sku": "SAUCER-1", "price": 2}},
                {"amount": 1, "product_attributes": {"sku": "SPOON-1", "price": 90}},
            ]
        }
    )

    status, _ = await raw_request(sandbox, "PATCH", f"/agreements/{deal_id}", body=body)
    _, text = await raw_request(sandbox, "GET", f"/agreements/{deal_id}")

    assert status == 200
    jobs = exact(text)["jobs"]
    assert [(j["sku"], j["amount"], str(j["price"])) for j in jobs] == [
        ("CUP-1", 3, "450"),
        ("CUP-1", 1, "450"),
        ("SAUCER-1", 1, "250"),
        ("SPOON-1", 1, "90"),
    ]


async def test_finds_a_deal_by_its_custom_field(open_sandbox: OpenSandbox) -> None:
    """A deal is found by the order number kept in its custom field, and only it."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        wanted = await crm.create_deal(order_deal("1234"))
        await crm.create_deal(order_deal("12345"))

        found = await crm.find_deals_by_custom_field("field_12", "1234")
        missing = await crm.find_deals_by_custom_field("field_12", "999")

    assert [deal["id"] for deal in found] == [wanted]
    assert missing == []


async def test_lists_deals_across_pages_and_by_title(open_sandbox: OpenSandbox) -> None:
    """Listing deals walks every page; a title filter narrows it to one deal."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        ids = [await crm.create_deal(order_deal(str(n))) for n in range(30)]

        every = [deal["id"] async for deal in crm.list_deals()]
        titled = [deal["id"] async for deal in crm.list_deals(title_eq="№ 17")]

    assert every == ids
    assert titled == [ids[17]]


async def test_lists_materials_across_pages(open_sandbox: OpenSandbox) -> None:
    """60 catalogue items come back whole, over three pages of 25."""
    catalogue = [
        {"sku": f"ART-{n:03}", "title": f"Товар {n}", "price": n} for n in range(60)
    ]
    sandbox = await open_sandbox(catalogue=catalogue)
    async with sandbox.client() as crm:
        materials = [item async for item in crm.list_materials()]

    assert [item["sku"] for item in materials] == [entry["sku"] for entry in catalogue]
    pages = [r for r in sandbox.requests if r.startswith("/v1/materials")]
    assert [p.rsplit("page=", 1)[1] for p in pages] == ["1", "2", "3"]


async def test_wrong_token_is_unauthorized_and_never_shown(
    open_sandbox: OpenSandbox,
) -> None:
    """A wrong key gives Unauthorized; no key shows in the error or the client."""
    sandbox = await open_sandbox()
    wrong = "wrong-key-0000"
    async with sandbox.client(token=wrong) as crm:
        with pytest.raises(Unauthorized) as caught:
            await crm.ping()

    assert caught.value.status == 401
    assert not caught.value.retryable
    for text in (str(caught.value), repr(caught.value), repr(crm)):
        assert wrong not in text
        assert TOKEN not in text


async def test_refusal_says_which_field_and_why(open_sandbox: OpenSandbox) -> None:
    """A 422 surfaces the CRM's message and its errors, field by field."""
    sandbox = await open_sandbox()
    deal = order_deal(title="  ")
    deal["jobs_attributes"][0]["product_attributes"]["price"] = "п'ятсот"

    async with sandbox.client() as crm:
        with pytest.raises(ValidationFailed) as caught:
            await crm.create_deal(deal)

    refusal = caught.value
    assert refusal.status == 422
    assert not refusal.retryable
    assert refusal.errors == {
        "title": ["can't be blank"],
        "jobs_attributes[0].product_attributes.price": ["must be a number"],
    }
    assert str(refusal) == (
        "422 title: can't be blank; "
        "jobs_attributes[0].product_attributes.price: must be a number"
    )
    assert "Validation failed" in refusal.message


async def test_blank_company_is_refused(open_sandbox: OpenSandbox) -> None:
    """A blank company in client_attributes is refused, as reported of the CRM."""
    sandbox = await open_sandbox()
    deal = order_deal()
    deal["client_attributes"]["company"] = ""

    async with sandbox.client() as crm:
        with pytest.raises(ValidationFailed, match=r"client_attributes\.company"):
            await crm.create_deal(deal)


async def test_unknown_article_creates_a_material(open_sandbox: OpenSandbox) -> None:
    """With "create", a line's unknown article becomes a new catalogue item."""
    sandbox = await open_sandbox(unknown_article="create")
    deal = order_deal()
    deal["jobs_attributes"][1]["product_attributes"]["sku"] = "NEW-9"

    async with sandbox.client() as crm:
        await crm.create_deal(deal)
        created = [item async for item in crm.list_materials(sku_eq="NEW-9")]

    assert [(item["sku"], item["price_amount"]) for item in created] == [("NEW-9", 250)]


async def test_unknown_article_refused_names_it(open_sandbox: OpenSandbox) -> None:
    """With "refuse", a line's unknown article refuses the deal and names it."""
    sandbox = await open_sandbox(unknown_article="refuse")
    deal = order_deal()
    deal["jobs_attributes"][1]["product_attributes"]["sku"] = "NEW-9"

    async with sandbox.client() as crm:
        with pytest.raises(ValidationFailed) as caught:
            await crm.create_deal(deal)
        listed = [item async for item in crm.list_deals()]

    assert caught.value.errors == {
        "jobs_attributes[1].product_attributes.sku": ["unknown article 'NEW-9'"]
    }
    assert listed == []


async def test_a_removed_lines_id_is_never_given_to_a_new_line(
    open_sandbox: OpenSandbox,
) -> None:
    """The last line removed and one added: the new line gets a new id."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup, saucer = (job["id"] for job in (await crm.get_deal(deal_id))["jobs"])
        spoon = {"amount": 1, "product_attributes": {"sku": "SPOON-1", "price": 90}}

        await crm.update_deal(
            deal_id,
            {"jobs_attributes": nested_line_changes(removed=[saucer], added=[spoon])},
        )
        ids = [job["id"] for job in (await crm.get_deal(deal_id))["jobs"]]

    assert ids[0] == cup and ids[1] not in (cup, saucer)


async def test_patch_changes_fields_and_lines_rails_style(
    open_sandbox: OpenSandbox,
) -> None:
    """PATCH changes a line by id, removes one with _destroy, adds one without id."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup, saucer = (job["id"] for job in (await crm.get_deal(deal_id))["jobs"])

        await crm.update_deal(
            deal_id,
            {
                "stage_id": 12,
                "comment": "Оплачено",
                "custom_fields": [{"name": "field_13", "value": "TTN 2045"}],
                "jobs_attributes": nested_line_changes(
                    changed={cup: {"amount": 3}},
                    removed=[saucer],
                    added=[
                        {
                            "amount": 1,
                            "title": "Ложка",
                            "product_attributes": {"sku": "SPOON-1", "price": 90},
                        }
                    ],
                ),
            },
        )
        deal = await crm.get_deal(deal_id)

    assert deal["stage"]["id"] == 12
    assert deal["comment"] == "Оплачено"
    assert [(j["id"], j["sku"], j["amount"]) for j in deal["jobs"]] == [
        (cup, "CUP-1", 3),
        (deal["jobs"][1]["id"], "SPOON-1", 1),
    ]
    assert deal["custom_fields_detailed"] == [
        {"name": "field_12", "value": "1234"},
        {"name": "field_13", "value": "TTN 2045"},
    ]


async def test_unknown_deal_is_not_found(open_sandbox: OpenSandbox) -> None:
    """Reading or changing a deal that does not exist raises NotFound."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        with pytest.raises(NotFound):
            await crm.get_deal(404)
        with pytest.raises(NotFound):
            await crm.update_deal(404, {"comment": "x"})


async def test_deal_closed_as_failed_reads_back(open_sandbox: OpenSandbox) -> None:
    """A PATCH merging close_as_failed_fields and a stage reads back with both."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        opened = await crm.get_deal(deal_id)
        await crm.update_deal(deal_id, {"stage_id": 19, **close_as_failed_fields()})
        closed = await crm.get_deal(deal_id)
        won_id = await crm.create_deal(order_deal("2", result="successful"))
        won = await crm.get_deal(won_id)

    assert close_as_failed_fields() == {"result": "failed"}
    assert (opened["result"], opened["stage"]["id"]) == (None, 11)
    assert (closed["result"], closed["stage"]["id"]) == ("failed", 19)
    assert won["result"] == "successful"


@pytest.mark.parametrize("result", ["lost", "", 1, ["failed"]])
async def test_deal_result_other_than_the_read_shape_is_refused(
    open_sandbox: OpenSandbox, result: Any
) -> None:
    """A result other than null, "successful" or "failed" is a 422, and not kept."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        with pytest.raises(ValidationFailed) as on_patch:
            await crm.update_deal(deal_id, {"result": result, "comment": "x"})
        with pytest.raises(ValidationFailed) as on_create:
            await crm.create_deal(order_deal("2", result=result))
        deals = [deal async for deal in crm.list_deals()]

    expected = {"result": ["must be null or one of failed, successful"]}
    assert on_patch.value.status == 422
    assert on_patch.value.errors == expected
    assert on_create.value.errors == expected
    assert [(d["id"], d["result"], d["comment"]) for d in deals] == [
        (deal_id, None, "Нова Пошта, Київ, відділення 12")
    ]


async def test_deal_comments_are_added_and_read_back(
    open_sandbox: OpenSandbox,
) -> None:
    """add_deal_comment returns the new id; the deal reads its comments in order."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        before = await crm.get_deal(deal_id)
        first = await crm.add_deal_comment(
            deal_id, "<b>Скасовано</b>: немає в наявності"
        )
        second = await crm.add_deal_comment(deal_id, "Клієнт повідомлений")
        deal = await crm.get_deal(deal_id)
        status, text = await raw_request(
            sandbox, "POST", f"/agreements/{deal_id}/comments", body='{"note": "3"}'
        )

    assert before["comments"] == []
    assert second > first
    assert [(c["id"], c["note"]) for c in deal["comments"]] == [
        (first, "<b>Скасовано</b>: немає в наявності"),
        (second, "Клієнт повідомлений"),
    ]
    assert all(isinstance(c["created_at"], str) for c in deal["comments"])
    assert status == 201
    assert set(json.loads(text)) == {"id", "note", "created_at"}


async def test_deal_comment_on_an_unknown_deal_is_not_found(
    open_sandbox: OpenSandbox,
) -> None:
    """A comment on a deal that does not exist raises NotFound."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        with pytest.raises(NotFound):
            await crm.add_deal_comment(404, "x")


@pytest.mark.parametrize("note", ["", "  \n "])
async def test_blank_deal_comment_is_refused(
    open_sandbox: OpenSandbox, note: str
) -> None:
    """A blank note is a 422 naming `note`, and adds nothing."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        with pytest.raises(ValidationFailed) as caught:
            await crm.add_deal_comment(deal_id, note)
        deal = await crm.get_deal(deal_id)

    assert caught.value.errors == {"note": ["can't be blank"]}
    assert deal["comments"] == []


async def test_finds_clients_by_part_of_a_phone(open_sandbox: OpenSandbox) -> None:
    """A client made with a deal is found by its phone, in full or in part."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        client_id = (await crm.get_deal(deal_id))["client"]["id"]

        by_full = await crm.find_clients_by_phone("+380671234567")
        by_part = await crm.find_clients_by_phone("0671234567")
        by_other = await crm.find_clients_by_phone("0509999999")

    assert [client["id"] for client in by_full] == [client_id]
    assert [client["id"] for client in by_part] == [client_id]
    assert by_other == []


async def test_deal_for_an_existing_client_links_it(open_sandbox: OpenSandbox) -> None:
    """A deal sent with client_id links that client instead of making another."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        first = await crm.get_deal(await crm.create_deal(order_deal("1")))
        client_id = first["client"]["id"]
        deal = order_deal("2", client_id=client_id)
        del deal["client_attributes"]
        second = await crm.get_deal(await crm.create_deal(deal))
        clients = await crm.find_clients_by_phone("380671234567")

    assert second["client"]["id"] == client_id
    assert len(clients) == 1


async def test_store_file_reads_without_the_sandbox(open_sandbox: OpenSandbox) -> None:
    """The SQLite file holds the deals, their lines and clients for a person to read."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        await crm.create_deal(order_deal("1234"))

    with sqlite3.connect(sandbox.store_path) as db:
        rows = db.execute(
            "SELECT deals.title, clients.person, deal_lines.sku, deal_lines.price"
            " FROM deals JOIN clients ON clients.id = deals.client_id"
            " JOIN deal_lines ON deal_lines.deal_id = deals.id ORDER BY deal_lines.id"
        ).fetchall()
    db.close()

    # Prices are text holding the digits sent: 500.00 stays 500.00, 250 stays 250.
    assert rows == [
        ("№ 1234", "Олена Коваль", "CUP-1", "500.00"),
        ("№ 1234", "Олена Коваль", "SAUCER-1", "250"),
    ]


async def test_given_session_stays_open(open_sandbox: OpenSandbox) -> None:
    """A session passed in belongs to its owner: closing the client leaves it open."""
    sandbox = await open_sandbox()
    async with aiohttp.ClientSession() as session:
        async with KeepinCRMClient(sandbox.url, TOKEN, session=session) as crm:
            await crm.ping()
        assert not session.closed


async def test_serve_sandbox_logs_its_url_and_answers(tmp_path: Path) -> None:
    """serve_sandbox logs the URL it listens on and serves there until cancelled."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with structlog.testing.capture_logs() as logs:
        serving = asyncio.create_task(
            serve_sandbox(
                "127.0.0.1", port, tmp_path / "sandbox.sqlite3", TOKEN, None, "create"
            )
        )
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(100):
            if logs:
                break
            await asyncio.sleep(0.01)
        async with KeepinCRMClient(url, TOKEN) as crm:
            await crm.ping()
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving

    assert logs[0]["event"] == "keepincrm sandbox listening"
    assert logs[0]["url"] == url


async def test_patch_refusal_names_the_line_as_sent(open_sandbox: OpenSandbox) -> None:
    """A refused line in a PATCH is named by its place in the body sent."""
    sandbox = await open_sandbox(unknown_article="refuse")
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup = (await crm.get_deal(deal_id))["jobs"][0]["id"]
        lines = nested_line_changes(
            changed={cup: {"amount": 5}},
            added=[{"amount": 1, "product_attributes": {"sku": "NEW-9", "price": 1}}],
        )
        with pytest.raises(ValidationFailed) as caught:
            await crm.update_deal(deal_id, {"jobs_attributes": lines})
        deal = await crm.get_deal(deal_id)

    assert caught.value.errors == {
        "jobs_attributes[1].product_attributes.sku": ["unknown article 'NEW-9'"]
    }
    assert deal["jobs"][0]["amount"] == 2


async def raw_request(
    sandbox: Sandbox,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, str]:
    """One call through a plain aiohttp session: its status and untouched text.

    The client decodes answers with msgspec's defaults, which give 3629.60 as
    the float 3629.6, so exact digits are checked in the raw text instead.
    """
    headers = {"X-Auth-Token": TOKEN, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            sandbox.url + path,
            params=params,
            data=body.encode() if body is not None else None,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.text()


def exact(text: str) -> Any:
    """JSON with every number, whole or not, as the Decimal spelt in the text."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


async def test_amounts_round_trip_digit_for_digit(open_sandbox: OpenSandbox) -> None:
    """A price 3629.60, an amount 2 and a total 7953.36 read back as sent."""
    sandbox = await open_sandbox()
    deal = order_deal("1234", total=Decimal("7953.36"))
    deal["jobs_attributes"] = [
        {
            "amount": 2,
            "title": "Сервіз",
            "product_attributes": {"sku": "SET-12", "price": Decimal("3629.60")},
        }
    ]
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(deal)
        status, text = await raw_request(sandbox, "GET", f"/agreements/{deal_id}")

    assert status == 200
    assert '"total":7953.36' in text
    assert '"amount":2,' in text
    assert '"price":3629.60' in text
    answer = exact(text)
    job = answer["jobs"][0]
    assert [str(job["amount"]), str(job["price"])] == ["2", "3629.60"]
    assert [str(answer["total"]), str(answer["credit"])] == ["7953.36", "7953.36"]

    with sqlite3.connect(sandbox.store_path) as db:
        line = db.execute("SELECT amount, price FROM deal_lines").fetchone()
        total = db.execute("SELECT total FROM deals").fetchone()
    db.close()
    assert (line, total) == (("2", "3629.60"), ("7953.36",))


async def test_patched_amounts_keep_their_digits(open_sandbox: OpenSandbox) -> None:
    """A PATCH's amount 1.50, price "99.90" (a string) and discount 5.00 stay so."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
        cup = (await crm.get_deal(deal_id))["jobs"][0]["id"]
        changes = {
            "discount": Decimal("5.00"),
            "discount_kind": "absolute_discount",
            "jobs_attributes": nested_line_changes(
                changed={
                    cup: {
                        "amount": Decimal("1.50"),
                        "product_attributes": {"price": "99.90"},
                    }
                }
            ),
        }
        await crm.update_deal(deal_id, changes)
        _, text = await raw_request(sandbox, "GET", f"/agreements/{deal_id}")

    answer = exact(text)
    cup_line = answer["jobs"][0]
    assert [str(cup_line["amount"]), str(cup_line["price"])] == ["1.50", "99.90"]
    assert str(answer["discount"]) == "5.00"


async def test_total_from_lines_is_summed_in_decimal(
    open_sandbox: OpenSandbox,
) -> None:
    """products_total_as_total=true sums the lines exactly: 3 × 3629.60 + 0.10."""
    sandbox = await open_sandbox()
    # As floats, 3 * 3629.6 + 0.1 is 10888.900000000001, and reads 10888.9.
    body = """{
        "title": "№ 1", "total": 7953.36,
        "jobs_attributes": [
            {"amount": "3", "product_attributes": {"sku": "SET-12", "price": 3629.60}},
            {"amount": 1, "product_attributes": {"sku": "BAG-1", "price": 0.10}}
        ]
    }"""
    query = {"ignore_price_list": "true", "products_total_as_total": "true"}
    status, text = await raw_request(
        sandbox, "POST", "/agreements", params=query, body=body
    )
    assert status == 201
    deal_id = json.loads(text)["id"]
    _, text = await raw_request(sandbox, "GET", f"/agreements/{deal_id}")

    answer = exact(text)
    assert str(answer["total"]) == "10888.90"
    assert [str(job["amount"]) for job in answer["jobs"]] == ["3", "1"]
    assert [str(job["price"]) for job in answer["jobs"]] == ["3629.60", "0.10"]


async def test_catalogue_price_wins_exactly(open_sandbox: OpenSandbox) -> None:
    """Without ignore_price_list, the catalogue's Decimal price replaces the line's."""
    catalogue = [
        {"sku": "SET-12", "title": "Сервіз", "price": Decimal("3629.60")},
        {"sku": "CUP-1", "title": "Чашка", "price": "450.50"},
    ]
    sandbox = await open_sandbox(catalogue=catalogue)
    body = """{
        "title": "№ 1", "total": 7953.36,
        "jobs_attributes": [
            {"amount": 2, "product_attributes": {"sku": "SET-12", "price": 1}},
            {"amount": 1, "product_attributes": {"sku": "CUP-1", "price": 1.5}}
        ]
    }"""
    query = {"products_total_as_total": "false"}
    _, text = await raw_request(sandbox, "POST", "/agreements", params=query, body=body)
    deal_id = json.loads(text)["id"]
    _, deal_text = await raw_request(sandbox, "GET", f"/agreements/{deal_id}")
    _, materials_text = await raw_request(sandbox, "GET", "/materials")

    answer = exact(deal_text)
    assert [str(job["price"]) for job in answer["jobs"]] == ["3629.60", "450.50"]
    assert str(answer["total"]) == "7953.36"
    prices = [str(item["price_amount"]) for item in exact(materials_text)["items"]]
    assert prices == ["3629.60", "450.50"]


def test_catalogue_file_keeps_prices_exact(tmp_path: Path) -> None:
    """A catalogue price is a JSON number or a numeric string, read as a Decimal."""
    path = tmp_path / "catalogue.json"
    path.write_text(
        '[{"sku": "A", "title": "a", "price": 3629.60},'
        ' {"sku": "B", "title": "b", "price": " 3629.60 "},'
        ' {"sku": "C", "title": "c", "price": 2}]'
    )

    items = read_catalogue(path)

    assert [(sku, str(price)) for sku, _, price in items] == [
        ("A", "3629.60"),
        ("B", "3629.60"),
        ("C", "2"),
    ]
    assert all(isinstance(price, Decimal) for _, _, price in items)


@pytest.mark.parametrize("price", ['"п\'ятсот"', "true", "null", '"NaN"'])
def test_catalogue_file_refuses_a_price_that_is_no_number(
    tmp_path: Path, price: str
) -> None:
    """A catalogue item whose price is not a number is refused, naming the item."""
    path = tmp_path / "catalogue.json"
    path.write_text(f'[{{"sku": "A", "title": "a", "price": {price}}}]')

    with pytest.raises(ValueError, match="item 0 needs"):
        read_catalogue(path)


async def test_store_file_without_result_column_gains_it(
    open_sandbox: OpenSandbox,
) -> None:
    """A file made before deals had `result` is opened with it, its deals open."""
    sandbox = await open_sandbox()
    async with sandbox.client() as crm:
        deal_id = await crm.create_deal(order_deal())
    with sqlite3.connect(sandbox.store_path) as db:
        db.execute("ALTER TABLE deals DROP COLUMN result")
        db.execute("DROP TABLE deal_comments")
    db.close()

    app = create_sandbox_app(sandbox.store_path, TOKEN, None, "create")
    server = TestServer(app)
    await server.start_server()
    try:
        url = str(server.make_url("/v1"))
        async with KeepinCRMClient(url, TOKEN, requests_per_minute=FAST_RATE) as crm:
            assert (await crm.get_deal(deal_id))["result"] is None
            await crm.update_deal(deal_id, close_as_failed_fields())
            await crm.add_deal_comment(deal_id, "Скасовано")
            deal = await crm.get_deal(deal_id)
    finally:
        await server.close()

    assert deal["result"] == "failed"
    assert [c["note"] for c in deal["comments"]] == ["Скасовано"]


def test_store_file_with_float_amounts_is_refused(tmp_path: Path) -> None:
    """A file from when amounts were REAL is refused rather than read as floats."""
    store_path = tmp_path / "old.sqlite3"
    with sqlite3.connect(store_path) as db:
        db.execute("CREATE TABLE deals (id INTEGER PRIMARY KEY, total REAL)")
    db.close()

    with pytest.raises(ValueError, match=r"deals\.total is REAL"):
        create_sandbox_app(store_path, TOKEN, None, "create")

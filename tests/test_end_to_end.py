"""The sample shops' orders become correct deals, end to end.

The real OpenCart 3.0 dumps are loaded into MariaDB, `ocsync run --once` runs as
a separate process against the KeepinCRM sandbox served on loopback, and every
deal is checked against ORDERS.md (what the storefront showed) and the dumps
(the catalogue's Ukrainian names), read at test time.
"""

from __future__ import annotations

import asyncio
import html
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import create_sandbox_app
from tests.conftest import OpenCartShop
from tests.orders_md import FIXTURES, ShownOrder, shown_amount, shown_orders

REPO = Path(__file__).resolve().parent.parent
TOKEN = "e2e-token-5f1c2a"
SOURCES = {"site_a": 21, "site_b": 22}
MARKER_FIELD = "field_7"


@dataclass
class Crm:
    url: str
    store: Path


@pytest.fixture
async def shops(
    make_shop: Callable[..., Awaitable[OpenCartShop]],
) -> dict[str, OpenCartShop]:
    return {site: await make_shop(dump=FIXTURES / f"{site}.sql") for site in SOURCES}


@pytest.fixture
async def crm(tmp_path: Path) -> AsyncIterator[Crm]:
    store = tmp_path / "crm.db"
    app = create_sandbox_app(store, TOKEN, None, "create")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Crm(url=str(server.make_url("/v1")), store=store)
    await server.close()


def write_settings(
    path: Path, shops: dict[str, OpenCartShop], crm_url: str, article: str = "model"
) -> Path:
    sites = "".join(
        f"""
[[sites]]
name = "{site}"
title = "Сайт {site[-1].upper()}"
database = "mysql://root:@{shop.url.host}:{shop.url.port}/{shop.url.database}"
source_id = {SOURCES[site]}
responsible_id = 3
sync_from = "all"
"""
        for site, shop in shops.items()
    )
    path.write_text(
        f"""
[event_log]
url = "sqlite:///events.db"

[crm]
base_url = "{crm_url}"
token = "${{E2E_CRM_TOKEN}}"
timeout = 10

[capture]
poll_interval = 1

[deals]
article_fields = ["{article}"]

[deals.custom_fields]
marker = "{MARKER_FIELD}"
city = "field_8"
{sites}""",
        encoding="utf-8",
    )
    return path


async def run_ocsync(config: Path, *args: str) -> tuple[int, str]:
    """`ocsync --config FILE ARGS...` as its own process; its code and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "--config",
        str(config),
        *args,
        cwd=REPO,
        env={**os.environ, "E2E_CRM_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    return process.returncode or 0, stderr.decode("utf-8", "replace")


async def deals_by_marker(crm_url: str) -> dict[str, dict[str, Any]]:
    async with KeepinCRMClient(crm_url, TOKEN) as client:
        ids = [int(deal["id"]) async for deal in client.list_deals()]
        deals = [await client.get_deal(deal_id) for deal_id in ids]
    by_marker: dict[str, dict[str, Any]] = {}
    for deal in deals:
        fields = {f["name"]: f["value"] for f in deal["custom_fields_detailed"]}
        marker = fields[MARKER_FIELD]
        assert marker not in by_marker, f"two deals for {marker}"
        by_marker[marker] = deal
    return by_marker


async def query(shop: OpenCartShop, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with shop.writer.cursor() as cursor:
        await cursor.execute(sql, params or None)
        return list(await cursor.fetchall())


async def decimal_places(shop: OpenCartShop, currency: str) -> int:
    [(places,)] = await query(
        shop, "SELECT decimal_place FROM oc_currency WHERE code = %s", currency
    )
    return int(places)


async def ukrainian_names(shop: OpenCartShop, order_id: int) -> list[tuple[str, str]]:
    """Each line's product name and variant text, from the catalogue in uk-ua."""
    uk = "(SELECT language_id FROM oc_language WHERE code = 'uk-ua')"
    lines = await query(
        shop,
        f"""SELECT op.order_product_id, pd.name FROM oc_order_product op
            JOIN oc_product_description pd
              ON pd.product_id = op.product_id AND pd.language_id = {uk}
            WHERE op.order_id = %s ORDER BY op.order_product_id""",
        order_id,
    )
    named = []
    for order_product_id, name in lines:
        options = await query(
            shop,
            f"""SELECT od.name, COALESCE(ovd.name, oo.value)
                FROM oc_order_option oo
                JOIN oc_product_option po
                  ON po.product_option_id = oo.product_option_id
                JOIN oc_option_description od
                  ON od.option_id = po.option_id AND od.language_id = {uk}
                LEFT JOIN oc_product_option_value pov
                  ON pov.product_option_value_id = oo.product_option_value_id
                LEFT JOIN oc_option_value_description ovd
                  ON ovd.option_value_id = pov.option_value_id
                 AND ovd.language_id = {uk}
                WHERE oo.order_product_id = %s ORDER BY oo.order_option_id""",
            order_product_id,
        )
        variants = "; ".join(f"{n}: {v}" for n, v in options)
        named.append((html.unescape(name), html.unescape(variants)))
    return named


def same_variants(sent: str, shown: str) -> bool:
    """The page cuts option values past 20 characters to `..`; the CRM gets all."""
    sent_pairs, shown_pairs = sent.split("; "), shown.split("; ")
    if len(sent_pairs) != len(shown_pairs):
        return False
    return all(
        a == b or (b.endswith("..") and a.startswith(b[:-2]))
        for a, b in zip(sent_pairs, shown_pairs, strict=True)
    )


async def check_deal(
    deal: dict[str, Any], order: ShownOrder, shop: OpenCartShop
) -> None:
    places = await decimal_places(shop, order.currency)
    where = f"{order.site}:{order.order_id}"

    assert deal["source"]["id"] == SOURCES[order.site], where
    assert deal["main_responsible"]["id"] == 3, where
    assert deal["title"] == f"№{order.order_id} Сайт {order.site[-1].upper()}"
    assert deal["currency"] == order.currency, where
    assert Decimal(str(deal["total"])) == shown_amount(order.total, places), where
    assert deal["client"]["person"] == order.buyer, where

    names = await ukrainian_names(shop, order.order_id)
    jobs = deal["jobs"]
    assert len(jobs) == len(order.lines), where
    for job, shown, (name, variants) in zip(jobs, order.lines, names, strict=True):
        assert job["sku"] == shown.model, where
        assert Decimal(str(job["amount"])) == shown.quantity, where
        assert Decimal(str(job["price"])) == shown_amount(shown.unit_price, places)
        assert job["title"] == name, where
        if order.language == "uk-ua":
            assert name == shown.name, where
            assert same_variants(job.get("comment", ""), shown.options), where
        assert job.get("comment", "") == variants, where


async def test_fixture_orders_become_one_correct_deal_each(
    shops: dict[str, OpenCartShop], crm: Crm, tmp_path: Path
) -> None:
    """14 confirmed orders, 14 deals as shown; #5 of site_a (status 0) never sent."""
    config = write_settings(tmp_path / "settings.toml", shops, crm.url)
    expected = [o for o in shown_orders() if o.site in SOURCES]

    code, log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(crm.url)

    assert code == 0, log
    assert sorted(deals) == sorted(
        f"{o.site}:{o.order_id}" for o in expected if o.confirmed
    )
    assert "site_a:5" not in deals
    for order in expected:
        if order.confirmed:
            await check_deal(
                deals[f"{order.site}:{order.order_id}"], order, shops[order.site]
            )


async def test_a_second_run_creates_nothing(
    shops: dict[str, OpenCartShop], crm: Crm, tmp_path: Path
) -> None:
    """Running again over the same shops and log sends no new deal."""
    config = write_settings(tmp_path / "settings.toml", shops, crm.url)
    first, _ = await run_ocsync(config, "run", "--once")
    before = await deals_by_marker(crm.url)

    second, log = await run_ocsync(config, "run", "--once")
    after = await deals_by_marker(crm.url)

    assert (first, second) == (0, 0), log
    assert {m: d["id"] for m, d in after.items()} == {
        m: d["id"] for m, d in before.items()
    }
    assert '"created": 0' in log


async def test_an_unreachable_crm_fails_the_run_and_loses_nothing(
    shops: dict[str, OpenCartShop], crm: Crm, tmp_path: Path
) -> None:
    """With the CRM down the run exits 1; the next run sends every order once."""
    closed = "http://127.0.0.1:9/v1"
    config = write_settings(tmp_path / "settings.toml", shops, closed)

    down, down_log = await run_ocsync(config, "run", "--once")
    write_settings(tmp_path / "settings.toml", shops, crm.url)
    up, up_log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(crm.url)

    assert down == 1, down_log
    assert "crm unavailable" in down_log
    assert up == 0, up_log
    assert len(deals) == 14


async def test_an_unreachable_shop_fails_the_run_and_names_it(
    shops: dict[str, OpenCartShop], crm: Crm, tmp_path: Path
) -> None:
    """A shop that cannot be reached: exit 1, the other site's deals still sent."""
    config = write_settings(tmp_path / "settings.toml", shops, crm.url)
    text = config.read_text(encoding="utf-8")
    broken = shops["site_b"].url.database
    config.write_text(text.replace(broken, "ocsync_no_such_db"), encoding="utf-8")

    code, log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(crm.url)

    assert code == 1
    assert '"site": "site_b"' in log and "shop unavailable" in log
    assert {marker.split(":")[0] for marker in deals} == {"site_a"}

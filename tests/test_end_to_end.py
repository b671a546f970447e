"""The sample shops' orders become correct deals, end to end.

The real OpenCart 3.0 dumps are loaded into MariaDB, `ocsync run --once` runs as
a separate process against the KeepinCRM sandbox served on loopback, and every
deal is checked against ORDERS.md (what the storefront showed) and the dumps
(the catalogue's Ukrainian names), read at test time.
"""

from __future__ import annotations

import html
from decimal import Decimal
from pathlib import Path
from typing import Any

from projections.deal_totals import is_service_article
from tests.conftest import OpenCartShop
from tests.e2e_support import (
    SOURCES,
    SandboxCrm,
    deals_by_marker,
    run_ocsync,
    write_settings,
)
from tests.orders_md import ShownOrder, shown_amount, shown_orders
from tests.test_replay import log_position, site_block


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

    # The deal adds up to the total shown, with nothing hidden.
    lines_sum = sum(
        Decimal(str(job["price"])) * Decimal(str(job["amount"])) for job in deal["jobs"]
    )
    discount = Decimal(str(deal.get("discount") or 0))
    assert lines_sum - discount == Decimal(str(deal["total"])), where

    # Every total row as the customer saw it, title and amount, in the comment.
    comment = {
        title: amount
        for title, _, amount in (
            line.partition(": ") for line in deal["comment"].splitlines()
        )
    }
    for title, amount in order.totals:
        assert title in comment, (where, title)
        assert shown_amount(comment[title], places) == shown_amount(amount, places)

    names = await ukrainian_names(shop, order.order_id)
    jobs = [job for job in deal["jobs"] if not is_service_article(job["sku"])]
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
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """14 confirmed orders, 14 deals as shown; #5 of site_a (status 0) never sent."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    expected = [o for o in shown_orders() if o.site in SOURCES]

    code, log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(sandbox.url)

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
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """Running again over the same shops and log sends no new deal."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    first, _ = await run_ocsync(config, "run", "--once")
    before = await deals_by_marker(sandbox.url)
    position = await log_position(tmp_path)

    second, log = await run_ocsync(config, "run", "--once")
    after = await deals_by_marker(sandbox.url)

    assert (first, second) == (0, 0), log
    assert {m: d["id"] for m, d in after.items()} == {
        m: d["id"] for m, d in before.items()
    }
    assert '"created": 0' in log
    assert await log_position(tmp_path) == position, "the second run appended"


async def test_c10_a_history_row_alone_moves_the_deal_to_the_mapped_stage(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """C10: status 1 -> 3 as a new history row, date_modified still: stage 13."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    site_block(config, "site_a", 'stages = { "1" = 11, "3" = 13 }')
    first, log = await run_ocsync(config, "run", "--once")
    placed = (await deals_by_marker(sandbox.url))["site_a:2"]

    await shops["site_a"].add_history(
        2, 3, at="2026-12-03 19:30:00", move_modified=False
    )
    second, log = await run_ocsync(config, "run", "--once")
    moved = (await deals_by_marker(sandbox.url))["site_a:2"]

    assert (first, second) == (0, 0), log
    assert placed["stage"]["id"] == 11
    assert moved["id"] == placed["id"]
    assert moved["stage"]["id"] == 13


async def test_an_unreachable_crm_fails_the_run_and_loses_nothing(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """With the CRM down the run exits 1; the next run sends every order once."""
    closed = "http://127.0.0.1:9/v1"
    config = write_settings(tmp_path / "settings.toml", shops, closed)

    down, down_log = await run_ocsync(config, "run", "--once")
    write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    up, up_log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(sandbox.url)

    assert down == 1, down_log
    assert "crm unavailable" in down_log
    assert up == 0, up_log
    assert len(deals) == 14


async def test_an_unreachable_shop_fails_the_run_and_names_it(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """A shop that cannot be reached: exit 1, the other site's deals still sent."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    text = config.read_text(encoding="utf-8")
    broken = shops["site_b"].url.database
    config.write_text(text.replace(broken, "ocsync_no_such_db"), encoding="utf-8")

    code, log = await run_ocsync(config, "run", "--once")
    deals = await deals_by_marker(sandbox.url)

    assert code == 1
    assert '"site": "site_b"' in log and "shop unavailable" in log
    assert {marker.split(":")[0] for marker in deals} == {"site_a"}

"""`ocsync catalogue`: shop products with no CRM item, and articles spelt two ways."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from daemon.catalogue_report import catalogue_report, render_report, spelling_key
from daemon.settings import CaptureSettings, CrmSettings, EventLogSettings, Settings
from events import EventStore
from tests import factories
from tests.conftest import OpenCartShop
from tests.projection_support import TOKEN, Crm, place


async def two_shops(
    make_shop: Callable[..., Awaitable[OpenCartShop]],
) -> tuple[OpenCartShop, OpenCartShop]:
    """Two sites of one catalogue; site_b spells the monitor's model its own way."""
    site_a, site_b = await make_shop(), await make_shop()
    await site_b.execute(
        "UPDATE `oc_product` SET model = 'ac 30' WHERE product_id = 42"
    )
    return site_a, site_b


def report_settings(
    tmp_path: Path, url: str, site_a: OpenCartShop, site_b: OpenCartShop
) -> Settings:
    return Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url=url, token=TOKEN),
        capture=CaptureSettings(),
        deals=factories.deal_settings(),
        sites=[site_a.site("site_a"), site_b.site("site_b")],
        databases={"site_a": site_a.url, "site_b": site_b.url},
    )


async def test_products_with_no_crm_item_are_listed_per_site(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """The CRM has TS-01 and CASE-01: every AC-30 spelling is reported, per site."""
    site_a, site_b = await two_shops(make_shop)
    url = await crm.serve(
        catalogue=[
            {"sku": "TS-01", "title": "Футболка", "price": 15},
            {"sku": "CASE-01", "title": "Чохол", "price": 10},
        ]
    )

    report = await catalogue_report(report_settings(tmp_path, url, site_a, site_b))

    assert sorted((p.site, p.article) for p in report.unlinked) == [
        ("site_a", "AC-30"),
        ("site_b", "ac 30"),
    ]
    [monitor] = [p for p in report.unlinked if p.site == "site_a"]
    assert monitor.name == 'Монітор Apple Cinema 30"'
    assert (report.products, report.crm_items) == (6, 2)
    assert report.service_unlinked == ["rounding", "shipping", "tax"]


async def test_c13_an_ordered_article_of_a_deleted_product_is_reported(
    make_shop: Callable[..., Awaitable[OpenCartShop]],
    crm: Crm,
    store: EventStore,
    tmp_path: Path,
) -> None:
    """C13: product 77 is gone from the shop; its captured order line is listed."""
    site_a, site_b = await two_shops(make_shop)
    url = await crm.serve(catalogue=[{"sku": "TS-01", "title": "Футболка", "price": 1}])
    deleted = factories.line(product_id=77, name="Лампа настільна", model="LMP-77")
    kept = factories.line(order_product_id=2)
    await place(store, factories.snapshot(lines=[deleted, kept], order_id=12))

    report = await catalogue_report(
        report_settings(tmp_path, url, site_a, site_b), store
    )

    [gone] = [p for p in report.unlinked if p.article == "LMP-77"]
    assert (gone.site, gone.product_id, gone.name, gone.order_id) == (
        "site_a",
        77,
        "Лампа настільна",
        12,
    )
    assert [p.article for p in report.unlinked if p.order_id is not None] == ["LMP-77"]
    assert "LMP-77" in render_report(report)
    assert "no longer in the shop; ordered in #12" in render_report(report)


async def test_an_article_two_sites_spell_differently_is_reported(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """AC-30 on site_a and "ac 30" on site_b are one product spelt two ways."""
    site_a, site_b = await two_shops(make_shop)
    url = await crm.serve(catalogue=[])

    report = await catalogue_report(report_settings(tmp_path, url, site_a, site_b))

    [group] = report.spellings
    assert group.spellings == {"site_a": ["AC-30"], "site_b": ["ac 30"]}


def test_spelling_key_ignores_case_spaces_and_punctuation() -> None:
    """What makes two spellings one: letters and digits, any case."""
    assert spelling_key("AC-30") == spelling_key("ac 30") == spelling_key("Ac_30.")
    assert spelling_key("AC-30") != spelling_key("AC-300")

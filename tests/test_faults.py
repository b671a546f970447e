"""Orders reach the CRM exactly once through 5xx, timeouts, 429s, drops and kills."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from projections.keepincrm.sandbox_faults import FaultInjector, FaultPlan
from tests.conftest import OpenCartShop
from tests.fault_scenario import (
    CASE,
    EUR,
    TSHIRT,
    Outcome,
    Scenario,
    ShopOrder,
    check_crm,
    faulty_sandbox,
    run_scenario,
    settle,
    write_scenario_settings,
)


def test_fault_plan_is_drawn_from_its_seed_and_read_from_a_spec() -> None:
    """The same seed faults the same requests; a spec string names the rates."""
    plan = FaultPlan.parse("seed=7,5xx=0.2,timeouts=0.05,drops=0.05,429_every=10")
    first, second = FaultInjector(plan), FaultInjector(plan)

    drawn = [first.decide("POST") for _ in range(1000)]

    assert drawn == [second.decide("POST") for _ in range(1000)]
    # Every 10th request starts a burst of three 429s; the rest roll the rates.
    assert drawn[9:12] == ["rate_limited"] * 3
    rolled = [fault for fault in drawn if fault != "rate_limited"]
    assert 0.15 < rolled.count("server_error") / len(rolled) < 0.25
    assert first.counter.total == sum(fault is not None for fault in drawn)
    with pytest.raises(ValueError, match="unknown key 'retries'"):
        FaultPlan.parse("seed=1,retries=3")


async def test_one_correct_deal_per_order_through_faults_and_kills(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """50 orders (a fifth changed midway), faults, random kills: one right deal each."""
    scenario = Scenario(orders=50, seed=20261203, restarts=15, change_share=0.2)

    outcome = await run_scenario(await make_shop(), tmp_path, scenario)

    print(outcome.line())
    assert outcome.faults.total > 0, "the plan injected no fault at all"
    assert outcome.settle_codes[-1:] == [0], outcome.settle_codes
    assert outcome.duplicates == 0, outcome.report()
    assert outcome.lost == [], outcome.report()
    assert outcome.wrong == {}, outcome.report()
    assert outcome.strays == [], outcome.report()


async def test_correction_stored_without_an_answer_adds_no_line_twice(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """C14 for a correction: the PATCH is stored, its answer lost, sent again."""
    shop = await make_shop()
    order = ShopOrder(order_id=1, currency=EUR, lines=[(TSHIRT, 2)])
    await order.write(shop)
    # Every PATCH is stored, then answered only after the client gave up.
    plan = FaultPlan(
        seed=1,
        server_error_rate=0,
        timeout_after_store_rate=1,
        drop_connection_rate=0,
        rate_limit_every=0,
        hang_seconds=2,
        methods=("PATCH",),
    )

    async with faulty_sandbox(tmp_path / "crm.db", plan) as (url, injector):
        config = write_scenario_settings(
            tmp_path / "settings.toml", shop, url, Scenario()
        )
        created = await settle(config, tmp_path, runs=1, seconds=60)
        await order.add_product(shop, CASE)
        uncertain = await settle(config, tmp_path, runs=1, seconds=60)
        injector.enabled = False
        settled = await settle(config, tmp_path, runs=1, seconds=60)

        outcome = Outcome(orders=1, faults=injector.counter, restarts=0)
        await check_crm(url, [order.expected()], outcome)

    # The CRM answers other calls: the lost correction waits for the next
    # pass, which the run's exit code says.
    assert (created, uncertain, settled) == ([0], [1], [0])
    assert injector.counter.timeout_after_store == 1
    assert outcome.duplicates == 0
    assert outcome.wrong == {}

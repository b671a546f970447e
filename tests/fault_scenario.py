"""The fault scenario: orders through a failing CRM and a daemon killed at random.

Shared by `tests/test_faults.py` (50 orders, part of the suite) and
`scripts/soak.py` (a thousand, run by hand). A scratch shop gets seeded random
orders; the KeepinCRM sandbox is served in this process with a `FaultPlan`;
`ocsync run` runs as its own process and is killed (SIGKILL) at random moments
and started again, until every order has a deal or the restarts run out. Once
half the orders have a deal, a share of them gains a line, so that deals are
corrected under the same faults. Then the faults are switched off, `ocsync run
--once` settles what is left, and the CRM is read: exactly one correct deal per
order, and no other deal.

Everything random comes from the seed: the orders, the faults (drawn per
request, in the order requests arrive) and the moments of the kills. Every wait
is bounded; a slow machine makes the scenario take longer, never hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import secrets
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import aiomysql
from aiohttp import web

from daemon.settings import DatabaseUrl
from projections.deal_totals import is_service_article
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import API_PREFIX, create_sandbox_app
from projections.keepincrm.sandbox_faults import (
    FAULTS,
    FaultCounter,
    FaultInjector,
    FaultPlan,
)
from tests.conftest import DB_HOST, DB_PORT, SCHEMA, LineSpec, OpenCartShop, load_sql
from tests.e2e_support import MARKER_FIELD, REPO, TOKEN

SITE = "site_a"
_TOKEN_ENV = "E2E_CRM_TOKEN"
# The shop's currencies (`seed_catalogue`): code, currency_id, rate, and the
# step its amounts are shown in.
_CURRENCIES = (("EUR", 3, Decimal("1")), ("UAH", 4, Decimal("45.37")))
_PLACES = {"EUR": Decimal("0.01"), "UAH": Decimal("1")}
# Orders are placed a minute apart from here, so that a poll re-reads only the
# few inside the capture's overlap window, not all of them.
_FIRST_PLACED = dt.datetime(2026, 11, 1, 9, 0)
# How long a daemon may take to stop after SIGTERM before it is killed.
_STOP_SECONDS = 15
# Orders gone wrong whose story is read from the log, at most.
_STORIES = 5


class ScenarioError(Exception):
    """The scenario could not run to its check (the daemon died on its own)."""


@dataclass(frozen=True)
class Scenario:
    """The knobs of one run; the defaults are the suite's small, fast run."""

    orders: int = 50
    seed: int = 20261203
    # Kills of the daemon, at most; the scenario stops earlier once caught up.
    restarts: int = 15
    # A kill comes this many seconds (uniform) after the daemon started.
    kill_after: tuple[float, float] = (0.5, 3.0)
    crm_timeout: float = 1.0
    hang_seconds: float = 2.0
    drop_connection_rate: float = 0.03
    rate_limit_every: int = 40
    rate_limit_burst: int = 3
    # The share of orders that gain a line once half of them have a deal, so
    # that deals are corrected (PATCH) under faults too.
    change_share: float = 0.2
    # How long the daemon left running after the last kill may take to catch up.
    last_run_seconds: float = 10.0
    # `ocsync run --once` tries with faults off, each bounded in time.
    settle_runs: int = 5
    settle_seconds: float = 120.0

    def fault_plan(self) -> FaultPlan:
        return FaultPlan(
            seed=self.seed,
            server_error_rate=0.2,
            timeout_after_store_rate=0.05,
            drop_connection_rate=self.drop_connection_rate,
            rate_limit_every=self.rate_limit_every,
            rate_limit_burst=self.rate_limit_burst,
            hang_seconds=self.hang_seconds,
        )


@dataclass(frozen=True)
class ExpectedDeal:
    """What a fault-free run makes of one order: its product lines and total."""

    marker: str
    currency: str
    # (article, quantity, unit price shown) of each product line, sorted.
    lines: tuple[tuple[str, Decimal, Decimal], ...]
    total: Decimal


@dataclass
class Outcome:
    """What the CRM holds at the end, against the orders."""

    orders: int
    faults: FaultCounter
    restarts: int
    duplicates: int = 0
    # Orders with more than one deal, and orders with none.
    doubled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    # Orders whose one deal differs from the expected one: marker -> why.
    wrong: dict[str, str] = field(default_factory=dict)
    # Deals carrying no marker of these orders.
    strays: list[int] = field(default_factory=list)
    # Orders with no deal yet when the faults stopped, and the exit codes of
    # the `ocsync run --once` runs that settled them.
    left_to_settle: int = 0
    settle_codes: list[int] = field(default_factory=list)
    # Orders that gained a line while the daemon ran (None: not reached).
    changed: int | None = 0
    # `ocsync audit` of the first few orders gone wrong, to say why.
    stories: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.wrong or self.strays)

    def report(self) -> str:
        """The summary line, then what went wrong, each order with its story."""
        parts = [self.line()]
        parts += [f"no deal for {marker}" for marker in self.lost]
        parts += [f"more than one deal for {marker}" for marker in self.doubled]
        parts += [
            f"wrong deal for {marker}: {why}" for marker, why in self.wrong.items()
        ]
        if self.strays:
            parts.append(f"deals of no order: {self.strays}")
        parts += [f"--- ocsync audit {m}\n{story}" for m, story in self.stories.items()]
        return "\n".join(parts)

    def line(self) -> str:
        """The one summary line both the test and the soak command print."""
        return (
            f"orders={self.orders} faults={self.faults.total}"
            f" ({self.faults.summary()}) restarts={self.restarts}"
            f" duplicates={self.duplicates} lost={len(self.lost)}"
        )


# The products of `seed_catalogue`, as order lines: id, name, article, unit
# price and tax per unit (EUR, the shop's default currency).
Product = tuple[int, str, str, Decimal, Decimal]
TSHIRT: Product = (50, "Футболка з логотипом", "TS-01", Decimal("15"), Decimal("3"))
CASE: Product = (51, "Чохол для смартфона", "CASE-01", Decimal("9.99"), Decimal(0))
MONITOR: Product = (
    42,
    "Монітор Apple Cinema 30&quot;",
    "AC-30",
    Decimal(100),
    Decimal(20),
)
_PRODUCTS = (TSHIRT, CASE, MONITOR)
EUR = ("EUR", 3, Decimal("1"))
_BUYERS = (
    ("Олена", "Коваленко", "+380671112201"),
    ("Андрій", "Шевченко", "+380501112202"),
    ("Марія", "Бондаренко", "+380931112203"),
    ("Ігор", "Ткаченко", ""),
    ("Наталія", "Мельник", "+380661112205"),
)


@dataclass
class ShopOrder:
    """One order as written to the shop: enough to say what its deal must be."""

    order_id: int
    currency: tuple[str, int, Decimal]
    lines: list[tuple[Product, int]]

    @property
    def marker(self) -> str:
        return f"{SITE}:{self.order_id}"

    def expected(self) -> ExpectedDeal:
        code, _, rate = self.currency
        sub_total, tax = self._sums()
        shown = [
            (article, Decimal(qty), _shown(price + tax, rate, code))
            for (_, _, article, price, tax), qty in self.lines
        ]
        return ExpectedDeal(
            marker=self.marker,
            currency=code,
            lines=tuple(sorted(shown)),
            total=_shown(sub_total + tax, rate, code),
        )

    async def write(self, shop: OpenCartShop, status: int = 2, buyer: int = 0) -> None:
        """Place the order in the shop, confirmed (`status`), by one of the buyers."""
        code, currency_id, rate = self.currency
        firstname, lastname, phone = _BUYERS[buyer]
        placed_at = _FIRST_PLACED + dt.timedelta(minutes=self.order_id)
        await shop.add_order(
            self.order_id,
            status=status,
            placed_at=f"{placed_at:%Y-%m-%d %H:%M:%S}",
            lines=[_line_spec(product, qty) for product, qty in self.lines],
            currency_id=currency_id,
            currency_code=code,
            currency_value=rate,
            firstname=firstname,
            lastname=lastname,
            telephone=phone,
        )
        await self._write_totals(shop)

    async def add_product(self, shop: OpenCartShop, product: Product) -> None:
        """The order gains a line of `product`, as an admin's edit would."""
        self.lines.append((product, 1))
        await shop.add_lines(self.order_id, [_line_spec(product, 1)])
        await self._write_totals(shop)
        edited = _FIRST_PLACED + dt.timedelta(days=1, minutes=self.order_id)
        await shop.update_order(
            self.order_id, date_modified=f"{edited:%Y-%m-%d %H:%M:%S}"
        )

    async def _write_totals(self, shop: OpenCartShop) -> None:
        # The builder's total rows are fixed; make them those of these lines.
        sub_total, tax = self._sums()
        rows = (("sub_total", sub_total), ("tax", tax), ("total", sub_total + tax))
        for row_code, value in rows:
            await shop.execute(
                "UPDATE `oc_order_total` SET value = %s"
                " WHERE order_id = %s AND code = %s",
                f"{value:.4f}",
                self.order_id,
                row_code,
            )
        await shop.update_order(self.order_id, total=f"{sub_total + tax:.4f}")

    def _sums(self) -> tuple[Decimal, Decimal]:
        sub_total = sum((p[3] * qty for p, qty in self.lines), Decimal(0))
        tax = sum((p[4] * qty for p, qty in self.lines), Decimal(0))
        return sub_total, tax


async def add_orders(
    shop: OpenCartShop, count: int, rng: random.Random
) -> list[ShopOrder]:
    """`count` confirmed orders of 1 to 3 lines, some in hryvnias, by several buyers."""
    orders = []
    for order_id in range(1, count + 1):
        chosen = sorted(rng.sample(_PRODUCTS, rng.randint(1, 3)))
        order = ShopOrder(
            order_id=order_id,
            currency=rng.choices(_CURRENCIES, weights=(4, 1))[0],
            lines=[(product, rng.randint(1, 4)) for product in chosen],
        )
        await order.write(
            shop, status=rng.choice((1, 2)), buyer=rng.randrange(len(_BUYERS))
        )
        orders.append(order)
    return orders


async def change_orders(
    shop: OpenCartShop, orders: list[ShopOrder], share: float, rng: random.Random
) -> int:
    """A `share` of the orders gains a line of a product it lacked; how many did."""
    changed = 0
    # An edit is stamped later the higher its order id, and the shop's clock only
    # moves forward: write the edits in that order, as a real shop would stamp them.
    sample = rng.sample(orders, round(len(orders) * share))
    for order in sorted(sample, key=lambda order: order.order_id):
        missing = [p for p in _PRODUCTS if p not in {line[0] for line in order.lines}]
        if missing:
            await order.add_product(shop, rng.choice(missing))
            changed += 1
    return changed


def _line_spec(product: Product, qty: int) -> LineSpec:
    product_id, name, model, price, tax = product
    return LineSpec(
        product_id=product_id,
        name=name,
        model=model,
        quantity=qty,
        price=f"{price:.4f}",
        total=f"{price * qty:.4f}",
        tax=f"{tax:.4f}",
    )


def _shown(amount: Decimal, rate: Decimal, code: str) -> Decimal:
    """An amount in EUR as the storefront shows it in `code` (half away from 0)."""
    return (amount * rate).quantize(_PLACES[code], rounding=ROUND_HALF_UP)


def write_scenario_settings(
    path: Path, shop: OpenCartShop, crm_url: str, scenario: Scenario
) -> Path:
    """Settings with the CRM's timeouts, retries and rate scaled down for speed."""
    url = shop.url
    path.write_text(
        f"""
[event_log]
url = "sqlite:///events.db"

[crm]
base_url = "{crm_url}"
token = "${{{_TOKEN_ENV}}}"
timeout = {scenario.crm_timeout}
max_attempts = 3
retry_initial_seconds = 0.01
retry_max_seconds = 0.1
requests_per_minute = 6000

[run]
shutdown_seconds = 2

[capture]
poll_interval = 0.2

[deals]
article_fields = ["model"]

[deals.custom_fields]
marker = "{MARKER_FIELD}"

[[sites]]
name = "{SITE}"
title = "Сайт A"
database = "mysql://root:@{url.host}:{url.port}/{url.database}"
source_id = 21
responsible_id = 3
sync_from = "all"
""",
        encoding="utf-8",
    )
    return path


@asynccontextmanager
async def faulty_sandbox(
    store: Path, plan: FaultPlan
) -> AsyncIterator[tuple[str, FaultInjector]]:
    """The sandbox with `plan`, served here on loopback: its URL and injector."""
    app = create_sandbox_app(store, TOKEN, None, "create", faults=plan)
    injector = app[FAULTS]
    runner = web.AppRunner(app, shutdown_timeout=plan.hang_seconds + 1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}{API_PREFIX}", injector
    finally:
        await runner.cleanup()


async def run_scenario(
    shop: OpenCartShop, workdir: Path, scenario: Scenario
) -> Outcome:
    """Orders, faults and kills, then the check of what the CRM holds."""
    orders = await add_orders(shop, scenario.orders, random.Random(scenario.seed))
    store = workdir / "crm.db"

    async with faulty_sandbox(store, scenario.fault_plan()) as (url, injector):
        config = write_scenario_settings(workdir / "settings.toml", shop, url, scenario)
        kills = _Kills(config, workdir, store, shop, orders, scenario)
        await kills.run()

        # Faults off: what is left is settled the way the next run settles it.
        injector.enabled = False
        left = len(kills.markers - set(_marker_counts(store)))
        codes = await settle(
            config, workdir, scenario.settle_runs, scenario.settle_seconds
        )
        outcome = Outcome(
            orders=len(orders),
            faults=injector.counter,
            restarts=kills.restarts,
            changed=kills.changed,
            left_to_settle=left,
            settle_codes=codes,
        )
        await check_crm(url, [order.expected() for order in orders], outcome)
    outcome.stories = await _stories(config, outcome)
    return outcome


class _Kills:
    """The daemon run, killed at random moments and started again until caught up.

    After `scenario.restarts` kills it is left to run, at most
    `last_run_seconds`, and then stopped with SIGTERM. Once half the orders
    have a deal, a share of the orders changes (`scenario.change_share`).
    """

    def __init__(
        self,
        config: Path,
        workdir: Path,
        store: Path,
        shop: OpenCartShop,
        orders: list[ShopOrder],
        scenario: Scenario,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.store = store
        self.shop = shop
        self.orders = orders
        self.scenario = scenario
        self.markers = {order.marker for order in orders}
        self.restarts = 0
        self.changed: int | None = None if scenario.change_share else 0
        self._random = random.Random(f"kills-{scenario.seed}")

    async def run(self) -> None:
        while True:
            last = self.restarts >= self.scenario.restarts
            log = self.workdir / f"daemon-{self.restarts}.log"
            daemon = await start_logged_daemon(self.config, log)
            try:
                patience = (
                    self.scenario.last_run_seconds
                    if last
                    else self._random.uniform(*self.scenario.kill_after)
                )
                if await self._caught_up(patience, daemon, log) or last:
                    await _stop(daemon, log)
                    return
                await _kill(daemon, log)
                self.restarts += 1
            finally:
                if daemon.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        daemon.kill()
                    await daemon.wait()

    async def _caught_up(
        self, seconds: float, daemon: asyncio.subprocess.Process, log: Path
    ) -> bool:
        """Wait up to `seconds` for every order to have a deal; whether they do."""
        deadline = time.monotonic() + seconds
        while True:
            with_deal = self.markers & set(_marker_counts(self.store))
            if self.changed is None and len(with_deal) * 2 >= len(self.markers):
                self.changed = await change_orders(
                    self.shop, self.orders, self.scenario.change_share, self._random
                )
            if with_deal == self.markers and self.changed is not None:
                return True
            if daemon.returncode is not None:
                raise ScenarioError(_died(daemon, log))
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.2, left))


async def start_logged_daemon(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`ocsync run` with its stderr in `log`, to be read while it runs."""
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "--config",
            str(config),
            "run",
            cwd=REPO,
            env={**os.environ, _TOKEN_ENV: TOKEN},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


async def _kill(daemon: asyncio.subprocess.Process, log: Path) -> None:
    """SIGKILL: no shutdown, no last commit, as a power cut or the OOM killer."""
    with contextlib.suppress(ProcessLookupError):
        daemon.kill()
    await daemon.wait()
    if daemon.returncode != -signal.SIGKILL:
        raise ScenarioError(_died(daemon, log))


async def _stop(daemon: asyncio.subprocess.Process, log: Path) -> None:
    """SIGTERM, and SIGKILL when it does not stop within a bound."""
    with contextlib.suppress(ProcessLookupError):
        daemon.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(_STOP_SECONDS):
            await daemon.wait()
    except TimeoutError:
        daemon.kill()
        await daemon.wait()
        return
    if daemon.returncode != 0:
        raise ScenarioError(_died(daemon, log))


def _died(daemon: asyncio.subprocess.Process, log: Path) -> str:
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    return (
        f"ocsync run exited {daemon.returncode} on its own; the end of {log}:\n"
        + "\n".join(tail)
    )


def _marker_counts(store: Path) -> Counter[str]:
    """Deals per marker, read from the sandbox's file (past the faults)."""
    if not store.exists():
        return Counter()
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT value, COUNT(*) FROM deal_custom_fields"
            " WHERE name = ? GROUP BY value",
            (MARKER_FIELD,),
        ).fetchall()
    except sqlite3.OperationalError:
        return Counter()
    finally:
        db.close()
    return Counter({value: count for value, count in rows})


async def settle(config: Path, workdir: Path, runs: int, seconds: float) -> list[int]:
    """`ocsync run --once` until it exits 0, at most `runs` times; the codes.

    Each run may take `seconds`; its log is `once-<n>.log` in `workdir`.
    """
    codes = []
    for _ in range(runs):
        log = workdir / f"once-{len(list(workdir.glob('once-*.log')))}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "daemon",
                "--config",
                str(config),
                "run",
                "--once",
                cwd=REPO,
                env={**os.environ, _TOKEN_ENV: TOKEN},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            async with asyncio.timeout(seconds):
                codes.append(await process.wait())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if codes[-1] == 0:
            break
    return codes


async def check_crm(url: str, expected: list[ExpectedDeal], outcome: Outcome) -> None:
    """Count every deal the CRM has by marker and compare each with its order."""
    # Faults are off by now; the check is not held to the daemon's rate limit.
    checker = KeepinCRMClient(url, TOKEN, timeout=30, requests_per_minute=60_000)
    async with checker as client:
        ids = [int(deal["id"]) async for deal in client.list_deals()]
        deals = [await client.get_deal(deal_id) for deal_id in ids]

    by_marker: dict[str, list[dict[str, Any]]] = {}
    for deal in deals:
        fields = {f["name"]: f["value"] for f in deal["custom_fields_detailed"]}
        by_marker.setdefault(str(fields.get(MARKER_FIELD)), []).append(deal)

    for order in expected:
        found = by_marker.pop(order.marker, [])
        if not found:
            outcome.lost.append(order.marker)
            continue
        outcome.duplicates += len(found) - 1
        if len(found) > 1:
            outcome.doubled.append(order.marker)
        problems = [_difference(deal, order) for deal in found]
        if any(problems):
            outcome.wrong[order.marker] = "; ".join(filter(None, problems))
    outcome.strays = sorted(int(deal["id"]) for ds in by_marker.values() for deal in ds)


async def _stories(config: Path, outcome: Outcome) -> dict[str, str]:
    """The log's story of a few lost, doubled or wrong orders (`ocsync audit`)."""
    markers = [*outcome.lost, *outcome.doubled, *outcome.wrong][:_STORIES]
    stories = {}
    for marker in markers:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "daemon",
            "--config",
            str(config),
            "audit",
            marker,
            cwd=REPO,
            env={**os.environ, _TOKEN_ENV: TOKEN},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(60):
            story, _ = await process.communicate()
        stories[marker] = story.decode("utf-8", "replace")
    return stories


def _difference(deal: dict[str, Any], order: ExpectedDeal) -> str:
    """What differs between a deal and the one expected; "" when nothing."""
    lines = tuple(
        sorted(
            (job["sku"], Decimal(str(job["amount"])), Decimal(str(job["price"])))
            for job in deal["jobs"]
            if not is_service_article(job["sku"])
        )
    )
    total = Decimal(str(deal["total"]))
    problems = []
    if lines != order.lines:
        problems.append(f"lines {lines} != {order.lines}")
    if total != order.total:
        problems.append(f"total {total} != {order.total}")
    if deal["currency"] != order.currency:
        problems.append(f"currency {deal['currency']} != {order.currency}")
    return ", ".join(problems)


@asynccontextmanager
async def scratch_shop() -> AsyncIterator[OpenCartShop]:
    """A scratch shop database of its own, as `make_shop` makes; dropped after."""
    name = f"ocsync_soak_{secrets.token_hex(6)}"
    admin = await _connect(None)
    try:
        async with admin.cursor() as cursor:
            await cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        try:
            url = DatabaseUrl(
                user="root", password="", host=DB_HOST, port=DB_PORT, database=name
            )
            shop = OpenCartShop(url=url, prefix="oc_", writer=await _connect(name))
            try:
                await load_sql(name, SCHEMA.read_text(encoding="utf-8"))
                await shop.seed_catalogue()
                yield shop
            finally:
                shop.writer.close()
        finally:
            async with admin.cursor() as cursor:
                await cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


async def _connect(database: str | None) -> Any:
    return await aiomysql.connect(
        host=DB_HOST,
        port=DB_PORT,
        user="root",
        password="",
        db=database,
        charset="utf8mb4",
        autocommit=True,
    )

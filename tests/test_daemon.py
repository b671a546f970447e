"""`ocsync run` as a long-lived process: it keeps syncing and stops on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from events import DealCreated, DealCreateFailed, DealRequested, open_event_store
from projections.keepincrm.sandbox_faults import FaultPlan
from tests.conftest import DB_HOST, DB_PORT, OpenCartShop
from tests.e2e_support import REPO, TOKEN, SandboxCrm, deals_by_marker, write_settings
from tests.fault_scenario import (
    EUR,
    TSHIRT,
    Outcome,
    Scenario,
    ShopOrder,
    check_crm,
    faulty_sandbox,
    settle,
    start_logged_daemon,
    write_scenario_settings,
)
from tests.test_replay import edit

# Bounds on waiting for the daemon, not timings under test: a slow machine
# only makes the test wait longer before it gives up.
_PATIENCE_SECONDS = 60


async def wait_for_deals(sandbox: SandboxCrm, count: int) -> set[str]:
    async with asyncio.timeout(_PATIENCE_SECONDS):
        while len(markers := set(await deals_by_marker(sandbox.url))) < count:
            await asyncio.sleep(0.2)
    return markers


async def start_daemon(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        "--config",
        str(config),
        "run",
        cwd=REPO,
        env={**os.environ, "E2E_CRM_TOKEN": TOKEN},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_daemon_syncs_new_orders_and_stops_on_sigterm(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """Running, it sends an order confirmed later; SIGTERM ends it with exit 0."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    daemon = await start_daemon(config)
    try:
        before = await wait_for_deals(sandbox, 14)

        # site_a #5 was never confirmed; a payment callback confirms it now (C1).
        await shops["site_a"].add_history(5, 2, at="2026-12-03 19:30:00")
        after = await wait_for_deals(sandbox, 15)

        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(_PATIENCE_SECONDS):
            _, stderr = await daemon.communicate()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    log = stderr.decode("utf-8", "replace")
    assert "site_a:5" not in before
    assert after - before == {"site_a:5"}
    assert daemon.returncode == 0, log
    assert '"event": "stopped"' in log


async def wait_until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(_PATIENCE_SECONDS):
        while not check():
            await asyncio.sleep(0.05)


async def stopped(daemon: asyncio.subprocess.Process) -> int:
    """The daemon's exit code; killed (and the test failed) if it never exits."""
    try:
        async with asyncio.timeout(_PATIENCE_SECONDS):
            return await daemon.wait()
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()


def hanging_creates(hang_seconds: float) -> FaultPlan:
    """Every create is stored, then answered only after `hang_seconds`."""
    return FaultPlan(
        seed=1,
        server_error_rate=0,
        timeout_after_store_rate=1,
        drop_connection_rate=0,
        rate_limit_every=0,
        hang_seconds=hang_seconds,
        methods=("POST",),
    )


def daemon_settings(
    tmp_path: Path, shop: OpenCartShop, url: str, crm_timeout: float
) -> Path:
    """The fault scenario's settings, with time to finish the request in flight."""
    config = write_scenario_settings(
        tmp_path / "settings.toml", shop, url, Scenario(crm_timeout=crm_timeout)
    )
    edit(config, "shutdown_seconds = 2", f"shutdown_seconds = {crm_timeout * 10}")
    return config


async def test_sigterm_while_a_create_hangs_keeps_the_intent_and_exits_0(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """The create in flight ends, DealRequested is in the log; a restart settles it."""
    shop = await make_shop()
    order = ShopOrder(order_id=1, currency=EUR, lines=[(TSHIRT, 2)])
    await order.write(shop)
    log = tmp_path / "daemon.log"

    async with faulty_sandbox(tmp_path / "crm.db", hanging_creates(8)) as (
        url,
        injector,
    ):
        config = daemon_settings(tmp_path, shop, url, crm_timeout=4)
        daemon = await start_logged_daemon(config, log)
        try:
            # The create was received: it is stored, and its answer hangs.
            await wait_until(lambda: injector.counter.timeout_after_store == 1)
            daemon.send_signal(signal.SIGTERM)
        finally:
            code = await stopped(daemon)
        store = await open_event_store("sqlite:///events.db", tmp_path)
        try:
            recorded = [item.event for item in await store.read_stream(order.marker)]
        finally:
            await store.close()

        injector.enabled = False
        settled = await settle(config, tmp_path, runs=1, seconds=60)
        outcome = Outcome(orders=1, faults=injector.counter, restarts=1)
        await check_crm(url, [order.expected()], outcome)

    assert code == 0, log.read_text("utf-8")
    assert '"event": "stopping"' in log.read_text("utf-8")
    assert any(isinstance(event, DealRequested) for event in recorded), recorded
    # The request in flight was finished (its answer lost), not cut off.
    assert any(isinstance(event, DealCreateFailed) for event in recorded), recorded
    assert not any(isinstance(event, DealCreated) for event in recorded), recorded
    assert settled == [0]
    assert (outcome.lost, outcome.duplicates, outcome.wrong) == ([], 0, {})


async def test_a_second_sigterm_exits_at_once_with_an_error_code(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """Stopping, waiting on a hung create: a second SIGTERM exits 1, not after it."""
    shop = await make_shop()
    await ShopOrder(order_id=1, currency=EUR, lines=[(TSHIRT, 1)]).write(shop)
    log = tmp_path / "daemon.log"

    async with faulty_sandbox(tmp_path / "crm.db", hanging_creates(12)) as (
        url,
        injector,
    ):
        config = daemon_settings(tmp_path, shop, url, crm_timeout=10)
        daemon = await start_logged_daemon(config, log)
        try:
            await wait_until(lambda: injector.counter.timeout_after_store == 1)
            daemon.send_signal(signal.SIGTERM)
            await wait_until(lambda: '"event": "stopping"' in log.read_text("utf-8"))
            daemon.send_signal(signal.SIGTERM)
        finally:
            code = await stopped(daemon)

    text = log.read_text("utf-8")
    # A stop that waited for the create would have exited 0 with "stopped".
    assert code == 1, text
    assert '"event": "second signal, exiting at once"' in text
    assert '"event": "stopped"' not in text


class DaemonLog:
    """The daemon's stderr JSON lines, read as they come."""

    def __init__(self, daemon: asyncio.subprocess.Process) -> None:
        assert daemon.stderr is not None
        self._stream = daemon.stderr
        self.lines: list[dict[str, Any]] = []
        self.reading = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._stream:
            text = raw.decode("utf-8", "replace")
            if text.startswith("{"):
                self.lines.append(json.loads(text))

    async def wait_for(self, event: str, after: int = 0, **fields: Any) -> int:
        """The index of the first line past `after` with this event and fields."""
        async with asyncio.timeout(_PATIENCE_SECONDS):
            while True:
                for index, line in enumerate(self.lines[after:], start=after):
                    wanted = {name: line.get(name) for name in fields}
                    if line["event"] == event and wanted == fields:
                        return index
                await asyncio.sleep(0.2)


@dataclass
class ShopAccount:
    """A shop database's own MariaDB user, managed as root."""

    user: str
    database: str

    async def run(self, *statements: str) -> None:
        """Each statement for both hosts the user may come from, as root."""
        admin = await aiomysql.connect(
            host=DB_HOST, port=DB_PORT, user="root", password="", autocommit=True
        )
        try:
            async with admin.cursor() as cursor:
                for host in ("127.0.0.1", "localhost"):
                    account = f"'{self.user}'@'{host}'"
                    for statement in statements:
                        sql = statement.format(account=account, db=self.database)
                        await cursor.execute(sql)
        finally:
            admin.close()

    async def cut_off(self) -> None:
        """Take the grant away and end the sessions already open with it."""
        await self.run("REVOKE SELECT ON `{db}`.* FROM {account}")
        admin = await aiomysql.connect(
            host=DB_HOST, port=DB_PORT, user="root", password="", autocommit=True
        )
        try:
            async with admin.cursor() as cursor:
                await cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s",
                    (self.user,),
                )
                for (session,) in await cursor.fetchall():
                    with contextlib.suppress(aiomysql.MySQLError):
                        await cursor.execute(f"KILL {int(session)}")
        finally:
            admin.close()


@pytest.fixture
async def site_b_account(shops: dict[str, OpenCartShop]) -> AsyncIterator[ShopAccount]:
    """A SELECT-only MariaDB user for site_b, whose grant a test can take away."""
    account = ShopAccount(
        user=f"ocsync_b_{secrets.token_hex(4)}", database=shops["site_b"].url.database
    )
    await account.run("CREATE USER {account}", "GRANT SELECT ON `{db}`.* TO {account}")
    yield account
    await account.run("DROP USER IF EXISTS {account}")


async def test_a_shop_outage_is_reported_and_the_other_site_goes_on(
    shops: dict[str, OpenCartShop],
    sandbox: SandboxCrm,
    site_b_account: ShopAccount,
    tmp_path: Path,
) -> None:
    """site_b cut off mid-run: warned, site_a's new order still sent, b recovers."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    text = config.read_text(encoding="utf-8")
    root_b = f"mysql://root:@{DB_HOST}:{DB_PORT}/{site_b_account.database}"
    user_b = root_b.replace("root:@", f"{site_b_account.user}:@")
    assert text.count(root_b) == 1
    config.write_text(text.replace(root_b, user_b), encoding="utf-8")
    daemon = await start_daemon(config)
    log = DaemonLog(daemon)
    try:
        await wait_for_deals(sandbox, 14)

        await site_b_account.cut_off()
        failed = await log.wait_for("capture failed", site="site_b", level="warning")
        await shops["site_a"].add_history(5, 2, at="2026-12-03 19:30:00")
        after = await wait_for_deals(sandbox, 15)

        await site_b_account.run("GRANT SELECT ON `{db}`.* TO {account}")
        await shops["site_b"].add_history(1, 5, at="2026-12-03 19:40:00")
        await log.wait_for(
            "order captured",
            after=failed,
            site="site_b",
            order_id=1,
            event_type="OrderChanged",
        )

        daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(_PATIENCE_SECONDS):
            await daemon.wait()
            await log.reading
    finally:
        if daemon.returncode is None:
            daemon.kill()
            await daemon.wait()

    assert "site_a:5" in after
    assert daemon.returncode == 0, log.lines[-5:]
    assert "access denied" in log.lines[failed]["reason"].lower()

"""`ocsync run` as a long-lived process: it keeps syncing and stops on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomysql
import pytest

from tests.conftest import DB_HOST, DB_PORT, OpenCartShop
from tests.e2e_support import REPO, TOKEN, SandboxCrm, deals_by_marker, write_settings

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

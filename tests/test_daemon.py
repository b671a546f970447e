"""`ocsync run` as a long-lived process: it keeps syncing and stops on a signal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.conftest import OpenCartShop
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

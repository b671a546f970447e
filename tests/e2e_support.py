"""Fixture shops in MariaDB, the sandbox CRM, and ocsync run as its own process.

Shared by the tests that drive the whole program end to end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.sandbox import create_sandbox_app
from tests.conftest import OpenCartShop
from tests.orders_md import FIXTURES

REPO = Path(__file__).resolve().parent.parent
TOKEN = "e2e-token-5f1c2a"
SOURCES = {"site_a": 21, "site_b": 22}
MARKER_FIELD = "field_7"


@dataclass
class SandboxCrm:
    url: str
    store: Path


@pytest.fixture
async def shops(
    make_shop: Callable[..., Awaitable[OpenCartShop]],
) -> dict[str, OpenCartShop]:
    return {site: await make_shop(dump=FIXTURES / f"{site}.sql") for site in SOURCES}


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxCrm]:
    store = tmp_path / "crm.db"
    app = create_sandbox_app(store, TOKEN, None, "create")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield SandboxCrm(url=str(server.make_url("/v1")), store=store)
    await server.close()


def write_settings(
    path: Path,
    shops: dict[str, OpenCartShop],
    crm_url: str,
    article: str = "model",
    capture: str = "",
) -> Path:
    """The settings of an end-to-end run; `capture` adds lines to [capture]."""
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
# The sandbox is no real account: no need to pace the tests.
requests_per_minute = 60000
retry_initial_seconds = 0.01
retry_max_seconds = 0.05

[capture]
poll_interval = 1
{capture}

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
    code, _, stderr = await ocsync_output(config, *args)
    return code, stderr


async def ocsync_output(config: Path, *args: str) -> tuple[int, str, str]:
    """`ocsync --config FILE ARGS...`: exit code, stdout and stderr."""
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
    stdout, stderr = await process.communicate()
    return (
        process.returncode or 0,
        stdout.decode("utf-8", "replace"),
        stderr.decode("utf-8", "replace"),
    )


async def deals_by_marker(crm_url: str) -> dict[str, dict[str, Any]]:
    async with KeepinCRMClient(crm_url, TOKEN, requests_per_minute=60000) as client:
        ids = [int(deal["id"]) async for deal in client.list_deals()]
        deals = [await client.get_deal(deal_id) for deal_id in ids]
    by_marker: dict[str, dict[str, Any]] = {}
    for deal in deals:
        fields = {f["name"]: f["value"] for f in deal["custom_fields_detailed"]}
        marker = fields[MARKER_FIELD]
        assert marker not in by_marker, f"two deals for {marker}"
        by_marker[marker] = deal
    return by_marker

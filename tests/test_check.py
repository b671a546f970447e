"""`ocsync check`: parts reachable, and a warning for a shop user that can write."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from daemon.check import check, granted_roles, writable_privileges
from daemon.settings import (
    CaptureSettings,
    CrmSettings,
    DatabaseUrl,
    EventLogSettings,
    Settings,
)
from tests import factories
from tests.conftest import OpenCartShop
from tests.orders_md import FIXTURES
from tests.projection_support import TOKEN, Crm

# The shared OpenCart 4.x fixture shop, read in place (never copied here).
OPENCART_4_DUMP = FIXTURES / "site_c.sql"


def check_settings(
    tmp_path: Path, url: str, shop: OpenCartShop, database: DatabaseUrl
) -> Settings:
    """Settings of a running install: its event log exists (an empty file)."""
    log = tmp_path / "data" / "events.db"
    log.parent.mkdir(exist_ok=True)
    sqlite3.connect(log).close()
    return Settings(
        base_dir=tmp_path,
        event_log=EventLogSettings(),
        crm=CrmSettings(base_url=url, token=TOKEN),
        capture=CaptureSettings(),
        deals=factories.deal_settings(),
        sites=[shop.site("site_a")],
        databases={"site_a": database},
    )


@pytest.fixture
async def reader(
    make_shop: Callable[..., Awaitable[OpenCartShop]],
) -> AsyncIterator[tuple[OpenCartShop, DatabaseUrl]]:
    """A scratch shop and a user that may only SELECT from it."""
    shop = await make_shop()
    user, password = f"ocsync_ro_{secrets.token_hex(4)}", secrets.token_hex(12)
    for host in ("localhost", "127.0.0.1"):
        await shop.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", password)
        await shop.execute(
            f"GRANT SELECT ON `{shop.url.database}`.* TO '{user}'@'{host}'"
        )
    yield (
        shop,
        DatabaseUrl(
            user=user,
            password=password,
            host=shop.url.host,
            port=shop.url.port,
            database=shop.url.database,
        ),
    )
    for host in ("localhost", "127.0.0.1"):
        await shop.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


async def test_a_read_only_user_passes_without_warning(
    reader: tuple[OpenCartShop, DatabaseUrl], crm: Crm, tmp_path: Path
) -> None:
    """SELECT only: every part answers, no warning."""
    shop, database = reader
    url = await crm.serve()

    report = await check(check_settings(tmp_path, url, shop, database))

    assert report.passed, report.failures
    assert report.warnings == []
    assert any(line.startswith("site site_a:") for line in report.ok)


async def test_no_event_log_yet_is_a_warning_and_none_is_made(
    reader: tuple[OpenCartShop, DatabaseUrl], crm: Crm, tmp_path: Path
) -> None:
    """Before the first run: the check passes, says so, and creates nothing."""
    shop, database = reader
    url = await crm.serve()
    settings = check_settings(tmp_path, url, shop, database)
    fresh = msgspec.structs.replace(settings, base_dir=tmp_path / "new")

    report = await check(fresh)

    assert report.passed, report.failures
    [warning] = report.warnings
    assert "there is no event log at" in warning and "ocsync relink" in warning
    assert not (tmp_path / "new").exists()


async def test_a_user_that_can_write_is_warned_about(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """root can write: the check passes but warns, naming site and user."""
    shop = await make_shop()
    url = await crm.serve()

    report = await check(check_settings(tmp_path, url, shop, shop.url))

    assert report.passed
    [warning] = report.warnings
    assert warning.startswith("site site_a: user 'root' can write")


async def test_a_wrong_token_and_an_unreachable_shop_fail_the_check(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """Each failure is named: the shop's database, and the CRM's refusal."""
    shop = await make_shop()
    url = await crm.serve()
    settings = check_settings(tmp_path, url, shop, shop.url)
    gone = DatabaseUrl(
        user="root", password="", host="127.0.0.1", port=9, database="none"
    )
    broken = Settings(
        base_dir=tmp_path,
        event_log=settings.event_log,
        crm=CrmSettings(base_url=url, token="wrong-token", max_attempts=1),
        capture=settings.capture,
        deals=settings.deals,
        sites=settings.sites,
        databases={"site_a": gone},
    )

    report = await check(broken)

    assert not report.passed
    assert [line.split(":")[0] for line in report.failures] == ["site site_a", "crm"]


async def test_a_failing_crm_is_asked_once_whatever_the_retry_settings(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """A CRM answering 503 fails the check after one request, not five."""
    asked: list[str] = []

    @web.middleware
    async def unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
        asked.append(request.path)
        return web.Response(status=503, text="down for maintenance")

    shop = await make_shop()
    url = await crm.serve(middlewares=[unavailable])
    settings = check_settings(tmp_path, url, shop, shop.url)
    patient = msgspec.structs.replace(settings.crm, max_attempts=5)

    report = await check(msgspec.structs.replace(settings, crm=patient))

    assert [line.split(":")[0] for line in report.failures] == ["crm"]
    assert len(asked) == 1


def test_grants_beyond_select_are_writes() -> None:
    """SELECT and USAGE read; INSERT, UPDATE or ALL on the shop's data write."""
    grants = [
        "GRANT USAGE ON *.* TO `r`@`%`",
        "GRANT SELECT, INSERT ON `shop`.* TO `r`@`%`",
        "GRANT UPDATE ON `other`.* TO `r`@`%`",
    ]

    assert writable_privileges(grants, "shop") == {"INSERT"}
    assert writable_privileges(["GRANT ALL PRIVILEGES ON *.* TO `root`@`%`"], "x") == {
        "ALL PRIVILEGES"
    }


async def test_a_shop_asked_to_verify_tls_without_tls_fails_the_check(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """database_tls = "verify" on a server without TLS: refused, not read in clear."""
    shop = await make_shop()
    url = await crm.serve()
    verify = msgspec.structs.replace(shop.url, tls="verify")

    report = await check(check_settings(tmp_path, url, shop, verify))

    assert not report.passed
    [failure] = report.failures
    assert failure.startswith('site site_a: database_tls = "verify" but 127.0.0.1')
    assert "does not offer TLS" in failure


async def test_write_rights_that_come_through_a_role_are_warned_about(
    reader: tuple[OpenCartShop, DatabaseUrl], crm: Crm, tmp_path: Path
) -> None:
    """SELECT itself, plus a default role (by way of a nested one) that may write."""
    shop, database = reader
    url = await crm.serve()
    outer, inner = (f"ocsync_role_{secrets.token_hex(4)}" for _ in range(2))
    await shop.execute(f"CREATE ROLE `{outer}`")
    await shop.execute(f"CREATE ROLE `{inner}`")
    try:
        await shop.execute(f"GRANT SELECT ON `{shop.url.database}`.* TO `{outer}`")
        await shop.execute(
            f"GRANT INSERT, UPDATE, DELETE ON `{shop.url.database}`.* TO `{inner}`"
        )
        await shop.execute(f"GRANT `{inner}` TO `{outer}`")
        for host in ("localhost", "127.0.0.1"):
            account = f"'{database.user}'@'{host}'"
            await shop.execute(f"GRANT `{outer}` TO {account}")
            await shop.execute(f"SET DEFAULT ROLE `{outer}` FOR {account}")

        report = await check(check_settings(tmp_path, url, shop, database))
    finally:
        await shop.execute(f"DROP ROLE IF EXISTS `{outer}`")
        await shop.execute(f"DROP ROLE IF EXISTS `{inner}`")

    assert report.passed, report.failures
    [warning] = report.warnings
    assert warning.startswith(
        f"site site_a: user {database.user!r} can write (DELETE, INSERT, UPDATE;"
        f" through role '{inner}')"
    )


def test_role_grants_name_their_roles() -> None:
    """`GRANT `role` TO ...` lines give their roles; privilege lines none."""
    grants = [
        "GRANT SELECT ON `shop`.* TO `r`@`%`",
        "GRANT `writer` TO `r`@`%`",
        "GRANT `odd``name` TO `r`@`%` WITH ADMIN OPTION",
    ]

    assert granted_roles(grants) == ["writer", "odd`name"]


def test_mysql_8_role_grants_with_a_host_name_their_roles() -> None:
    """MySQL 8 writes `GRANT `writer`@`%`,`auditor`@`%` TO ...`: both roles."""
    grants = [
        "GRANT USAGE ON *.* TO `u`@`localhost`",
        "GRANT `writer`@`%`,`auditor`@`%` TO `u`@`localhost`",
    ]

    assert granted_roles(grants) == ["writer", "auditor"]


async def test_an_opencart_4_shop_fails_the_check_naming_the_schema(
    make_shop: Callable[..., Awaitable[OpenCartShop]], crm: Crm, tmp_path: Path
) -> None:
    """The OpenCart 4.x fixture dump: refused as such, not passed as readable."""
    shop = await make_shop(dump=OPENCART_4_DUMP)
    url = await crm.serve()

    report = await check(check_settings(tmp_path, url, shop, shop.url))

    assert report.failures == [
        "site site_a: OpenCart 4.x schema; only OpenCart 3.0 / ocStore is"
        " supported for now"
    ]

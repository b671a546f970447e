"""Log lines of real runs: JSON off a terminal, order and CRM context, no secrets.

Each test runs `ocsync` as its own process against the fixture shops and a
sandbox CRM on loopback, captures stderr (not a terminal, so JSON lines), and
parses every line.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomysql
import pytest
import structlog
from aiohttp.test_utils import TestServer

from daemon.logs import configure_logging
from projections.keepincrm.sandbox import create_sandbox_app
from tests.conftest import DB_HOST, DB_PORT, OpenCartShop
from tests.e2e_support import SandboxCrm
from tests.test_replay import Ran, edit, ocsync, settings_file, synced

ORDER_FIELDS = ("site", "order_id", "stream", "position")
# A line naming any of these is about one order.
ORDER_MARKS = ("order_id", "stream", "deal_id")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every line of stderr, each of which must be one JSON object."""
    lines = []
    for text in stderr.splitlines():
        line = json.loads(text)
        assert isinstance(line, dict), text
        assert {"event", "level", "timestamp"} <= line.keys(), text
        lines.append(line)
    return lines


def about_orders(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if any(mark in line for mark in ORDER_MARKS)]


async def test_every_line_about_an_order_names_the_order(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """run, then a replay: site, order_id, stream, position on each order's line."""
    config = settings_file(shops, sandbox.url, tmp_path, "sku")
    run = await ocsync(config, "run", "--once")
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')
    replay = await ocsync(config, "replay", "deals")

    assert (run.code, replay.code) == (0, 0), run.err + replay.err
    lines = json_lines(run.err) + json_lines(replay.err)
    events = Counter(line["event"] for line in about_orders(lines))
    assert events["order captured"] == 14  # site_a:5 is never confirmed
    assert events["deal created"] == 14
    assert events["deal corrected"] == 3
    for line in about_orders(lines):
        missing = [name for name in ORDER_FIELDS if line.get(name) is None]
        assert not missing, (missing, line)
        assert line["stream"] == f"{line['site']}:{line['order_id']}", line


async def test_mid_edit_and_unreadable_orders_are_named_in_full(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """An order mid-edit and an unreadable one: site, order_id, stream, position."""
    config = settings_file(shops, sandbox.url, tmp_path)
    edit(config, "poll_interval = 1\n", "poll_interval = 1\nmid_edit_seconds = 0.1\n")
    first = await ocsync(config, "run", "--once")
    shop = shops["site_a"]
    # Order 1 mid-edit: its lines deleted, to be written again.
    await shop.execute("DELETE FROM `oc_order_option` WHERE order_id = 1")
    await shop.execute("DELETE FROM `oc_order_product` WHERE order_id = 1")
    # Order 2 in a currency whose decimal places are no number.
    await shop.insert(
        "currency",
        currency_id=9,
        title="Bad",
        code="BAD",
        symbol_left="",
        symbol_right="",
        decimal_place="x",
        value=1.0,
        status=1,
        date_modified="2026-12-03 19:30:00",
    )
    await shop.execute("UPDATE `oc_order` SET currency_id = 9 WHERE order_id = 2")
    await shop.execute(
        "UPDATE `oc_order` SET date_modified = '2026-12-03 19:30:00'"
        " WHERE order_id IN (1, 2)"
    )

    second = await ocsync(config, "run", "--once")

    assert (first.code, second.code) == (0, 1), first.err + second.err
    lines = json_lines(second.err)
    named = {
        line["event"]: line
        for line in lines
        if line["event"]
        in (
            "order deferred mid-edit",
            "order unreadable",
            "order still mid-edit, not sent",
        )
    }
    assert len(named) == 3, lines
    assert [line["order_id"] for line in named.values()].count(1) == 2
    assert named["order unreadable"]["order_id"] == 2
    for line in named.values():
        assert line["site"] == "site_a"
        assert line["stream"] == f"site_a:{line['order_id']}", line
        # Each order has events from the first run: its last one is named.
        assert isinstance(line["position"], int), line


async def test_relink_names_each_order_and_sums_up(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """relink on a new log: each deal relinked names its order; one summary."""
    config = await synced(shops, sandbox.url, tmp_path, "model")
    edit(config, 'url = "sqlite:///events.db"', 'url = "sqlite:///restored.db"')

    relinked = await ocsync(config, "relink")

    assert relinked.code == 0, relinked.err
    lines = json_lines(relinked.err)
    found = [line for line in lines if line["event"] == "deal relinked"]
    assert len(found) == 14
    for line in found:
        missing = [name for name in ORDER_FIELDS if line.get(name) is None]
        assert not missing, (missing, line)
        assert line["stream"] == f"{line['site']}:{line['order_id']}", line
    [summary] = [line for line in lines if line["event"] == "relink finished"]
    assert (summary["linked"], summary["already"]) == (14, 0)


async def test_crm_lines_carry_the_deal_the_status_and_the_attempt(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """A replay: each request's line names the order, deal, status and attempt."""
    config = await synced(shops, sandbox.url, tmp_path, "sku")
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')

    replay = await ocsync(config, "--log-level", "DEBUG", "replay", "deals")
    lines = json_lines(replay.err)

    corrected = [line for line in lines if line["event"] == "deal corrected"]
    assert len(corrected) == 3
    for line in corrected:
        assert isinstance(line["deal_id"], int) and line["status"] == 200, line
    # The client's own lines inherit the order being corrected.
    calls = [line for line in lines if line["event"] == "keepincrm call"]
    corrections = [call for call in calls if call["path"] != "/agreements"]
    assert {call["method"] for call in corrections} == {"GET", "PATCH"}
    for call in corrections:
        assert call["path"] == f"/agreements/{call['deal_id']}", call
        assert (call["status"], call["attempt"]) == (200, 1), call
        assert all(call.get(name) is not None for name in ORDER_FIELDS), call


async def test_the_runs_crm_lines_name_the_order_and_the_deal(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """`ocsync run`: each create request's line names its order."""
    config = settings_file(shops, sandbox.url, tmp_path)

    run = await ocsync(config, "--log-level", "DEBUG", "run", "--once")
    creates = [
        line
        for line in json_lines(run.err)
        if line["event"] == "keepincrm call" and line["method"] == "POST"
    ]

    assert len(creates) == 14
    for line in creates:
        assert all(line.get(name) is not None for name in ORDER_FIELDS), line


async def test_one_summary_line_per_batch(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """One capture line per site and batch, one line per projection pass and replay."""
    config = settings_file(shops, sandbox.url, tmp_path)

    run = await ocsync(config, "run", "--once")
    replay = await ocsync(config, "replay", "deals")
    run_events = Counter(line["event"] for line in json_lines(run.err))
    replay_lines = json_lines(replay.err)

    assert run_events["deals projected"] == 1
    assert run_events["catalogue linked"] == 1
    assert run_events["run finished"] == 1
    batches = [line for line in json_lines(run.err) if line["event"] == "capture batch"]
    assert {line["site"] for line in batches} == {"site_a", "site_b"}
    assert sum(line["placed"] for line in batches) == 14
    [summary] = replay_lines
    assert summary["event"] == "deals replayed"
    assert (summary["changed"], summary["unchanged"]) == (0, 14)


SECRET_TOKEN = f"tok-{secrets.token_hex(8)}-Zq"
SECRET_PASSWORD = f"Db#Pw@{secrets.token_hex(6)}/Q9:zK"


@pytest.fixture
async def reader_account(
    shops: dict[str, OpenCartShop],
) -> AsyncIterator[str]:
    """A SELECT-only MariaDB user with a distinctive password; dropped after."""
    user = f"ocsync_secret_{secrets.token_hex(4)}"
    accounts = [f"'{user}'@'{host}'" for host in ("127.0.0.1", "localhost")]
    admin = await aiomysql.connect(
        host=DB_HOST, port=DB_PORT, user="root", password="", autocommit=True
    )
    try:
        async with admin.cursor() as cursor:
            for account in accounts:
                await cursor.execute(
                    f"CREATE USER {account} IDENTIFIED BY %s", (SECRET_PASSWORD,)
                )
                for shop in shops.values():
                    database = shop.url.database
                    await cursor.execute(f"GRANT SELECT ON `{database}`.* TO {account}")
        yield user
    finally:
        async with admin.cursor() as cursor:
            for account in accounts:
                await cursor.execute(f"DROP USER IF EXISTS {account}")
        admin.close()


@pytest.fixture
async def secret_crm(tmp_path: Path) -> AsyncIterator[SandboxCrm]:
    """A sandbox that accepts only the distinctive token."""
    store = tmp_path / "secret-crm.db"
    app = create_sandbox_app(store, SECRET_TOKEN, None, "create")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield SandboxCrm(url=str(server.make_url("/v1")), store=store)
    await server.close()


async def test_no_secret_reaches_any_output(
    shops: dict[str, OpenCartShop],
    secret_crm: SandboxCrm,
    reader_account: str,
    tmp_path: Path,
) -> None:
    """Every command and its failures at DEBUG: neither token nor password shows."""
    config = settings_file(shops, secret_crm.url, tmp_path, "sku")
    edit(config, "mysql://root:@", f"mysql://{reader_account}:${{E2E_DB}}@", count=2)
    env = {"E2E_CRM_TOKEN": SECRET_TOKEN, "E2E_DB": SECRET_PASSWORD}

    async def run(*args: str) -> Ran:
        return await ocsync(config, "--log-level", "DEBUG", *args, env=env)

    ran = [await run("run", "--once")]
    edit(config, 'article_fields = ["sku"]', 'article_fields = ["model"]')
    ran += [
        await run("replay", "deals", "--dry-run"),
        await run("replay", "deals"),
        await run("replay", "catalogue"),
        await run("audit", "site_b:2"),
        await run("audit", "site_b:2", "--json"),
        await run("audit", "site_b:404"),
        await run("check"),
        await run("status"),
        await run("relink"),
    ]
    # Failures print what went wrong: a shop that refuses, a CRM that does.
    edit(config, shops["site_b"].url.database, "ocsync_no_such_db")
    ran.append(await run("run", "--once"))
    ran.append(await run("check"))
    wrong = {**env, "E2E_CRM_TOKEN": f"{SECRET_TOKEN}-wrong"}
    ran.append(await ocsync(config, "replay", "deals", env=wrong))
    ran.append(await ocsync(config, "check", env=wrong))

    codes = [r.code for r in ran]
    assert codes == [0] * 6 + [1] + [0] * 3 + [1] * 4, [r.err for r in ran]
    assert "shop unavailable" in ran[10].err
    assert "failed   site site_b" in ran[11].out
    assert "401 the CRM refused the API key" in ran[12].err
    assert "401 the CRM refused the API key" in ran[13].out
    assert "keepincrm call" in ran[0].err  # DEBUG lines were written
    output = "".join(r.out + r.err for r in ran)
    assert SECRET_TOKEN not in output
    assert SECRET_PASSWORD not in output
    log = (tmp_path / "events.db").read_bytes()
    assert SECRET_TOKEN.encode() not in log
    assert SECRET_PASSWORD.encode() not in log


@pytest.fixture
def logging_with_secret() -> Iterator[str]:
    """A secret for a test that configures logging knowing it; undone after.

    The test configures logging itself, so that the handler writes to the
    stderr `capsys` captures during the test.
    """
    yield f"s3cr{secrets.token_hex(6)}"
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def test_a_secret_nested_in_a_value_is_masked(
    logging_with_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secret inside a dict, a list and a tuple value is masked in the line."""
    secret = logging_with_secret
    configure_logging([secret], level="DEBUG")

    structlog.get_logger("ocsync").info(
        "nested",
        request={"headers": {"X-Auth-Token": secret}, "args": [1, f"a{secret}b"]},
        pair=("x", secret),
    )

    [line] = json_lines(capsys.readouterr().err)
    assert secret not in json.dumps(line)
    assert line["request"] == {
        "headers": {"X-Auth-Token": "***"},
        "args": [1, "a***b"],
    }
    assert line["pair"] == ["x", "***"]


def test_a_secret_in_an_exception_and_its_traceback_is_masked(
    logging_with_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception as a value, and a logged traceback, keep no secret."""
    secret = logging_with_secret
    configure_logging([secret], level="DEBUG")
    log = structlog.get_logger("ocsync")

    try:
        raise ConnectionError(f"cannot log in with {secret}")
    except ConnectionError as exc:
        log.warning("as a value", error=exc)
        log.exception("with its traceback")

    first, second = json_lines(capsys.readouterr().err)
    assert first["error"] == "ConnectionError('cannot log in with ***')"
    assert "ConnectionError: cannot log in with ***" in second["exception"]
    assert secret not in json.dumps([first, second])


def test_standard_library_lines_are_json_and_masked(
    logging_with_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """aiomysql's own logger: a JSON line, its name kept, the secret masked."""
    secret = logging_with_secret
    configure_logging([secret], level="DEBUG")

    try:
        raise OSError(f"refused for {secret}")
    except OSError:
        logging.getLogger("aiomysql").error("lost %s", secret, exc_info=True)

    [line] = json_lines(capsys.readouterr().err)
    assert (line["event"], line["logger"], line["level"]) == (
        "lost ***",
        "aiomysql",
        "error",
    )
    assert "OSError: refused for ***" in line["exception"]
    assert secret not in json.dumps(line)


def test_even_a_short_secret_is_masked(
    logging_with_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A three-character password is masked too, not left below a floor."""
    configure_logging([logging_with_secret, "Qz9"], level="INFO")

    structlog.get_logger("ocsync").info("login", password="Qz9")

    [line] = json_lines(capsys.readouterr().err)
    assert line["password"] == "***"

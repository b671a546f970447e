"""The demo's steps after set-up: load dumps, serve the sandbox, sync, show.

Databases are created as `ocsync_demo_<site>` and a SELECT-only user
`ocsync_demo_reader` reads them; no other database is touched. Everything the
demo writes lives in data/demo/, made fresh each run.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import msgspec
import pymysql
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.logs import configure_logging  # noqa: E402
from projections.keepincrm.client import KeepinCRMClient  # noqa: E402

FIXTURES = REPO.parent / "shared" / "fixtures" / "opencart"
WORK = REPO / "data" / "demo"
READER = "ocsync_demo_reader"
OCSYNC = str(REPO / ".venv" / "bin" / "ocsync")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "dumps",
        nargs="*",
        type=Path,
        default=[FIXTURES / "site_a.sql", FIXTURES / "site_b.sql"],
        help="OpenCart SQL dumps (default: the sample shops site_a and site_b)",
    )
    args = parser.parse_args()
    configure_logging(level="WARNING")

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    host = os.environ.get("OCSYNC_DB_HOST", "127.0.0.1")
    port = int(os.environ.get("OCSYNC_DB_PORT", "3306"))
    password = secrets.token_urlsafe(18)
    token = secrets.token_urlsafe(24)

    # 1. Load every dump into a database of the demo's own, once all are
    # known to be safe to load: none names a database, no two share a name.
    names = site_names(args.dumps)
    for dump in args.dumps:
        problem = dump_problem(dump)
        if problem is not None:
            raise SystemExit(f"demo: {problem}")
    sites = []
    for dump, name in zip(args.dumps, names, strict=True):
        prefix = _load_dump(dump, f"ocsync_demo_{name}", host, port)
        sites.append((name, prefix))
    _grant_reader(host, port, password, [f"ocsync_demo_{name}" for name, _ in sites])

    # 2. The CRM's catalogue already holds the shops' products, by article.
    catalogue = WORK / "catalogue.json"
    _write_catalogue(catalogue, host, port, f"ocsync_demo_{sites[0][0]}", sites[0][1])

    # 3. Settings: the example file, with the sandbox's address and these sites.
    sandbox_port = _free_port()
    config = WORK / "settings.toml"
    config.write_text(_settings_text(sites, sandbox_port, host, port), "utf-8")

    env = dict(os.environ, KEEPINCRM_TOKEN=token, OCSYNC_DEMO_DB_PASSWORD=password)
    # The demo's own throwaway secrets, for exploring its results afterwards.
    secrets_file = WORK / "env"
    secrets_file.touch(mode=0o600)
    secrets_file.write_text(
        f"KEEPINCRM_TOKEN={token}\nOCSYNC_DEMO_DB_PASSWORD={password}\n", "utf-8"
    )
    sandbox = subprocess.Popen(
        [
            OCSYNC,
            "sandbox",
            "--port",
            str(sandbox_port),
            "--store",
            str(WORK / "sandbox.db"),
            "--catalogue",
            str(catalogue),
        ],
        env=env,
        stderr=(WORK / "sandbox.log").open("w"),
    )
    try:
        _wait_for_port(sandbox_port, sandbox)
        print(f"Syncing {len(sites)} shop(s) into the sandbox on port {sandbox_port}")
        run = subprocess.run(
            [OCSYNC, "--config", str(config), "run", "--once"],
            env=env,
            stderr=(WORK / "ocsync.log").open("w"),
        )
        log = WORK / "ocsync.log"
        print(f"ocsync run --once exited {run.returncode}; log: {log}")
        if run.returncode != 0:
            for line in failure_lines(log.read_text("utf-8", errors="replace")):
                print(f"  {line}")
        base_url = f"http://127.0.0.1:{sandbox_port}/v1"
        marker_field = tomllib.loads(config.read_text("utf-8"))["deals"][
            "custom_fields"
        ]["marker"]
        asyncio.run(_show_deals(base_url, token, marker_field))
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)

    print(
        "\nTo look further (the README's 'After the demo'):\n"
        f"  set -a; . {WORK / 'env'}; set +a\n"
        f"  .venv/bin/ocsync sandbox --port {sandbox_port}"
        f" --store {WORK / 'sandbox.db'} &\n"
        f"  .venv/bin/ocsync --config {config} status"
    )
    return run.returncode


def site_names(dumps: list[Path]) -> list[str]:
    """The site name of each dump (from its file name); refuses two alike.

    Two dumps of one name would load into one database, the second over the
    first, and the demo would show one shop where two were given.
    """
    names = [re.sub(r"[^A-Za-z0-9_]", "_", dump.stem) for dump in dumps]
    first: dict[str, Path] = {}
    for dump, name in zip(dumps, names, strict=True):
        if name in first:
            raise SystemExit(
                f"demo: {first[name]} and {dump} would both load into "
                f"ocsync_demo_{name}; rename one of the files"
            )
        first[name] = dump
    return names


# A statement that picks or makes a database of the dump's own choosing, as
# `mysqldump --databases` writes: CREATE DATABASE ..., USE `name`.
_NAMES_DATABASE = re.compile(
    rb"^\s*(?:/\*!\d*\s*)?((?:CREATE|DROP)\s+(?:DATABASE|SCHEMA)\b|USE\b)",
    re.IGNORECASE,
)


def dump_problem(dump: Path) -> str | None:
    """Why `dump` must not be loaded into a demo database, or None.

    A dump that names its database would write there (perhaps a live shop)
    rather than into the demo's own; mysqldump puts each statement on a line
    of its own, so reading line starts finds them.
    """
    if not dump.is_file():
        return f"no dump at {dump}"
    with dump.open("rb") as source:
        for number, line in enumerate(source, start=1):
            found = _NAMES_DATABASE.match(line)
            if found is not None:
                statement = line.decode("utf-8", errors="replace").strip()[:80]
                return (
                    f"{dump} line {number} names a database of its own "
                    f"({statement}); loading it would write into that database, "
                    "not the demo's. Dump the shop without --databases "
                    "(mysqldump SHOP_DB > shop.sql) and try again"
                )
    return None


def failure_lines(log: str, limit: int = 3) -> list[str]:
    """The last error lines of an ocsync log, readable; else its last lines."""
    errors = []
    for text in log.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            # Not a log line: a message of the command itself, or a traceback.
            if text.strip():
                errors.append(text.strip())
            continue
        if not isinstance(line, dict) or line.get("level") not in ("error", "critical"):
            continue
        details = [
            f"{key}={value}"
            for key, value in line.items()
            if key not in ("event", "level", "timestamp")
        ]
        errors.append(" ".join([str(line.get("event", "")), *details]))
    if not errors:
        errors = [text for text in log.splitlines() if text.strip()]
    return errors[-limit:]


def _mysql(host: str, port: int, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=host, port=port, user="root", database=database, charset="utf8mb4"
    )


def _load_dump(dump: Path, database: str, host: str, port: int) -> str:
    """Load one dump into a fresh database; answer its table prefix."""
    if not dump.is_file():
        raise SystemExit(f"demo: no dump at {dump}")
    with _mysql(host, port) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    with dump.open("rb") as source:
        loaded = subprocess.run(
            # --one-database: a second guard, should a dump still name another.
            [
                "mysql",
                "--protocol=tcp",
                f"-h{host}",
                f"-P{port}",
                "-uroot",
                "--one-database",
                database,
            ],
            stdin=source,
        )
    if loaded.returncode != 0:
        with _mysql(host, port) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
        raise SystemExit(f"demo: {dump} is not a MySQL dump the server could load")
    with _mysql(host, port, database) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW TABLES LIKE '%order_product'")
        row = cursor.fetchone()
    if row is None:
        raise SystemExit(f"demo: {dump} holds no OpenCart order_product table")
    prefix = str(row[0]).removesuffix("order_product")
    print(f"Loaded {dump.name} into {database} (table prefix {prefix!r})")
    return prefix


def _grant_reader(host: str, port: int, password: str, databases: list[str]) -> None:
    with _mysql(host, port) as connection, connection.cursor() as cursor:
        for user_host in ("127.0.0.1", "localhost"):
            account = f"'{READER}'@'{user_host}'"
            cursor.execute(f"CREATE USER IF NOT EXISTS {account}")
            cursor.execute(f"ALTER USER {account} IDENTIFIED BY %s", (password,))
            for database in databases:
                cursor.execute(f"GRANT SELECT ON `{database}`.* TO {account}")


def _write_catalogue(
    path: Path, host: str, port: int, database: str, prefix: str
) -> None:
    query = f"""
        SELECT p.model, d.name, p.price
        FROM `{prefix}product` p
        JOIN `{prefix}product_description` d ON d.product_id = p.product_id
        JOIN `{prefix}language` l ON l.language_id = d.language_id
        WHERE l.code = 'uk-ua' AND p.model <> ''
    """
    with _mysql(host, port, database) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        items = [
            {"sku": model, "title": html.unescape(name), "price": price}
            for model, name, price in cursor.fetchall()
        ]
    # Prices as exact JSON numbers, as the CRM would list them.
    path.write_bytes(msgspec.json.Encoder(decimal_format="number").encode(items))


def _settings_text(
    sites: list[tuple[str, str]], sandbox_port: int, host: str, port: int
) -> str:
    example = (REPO / "settings.toml").read_text("utf-8")
    header, *site_blocks = example.split("\n[[sites]]")
    # The log lives beside the demo's settings, not in a folder below them.
    header = re.sub(
        r"(?m)^url = \"sqlite:///data/events.db\"$",
        'url = "sqlite:///events.db"',
        header,
    )
    # The sandbox is no real account: the demo need not pace its requests.
    header = re.sub(
        r"(?m)^requests_per_minute = .*$", "requests_per_minute = 6000", header
    )
    header = re.sub(
        r"(?m)^base_url = .*$",
        f'base_url = "http://127.0.0.1:{sandbox_port}/v1"',
        header,
    )
    site_name = re.compile(r'name = "([^"]+)"')
    known = {
        site_name.search(block).group(1): block  # type: ignore[union-attr]
        for block in site_blocks
    }
    blocks = []
    for index, (name, prefix) in enumerate(sites, start=1):
        block = known.get(name) or _site_block(name, index)
        block = re.sub(r"@127\.0\.0\.1:3306/", f"@{host}:{port}/", block)
        block = re.sub(
            r"(?m)^table_prefix = .*$", f"table_prefix = {json.dumps(prefix)}", block
        )
        blocks.append("\n[[sites]]" + block.rstrip() + "\n")
    return header + "".join(blocks)


def _site_block(name: str, index: int) -> str:
    database = f"ocsync_demo_{name}"
    return f"""
name = {json.dumps(name)}
title = {json.dumps(name)}
database = "mysql://{READER}:${{OCSYNC_DEMO_DB_PASSWORD}}@127.0.0.1:3306/{database}"
table_prefix = "oc_"
source_id = {index}
responsible_id = 1
sync_from = "all"
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"demo: the sandbox did not start; see {WORK / 'sandbox.log'}")


async def _show_deals(base_url: str, token: str, marker_field: str) -> None:
    table = Table(title="Deals in the sandbox CRM", show_lines=True)
    for column in ("site", "order", "client", "article", "qty", "price", "variant"):
        table.add_column(column)
    table.add_column("discount", justify="right")
    table.add_column("total", justify="right")

    count = 0
    async with KeepinCRMClient(base_url, token, requests_per_minute=6000) as crm:
        summaries = [deal async for deal in crm.list_deals()]
        for summary in sorted(summaries, key=lambda deal: int(deal["id"])):
            deal = await crm.get_deal(int(summary["id"]))
            count += 1
            marker = next(
                (
                    f["value"]
                    for f in deal.get("custom_fields_detailed", [])
                    if f.get("name") == marker_field
                ),
                "?:?",
            )
            site, _, order = str(marker).partition(":")
            currency = deal.get("currency", "")
            # The lines less the discount are the total the customer saw.
            discount = f"{deal['discount']} {currency}" if deal.get("discount") else ""
            client = deal.get("client") or {}
            phones = ", ".join(client.get("phones") or [])
            for index, job in enumerate(deal.get("jobs", [])):
                first = index == 0
                table.add_row(
                    site if first else "",
                    order if first else "",
                    f"{client.get('person', '')}\n{phones}" if first else "",
                    str(job.get("sku", "")),
                    str(job.get("amount", "")),
                    f"{job.get('price', '')} {currency}",
                    str(job.get("comment", "") or ""),
                    discount if first else "",
                    f"{deal.get('total', '')} {currency}" if first else "",
                )
    # Wide enough for the variant text when the output is not a terminal.
    Console(width=None if sys.stdout.isatty() else 180).print(table)
    print(f"{count} deals")


if __name__ == "__main__":
    sys.exit(main())

"""The `ocsync` command: thin wrappers over functions the tests call too."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from daemon.errors import DaemonError, ShopUnavailable
from daemon.logs import configure_logging, mask_text
from daemon.settings import Settings, default_settings_path, load_settings

if TYPE_CHECKING:
    from events import EventStore
    from projections.keepincrm.client import KeepinCRMClient

log = structlog.get_logger("ocsync")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ocsync` and `python -m daemon`; returns the exit code."""
    args = _parser().parse_args(argv)
    configure_logging(level=args.log_level)
    try:
        code: int = args.command(args)
    except DaemonError as exc:
        print(f"ocsync: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocsync",
        description="Sync OpenCart orders into KeepinCRM deals through an event log.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (default: $OCSYNC_CONFIG or ./settings.toml)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the least important log lines shown (default INFO)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="capture orders and send deals")
    run.add_argument(
        "--once",
        action="store_true",
        help="capture and send everything pending, then exit",
    )
    run.set_defaults(command=_run)

    sandbox = commands.add_parser(
        "sandbox", help="serve a local KeepinCRM-compatible API for trials and tests"
    )
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument(
        "--store",
        type=Path,
        default=Path("data/sandbox.db"),
        help="SQLite file keeping what the sandbox receives",
    )
    sandbox.add_argument(
        "--catalogue", type=Path, help="JSON list of {sku, title, price} to seed"
    )
    sandbox.add_argument(
        "--unknown-article",
        choices=("create", "refuse"),
        default="create",
        help="what a deal line with an article missing from the catalogue does",
    )
    sandbox.add_argument(
        "--token-env",
        default="KEEPINCRM_TOKEN",
        help="environment variable holding the API token the sandbox accepts",
    )
    sandbox.set_defaults(command=_sandbox)

    replay = commands.add_parser(
        "replay", help="apply today's settings to what the log holds"
    )
    targets = replay.add_subparsers(required=True, metavar="TARGET")
    deals = targets.add_parser(
        "deals", help="correct existing deals to match today's settings"
    )
    deals.add_argument("--site", help="only this site's orders")
    deals.add_argument(
        "--from",
        dest="from_position",
        type=int,
        default=0,
        metavar="POSITION",
        help="only orders whose newest snapshot is at or after this log position",
    )
    deals.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would change; send and record nothing",
    )
    deals.set_defaults(command=_replay_deals)
    catalogue = targets.add_parser(
        "catalogue", help="relink every article to its CRM catalogue item"
    )
    catalogue.add_argument(
        "--dry-run", action="store_true", help="print what would change; record nothing"
    )
    catalogue.set_defaults(command=_replay_catalogue)

    status = commands.add_parser(
        "status", help="list orders parked, held or waiting for the CRM"
    )
    status.set_defaults(command=_status)

    retry = commands.add_parser("retry", help="try parked orders again after a fix")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "order", nargs="?", type=_order_reference, metavar="SITE:ORDER_ID"
    )
    which.add_argument("--all", action="store_true", help="every parked order")
    retry.set_defaults(command=_retry)

    relink = commands.add_parser(
        "relink", help="rebuild order-to-deal links from the CRM, by marker"
    )
    relink.add_argument("--site", help="only this site's deals")
    relink.set_defaults(command=_relink)

    check = commands.add_parser(
        "check", help="check the log, every shop and the CRM; warn of writable users"
    )
    check.set_defaults(command=_check)

    catalogue_report = commands.add_parser(
        "catalogue",
        help="shop products with no CRM item, and articles spelt two ways",
    )
    catalogue_report.set_defaults(command=_catalogue)

    audit = commands.add_parser("audit", help="print one order's story from the log")
    audit.add_argument(
        "order", type=_order_reference, metavar="SITE:ORDER_ID", help="e.g. site_a:17"
    )
    audit.add_argument("--json", action="store_true", help="print it as JSON")
    audit.set_defaults(command=_audit)

    return parser


def _order_reference(text: str) -> str:
    """`SITE:ORDER_ID` as typed, refused at once when it cannot name an order."""
    from events import parse_order_stream

    if parse_order_stream(text) is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SITE:ORDER_ID (a site name, a colon and the order's"
            " number, e.g. site_a:17)"
        )
    return text


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config or default_settings_path())
    order = getattr(args, "order", None)
    if order is not None:
        # A site the settings do not name is a typo, not an order missing
        # from the log: say so the way `--site` does.
        settings.site(order.partition(":")[0])
    secrets = [settings.crm.token]
    secrets += [database.password for database in settings.databases.values()]
    configure_logging(secrets, level=args.log_level)
    return settings


def _run(args: argparse.Namespace) -> int:
    from daemon.run import run_once

    settings = _settings(args)
    if args.once:
        outcome = asyncio.run(run_once(settings))
        return 0 if outcome.ok else 1

    asyncio.run(_serve_until_signalled(settings))
    return 0


async def _serve_until_signalled(settings: Settings) -> None:
    from daemon.run import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if stop.is_set():
            # A second signal: the operator does not want to wait.
            log.warning("second signal, exiting at once", signal=name)
            os._exit(1)
        log.info("stopping", signal=name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    log.info("started", sites=[site.name for site in settings.sites])
    await serve(settings, stop)


def _sandbox(args: argparse.Namespace) -> int:
    from projections.keepincrm.sandbox import serve_sandbox

    token = os.environ.get(args.token_env, "")
    if not token:
        raise DaemonError(f"set {args.token_env} to the token the sandbox accepts")
    configure_logging([token], level=args.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve_sandbox(
                args.host,
                args.port,
                args.store,
                token,
                args.catalogue,
                args.unknown_article,
            )
        )
    return 0


class _CommandFailed(Exception):
    """A command that cannot do what was asked: its message and exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _replay_deals(args: argparse.Namespace) -> int:
    from projections.replay import replay_deals
    from projections.replay_report import render_deals_replay

    settings = _settings(args)

    async def replay() -> tuple[str, int]:
        # A dry run sends nothing; it reads the deals a fixed stage map would
        # move, to tell a stage a manager moved.
        async with _log_and_crm(settings, crm=True) as (store, crm):
            result = await replay_deals(
                store,
                settings,
                crm,
                site=args.site,
                from_position=args.from_position,
                dry_run=args.dry_run,
            )
        code = 1 if result.refused or result.unmapped else 0
        return render_deals_replay(result), code

    return _report(settings, replay)


def _replay_catalogue(args: argparse.Namespace) -> int:
    from projections.catalogue_replay import replay_catalogue
    from projections.replay_report import render_catalogue_replay

    settings = _settings(args)

    async def replay() -> tuple[str, int]:
        async with _log_and_crm(settings, crm=True) as (store, crm):
            assert crm is not None
            result = await replay_catalogue(store, settings, crm, dry_run=args.dry_run)
        return render_catalogue_replay(result), 0

    return _report(settings, replay)


def _audit(args: argparse.Namespace) -> int:
    from projections.audit import audit_order, render_audit, render_audit_json

    settings = _settings(args)

    async def audit() -> tuple[str, int]:
        async with _log_and_crm(settings, crm=False) as (store, _):
            found = await audit_order(store, args.order, settings.deals)
        if found is None:
            raise _CommandFailed(
                f"audit: no order {args.order!r} in the event log (name it"
                " SITE:ORDER_ID as in its deal's marker, e.g. site_a:17)",
                code=1,
            )
        return (render_audit_json(found) if args.json else render_audit(found)), 0

    return _report(settings, audit)


def _status(args: argparse.Namespace) -> int:
    from projections.parked import parked_orders, render_parked

    settings = _settings(args)

    async def status() -> tuple[str, int]:
        async with _log_and_crm(settings, crm=False) as (store, _):
            parked = await parked_orders(store, settings)
        return render_parked(parked), 0

    return _report(settings, status)


def _retry(args: argparse.Namespace) -> int:
    from projections.parked import (
        NothingToRetry,
        UnknownOrder,
        parked_orders,
        request_retry,
    )

    settings = _settings(args)

    async def retry() -> tuple[str, int]:
        async with _log_and_crm(settings, crm=False) as (store, _):
            if args.all:
                markers = [
                    order.stream
                    for order in await parked_orders(store, settings)
                    if order.kind != "pending"
                ]
            else:
                markers = [args.order]
            try:
                for marker in markers:
                    await request_retry(store, marker, "ocsync retry")
            except (UnknownOrder, NothingToRetry) as exc:
                raise _CommandFailed(f"retry: {exc}", code=1) from exc
        return (
            f"{len(markers)} order(s) will be tried again by the next pass of "
            "ocsync run.",
            0,
        )

    return _report(settings, retry)


def _relink(args: argparse.Namespace) -> int:
    from projections.relink import relink, render_relink

    settings = _settings(args)
    if args.site is not None:
        settings.site(args.site)

    async def relinked() -> tuple[str, int]:
        async with _log_and_crm(settings, crm=True, create=True) as (store, crm):
            assert crm is not None
            result = await relink(store, crm, settings, site=args.site)
        return render_relink(result), 0

    return _report(settings, relinked)


def _check(args: argparse.Namespace) -> int:
    from daemon.check import check, render_check

    settings = _settings(args)

    async def checked() -> tuple[str, int]:
        report = await check(settings)
        return render_check(report), 0 if report.passed else 1

    return _report(settings, checked)


def _catalogue(args: argparse.Namespace) -> int:
    from daemon.catalogue_report import catalogue_report, render_report

    settings = _settings(args)

    async def reported() -> tuple[str, int]:
        from events import EventLogMissing

        try:
            try:
                async with _log_and_crm(settings, crm=False) as (store, _):
                    report = await catalogue_report(settings, store)
            except EventLogMissing:
                # Before the first run (going live) only the shops are compared.
                report = await catalogue_report(settings)
        except ShopUnavailable as exc:
            raise _CommandFailed(f"catalogue: {exc}", code=1) from exc
        return render_report(report), 0

    return _report(settings, reported)


@contextlib.asynccontextmanager
async def _log_and_crm(
    settings: Settings, *, crm: bool, create: bool = False
) -> AsyncIterator[tuple[EventStore, KeepinCRMClient | None]]:
    """The event log, and a CRM client when the command talks to the CRM.

    Only a command that writes a log from nothing (`relink`) may `create` it;
    the others refuse a log that is not there.
    """
    from events import open_event_store
    from projections.keepincrm.client import KeepinCRMClient

    store = await open_event_store(
        settings.event_log.url, settings.base_dir, create=create
    )
    try:
        if not crm:
            yield store, None
            return
        # The account's rate limit and retries, as `ocsync run` has them.
        async with KeepinCRMClient.from_settings(settings.crm) as client:
            yield store, client
    finally:
        await store.close()


def _report(
    settings: Settings, work: Callable[[], Coroutine[Any, Any, tuple[str, int]]]
) -> int:
    """Run a command's work, print its text, and turn failures into exit codes.

    0 done, 1 the CRM or the log failed (or some orders were refused), 2 the
    settings cannot be honoured. Secrets are masked in everything printed.
    """
    from events import EventLogError
    from projections.errors import ProjectionError
    from projections.keepincrm.errors import KeepinCRMError

    secrets = [settings.crm.token]
    secrets += [database.password for database in settings.databases.values()]

    def masked(text: str) -> str:
        return mask_text(text, secrets)

    try:
        text, code = asyncio.run(work())
    except _CommandFailed as exc:
        print(masked(f"ocsync {exc}"), file=sys.stderr)
        return exc.code
    except (KeepinCRMError, EventLogError) as exc:
        print(masked(f"ocsync: {exc}"), file=sys.stderr)
        return 1
    except ProjectionError as exc:
        # CrmUnavailable: try again later; UncapturedData: change the settings.
        from projections.deals import CrmUnavailable

        print(masked(f"ocsync: {exc}"), file=sys.stderr)
        return 1 if isinstance(exc, CrmUnavailable) else 2
    print(masked(text))
    return code

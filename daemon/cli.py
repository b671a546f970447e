"""The `ocsync` command: thin wrappers over functions the tests call too."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from daemon.errors import DaemonError
from daemon.logs import configure_logging
from daemon.settings import Settings, default_settings_path, load_settings

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
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING")
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

    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config or default_settings_path())
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

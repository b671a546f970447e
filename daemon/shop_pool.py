"""Connections to one OpenCart shop's database, and driver errors as `ShopUnavailable`.

The shop is read, never written: every connection of the pool runs a read-only
session. The pool's decoders leave numbers and dates as the exact text MySQL
sent (DECIMAL `"15.0000"`, DATETIME `"2026-12-03 18:20:18"`), so nothing passes
through a float. Each use of a connection is bounded in time, and a driver error
or a timeout in it becomes `ShopUnavailable` (or the unsupported schema it
reveals).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import pymysql  # type: ignore[import-untyped]  # no stubs; aiomysql wraps it

from daemon.errors import ShopUnavailable
from daemon.opencart30 import Query
from daemon.settings import DatabaseUrl
from daemon.shop_schema import schema_error
from daemon.shop_tls import ensure_encrypted, shop_tls_context

# Without a decoder, pymysql hands over the server's own text: money and dates.
_TYPE = pymysql.FIELD_TYPE
_VERBATIM_TYPES = {_TYPE.DECIMAL, _TYPE.NEWDECIMAL, _TYPE.FLOAT, _TYPE.DOUBLE}
_VERBATIM_TYPES |= {_TYPE.DATE, _TYPE.DATETIME, _TYPE.TIMESTAMP, _TYPE.TIME}
_DECODERS = {
    field_type: decoder
    for field_type, decoder in pymysql.converters.decoders.items()
    if field_type not in _VERBATIM_TYPES
}
_DRIVER_ERRORS = (aiomysql.MySQLError, OSError)

# A result row as the cursor gives it: column name -> value.
CursorRow = dict[str, Any]


async def open_shop_pool(db: DatabaseUrl, site: str) -> aiomysql.Pool:
    """A small pool of read-only utf8mb4 connections to one shop's database."""
    try:
        pool = await aiomysql.create_pool(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password,
            db=db.database,
            charset="utf8mb4",
            autocommit=True,
            init_command="SET SESSION TRANSACTION READ ONLY",
            conv=_DECODERS,
            connect_timeout=10,
            minsize=1,
            maxsize=2,
            # Below MySQL's wait_timeout, so an idle shop never hangs up on us.
            pool_recycle=3600,
            ssl=shop_tls_context(db),
        )
    except _DRIVER_ERRORS as exc:
        raise ShopUnavailable(site, error_reason(exc, db.password)) from exc

    try:
        await ensure_encrypted(pool, db, site)
    except BaseException as exc:
        # A watcher tries again after a backoff: leave no pool behind.
        pool.close()
        await pool.wait_closed()
        if isinstance(exc, _DRIVER_ERRORS):
            raise ShopUnavailable(site, error_reason(exc, db.password)) from exc
        raise
    return pool


@contextlib.asynccontextmanager
async def pooled_connection(
    pool: aiomysql.Pool, site: str, prefix: str, query_timeout: float | None
) -> AsyncIterator[Any]:
    """A connection of `pool`; driver errors in the block become ShopUnavailable.

    The block is bounded by `query_timeout` (aiomysql has no read timeout of its
    own), so that a hanging shop counts as unavailable.
    """
    try:
        connection = await pool.acquire()
    except _DRIVER_ERRORS as exc:
        raise ShopUnavailable(site, error_reason(exc)) from exc

    try:
        async with asyncio.timeout(query_timeout):
            yield connection
    except TimeoutError as exc:
        connection.close()
        reason = f"no answer within {query_timeout:g} s"
        raise ShopUnavailable(site, reason) from exc
    except _DRIVER_ERRORS as exc:
        unsupported = await schema_error(connection, site, prefix, exc)
        connection.close()
        raise unsupported or ShopUnavailable(site, error_reason(exc)) from exc
    except BaseException:
        # Interrupted mid-result (a cancel): its state is unknown, drop it.
        connection.close()
        raise
    finally:
        await pool.release(connection)


async def fetch(connection: Any, query: Query) -> list[CursorRow]:
    """The rows of one of the reader's own queries, as the cursor gives them."""
    async with connection.cursor(aiomysql.DictCursor) as cursor:
        await cursor.execute(query.sql, query.params)
        return list(await cursor.fetchall())


def error_reason(exc: BaseException, password: str = "") -> str:
    """A driver error as text for `ShopUnavailable`, the password masked."""
    reason = str(exc) or type(exc).__name__
    if password:
        reason = reason.replace(password, "***")
    return reason

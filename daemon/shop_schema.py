"""Which OpenCart a shop's database holds, for errors that name the real cause.

ocsync reads OpenCart 3.0 and ocStore. An OpenCart 4.x database answers the
same queries with "Unknown column" errors, which would read as a broken shop;
these checks say what it is instead.
"""

from __future__ import annotations

from typing import Any

import aiomysql

from daemon.errors import UnsupportedShop

OPENCART_4 = "OpenCart 4.x schema; only OpenCart 3.0 / ocStore is supported for now"

# MySQL errors a schema other than OpenCart 3.0's gives: unknown column, table.
_SCHEMA_ERRORS = {1054, 1146}


async def unsupported_schema(connection: Any, prefix: str) -> str | None:
    """Why the shop's schema is not OpenCart 3.0's, or None when it may be.

    OpenCart 4.x drops `product.sku` (codes move to `product_code`); either sign
    is enough. A database with no product table at all is not judged here.
    """
    product = f"{prefix}product"
    async with connection.cursor() as cursor:
        await cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name IN (%s, %s)"
            " AND column_name IN ('product_id', 'sku')",
            (product, f"{prefix}product_code"),
        )
        found = {(str(table), str(column)) for table, column in await cursor.fetchall()}

    if (product, "product_id") not in found:
        return None
    has_sku = (product, "sku") in found
    has_codes = any(table != product for table, _ in found)
    return OPENCART_4 if has_codes or not has_sku else None


async def schema_error(
    connection: Any, site: str, prefix: str, exc: BaseException
) -> UnsupportedShop | None:
    """The unsupported schema behind a query's error, if that is its cause."""
    code = exc.args[0] if isinstance(exc, aiomysql.Error) and exc.args else None
    if code not in _SCHEMA_ERRORS:
        return None
    try:
        reason = await unsupported_schema(connection, prefix)
    except (aiomysql.Error, OSError):
        return None
    return None if reason is None else UnsupportedShop(site, reason)

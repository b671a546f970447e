"""TLS to a shop's database, for `database_tls = "verify"`.

aiomysql, given an SSL context, still talks in clear to a server that does
not offer TLS; so a pool opened with "verify" is checked to be encrypted
before anything is read from it.
"""

from __future__ import annotations

import ssl

import aiomysql

from daemon.errors import ShopUnavailable
from daemon.settings import DatabaseUrl


def shop_tls_context(db: DatabaseUrl) -> ssl.SSLContext | None:
    """The system's trust store, certificate and host name checked; or no TLS."""
    if db.tls == "off":
        return None
    return ssl.create_default_context()


async def ensure_encrypted(pool: aiomysql.Pool, db: DatabaseUrl, site: str) -> None:
    """Refuse the shop when TLS was asked for but the connection is clear."""
    if db.tls == "off":
        return

    async with pool.acquire() as connection, connection.cursor() as cursor:
        await cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = await cursor.fetchone()

    if row is None or not row[1]:
        raise ShopUnavailable(
            site,
            f'database_tls = "verify" but {db.host}:{db.port} does not offer TLS; '
            "turn TLS on in the database server (and REQUIRE SSL for the user)",
        )

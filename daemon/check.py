"""`ocsync check`: can every part be reached, and is each shop user read-only?

ocsync needs SELECT only on a shop's database; a user that may write is a risk
the operator should know of (a bug or a leaked password could then change
orders), so it is reported as a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import aiomysql

from daemon.errors import ShopUnavailable
from daemon.settings import Settings, SiteSettings
from daemon.shop import open_shop_pool
from events import EventLogError, open_event_store
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError

# Privileges that change nothing; anything else on the shop's data is a write.
_READ_ONLY = {"SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES", "PROCESS"}
_GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO ", re.IGNORECASE)


@dataclass
class CheckReport:
    """One line per part checked: ok, a warning, or a failure."""

    ok: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


async def check(settings: Settings) -> CheckReport:
    """Check the event log, every shop and the CRM; never changes anything."""
    report = CheckReport()

    try:
        store = await open_event_store(settings.event_log.url, settings.base_dir)
        position = await store.last_position()
        await store.close()
        report.ok.append(f"event log: {position} events")
    except EventLogError as exc:
        report.failures.append(f"event log: {exc}")

    for site in settings.sites:
        await _check_site(settings, site, report)

    async with KeepinCRMClient.from_settings(settings.crm) as crm:
        try:
            await crm.ping()
            report.ok.append(f"crm: {settings.crm.base_url} answers with this token")
        except KeepinCRMError as exc:
            report.failures.append(f"crm: {exc}")

    return report


async def _check_site(
    settings: Settings, site: SiteSettings, report: CheckReport
) -> None:
    database = settings.databases[site.name]
    try:
        pool = await open_shop_pool(database, site.name)
    except ShopUnavailable as exc:
        report.failures.append(f"site {site.name}: {exc.reason}")
        return
    try:
        async with pool.acquire() as connection, connection.cursor() as cursor:
            await cursor.execute(
                f"SELECT COUNT(*) FROM `{site.table_prefix}order`"
                " WHERE order_status_id > 0"
            )
            (orders,) = await cursor.fetchone()
            await cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = [str(row[0]) for row in await cursor.fetchall()]
    except aiomysql.Error as exc:
        report.failures.append(f"site {site.name}: {exc}")
        return
    finally:
        pool.close()
        await pool.wait_closed()

    report.ok.append(f"site {site.name}: {orders} confirmed orders readable")
    writes = writable_privileges(grants, database.database)
    if writes:
        report.warnings.append(
            f"site {site.name}: user {database.user!r} can write "
            f"({', '.join(sorted(writes))}); ocsync needs SELECT only: "
            f"GRANT SELECT ON `{database.database}`.* TO ..."
        )


def writable_privileges(grants: list[str], database: str) -> set[str]:
    """Privileges beyond reading that `grants` give on `database`."""
    writes: set[str] = set()
    for grant in grants:
        match = _GRANT.match(grant)
        if match is None:
            continue
        privileges, target = match.groups()
        scope = target.split(".")[0].strip("`")
        if scope not in ("*", database):
            continue
        for privilege in privileges.split(","):
            name = privilege.strip().upper()
            if name == "ALL PRIVILEGES" or name == "ALL":
                writes.add("ALL PRIVILEGES")
            elif name not in _READ_ONLY:
                writes.add(name)
    return writes


def render_check(report: CheckReport) -> str:
    lines = [f"ok       {line}" for line in report.ok]
    lines += [f"warning  {line}" for line in report.warnings]
    lines += [f"failed   {line}" for line in report.failures]
    return "\n".join(lines)

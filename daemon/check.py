"""`ocsync check`: can every part be reached, and is each shop user read-only?

ocsync needs SELECT only on a shop's database; a user that may write is a risk
the operator should know of (a bug or a leaked password could then change
orders), so it is reported as a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import aiomysql
import msgspec

from daemon.errors import ShopUnavailable
from daemon.settings import Settings, SiteSettings
from daemon.shop_pool import open_shop_pool
from daemon.shop_schema import unsupported_schema
from events import EventLogError, EventLogMissing, open_event_store
from projections.keepincrm.client import KeepinCRMClient
from projections.keepincrm.errors import KeepinCRMError

# Privileges that change nothing; anything else on the shop's data is a write.
_READ_ONLY = {"SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES", "PROCESS"}
_GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO ", re.IGNORECASE)
# `GRANT `role` TO `user`@`host``: a role, whose own privileges the user has.
# MySQL 8 names the role's host too (`role`@`%`); SHOW GRANTS FOR `role`
# means that host, the default one.
_ROLE = r"`((?:[^`]|``)+)`(?:@`[^`]*`)?"
_ROLE_GRANT = re.compile(rf"^GRANT ((?:{_ROLE}(?:\s*,\s*)?)+) TO ", re.I)
_ROLE_NAME = re.compile(_ROLE)
_QUOTED = re.compile(r"`((?:[^`]|``)+)`")
# Roles granted to roles, followed this deep: far beyond any real setup, and a
# bound in case the server ever reports a cycle.
_ROLE_DEPTH = 8


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
        store = await open_event_store(
            settings.event_log.url, settings.base_dir, create=False
        )
        position = await store.last_position()
        await store.close()
        report.ok.append(f"event log: {position} events")
    except EventLogMissing as exc:
        # Before the first run there is none; after a loss, deals need relink.
        report.warnings.append(
            f"{exc} If deals already exist in the CRM, run `ocsync relink` first."
        )
    except EventLogError as exc:
        report.failures.append(f"event log: {exc}")

    for site in settings.sites:
        await _check_site(settings, site, report)

    # A check answers at once: one try, whatever retries the daemon is given.
    once = msgspec.structs.replace(settings.crm, max_attempts=1)
    async with KeepinCRMClient.from_settings(once) as crm:
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
        async with pool.acquire() as connection:
            unsupported = await unsupported_schema(connection, site.table_prefix)
            if unsupported is not None:
                report.failures.append(f"site {site.name}: {unsupported}")
                return
            async with connection.cursor() as cursor:
                await cursor.execute(
                    f"SELECT COUNT(*) FROM `{site.table_prefix}order`"
                    " WHERE order_status_id > 0"
                )
                (orders,) = await cursor.fetchone()
                await cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
                grants = [str(row[0]) for row in await cursor.fetchall()]
                roles, unreadable = await _role_grants(cursor, grants)
    except aiomysql.Error as exc:
        report.failures.append(f"site {site.name}: {exc}")
        return
    finally:
        pool.close()
        await pool.wait_closed()

    report.ok.append(f"site {site.name}: {orders} confirmed orders readable")
    writes = writable_privileges(grants, database.database)
    writing_roles = []
    for role, role_grants in roles.items():
        through_role = writable_privileges(role_grants, database.database)
        if through_role:
            writes |= through_role
            writing_roles.append(role)
    if writes:
        via = ""
        if writing_roles:
            via = f"; through role {', '.join(map(repr, writing_roles))}"
        report.warnings.append(
            f"site {site.name}: user {database.user!r} can write "
            f"({', '.join(sorted(writes))}{via}); ocsync needs SELECT only: "
            f"GRANT SELECT ON `{database.database}`.* TO ..."
        )
    for role in unreadable:
        report.warnings.append(
            f"site {site.name}: user {database.user!r} has role {role!r}, whose "
            "privileges cannot be read; it may give write rights"
        )


async def _role_grants(
    cursor: aiomysql.Cursor, grants: list[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """The grants of every role in `grants`, and of roles those roles hold.

    A role granted but not the default can still be switched on with SET ROLE,
    so every granted role counts. Returns the grants by role, and the roles
    whose grants the server would not show.
    """
    found: dict[str, list[str]] = {}
    unreadable: list[str] = []
    pending = granted_roles(grants)
    for _ in range(_ROLE_DEPTH):
        next_roles = []
        for role in pending:
            if role in found or role in unreadable:
                continue
            try:
                await cursor.execute("SHOW GRANTS FOR %s", (role,))
            except aiomysql.Error:
                unreadable.append(role)
                continue
            shown = [str(row[0]) for row in await cursor.fetchall()]
            # MariaDB shows the grants of nested roles too, each to its role
            # (which the user, holding only the outer one, may not ask for).
            for grantee, lines in _by_grantee(shown, role).items():
                found.setdefault(grantee, lines)
            next_roles += granted_roles(shown)
        pending = next_roles
    return found, unreadable


def _by_grantee(grants: list[str], role: str) -> dict[str, list[str]]:
    """`grants` of a role by the role each names after TO; `role` if none."""
    by_grantee: dict[str, list[str]] = {role: []}
    for grant in grants:
        _, to, grantee = grant.rpartition(" TO ")
        quoted = _QUOTED.match(grantee.strip()) if to else None
        name = quoted.group(1).replace("``", "`") if quoted else role
        by_grantee.setdefault(name, []).append(grant)
    return by_grantee


def granted_roles(grants: list[str]) -> list[str]:
    """The roles `grants` give (lines `GRANT `role` TO ...`), in order."""
    roles = []
    for grant in grants:
        match = _ROLE_GRANT.match(grant)
        if match is not None:
            quoted = _ROLE_NAME.findall(match.group(1))
            roles += [name.replace("``", "`") for name in quoted]
    return roles


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

"""Settings: one immutable object built once from `settings.toml`.

`${NAME}` in any string value is replaced from the environment after the file is
parsed, so that secrets never live in the file. A database URL is split into its
parts first and each part expanded afterwards, so a password may hold any
character (`@`, `/`, `:`) without percent-encoding; percent-encoding in the file
still works.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from daemon.errors import SettingsError

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

VariantTarget = Literal["line_comment", "line_title", "deal_comment"]
ARTICLE_FIELDS = ("model", "sku", "upc", "ean", "jan", "isbn", "mpn")


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every settings table: an unknown key is an error, not a no-op."""


class EventLogSettings(_Section, frozen=True, kw_only=True):
    url: str = "sqlite:///data/events.db"


class CrmSettings(_Section, frozen=True, kw_only=True):
    base_url: str = "https://api.keepincrm.com/v1"
    token: str
    timeout: float = 30.0

    def __repr__(self) -> str:
        # The token must never reach a log line or a traceback.
        return f"CrmSettings(base_url={self.base_url!r}, token='***')"


class CaptureSettings(_Section, frozen=True, kw_only=True):
    poll_interval: float = 30.0
    # Shop timestamps have whole seconds and a slower writer may commit an
    # order stamped a little before our last read: look back this far again.
    overlap_seconds: int = 300
    batch_size: int = 200


class DealFieldSettings(_Section, frozen=True, kw_only=True):
    """CRM custom field names (e.g. `field_12`) that deal facts go into."""

    marker: str
    shipping_method: str | None = None
    payment_method: str | None = None
    city: str | None = None
    address: str | None = None


class DealSettings(_Section, frozen=True, kw_only=True):
    language: str = "uk-ua"
    # The product codes tried in turn for the article; an empty one falls through.
    article_fields: tuple[str, ...] = ("model",)
    variant_target: VariantTarget = "line_comment"
    line_comment_key: str = "comment"
    phone_region: str = "UA"
    custom_fields: DealFieldSettings


class DatabaseUrl(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    password: str
    host: str
    port: int
    database: str

    def __repr__(self) -> str:
        # Never let the password reach a log line or a traceback.
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    __str__ = __repr__


class SiteSettings(_Section, frozen=True, kw_only=True):
    name: str
    title: str = ""
    database: str
    table_prefix: str = "oc_"
    source_id: int
    responsible_id: int
    sync_from: int | str


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the daemon needs, validated; `base_dir` anchors relative paths."""

    base_dir: Path
    event_log: EventLogSettings
    crm: CrmSettings
    capture: CaptureSettings
    deals: DealSettings
    sites: list[SiteSettings]
    databases: dict[str, DatabaseUrl]

    def site(self, name: str) -> SiteSettings:
        for site in self.sites:
            if site.name == name:
                return site
        raise SettingsError(f"no site named {name!r} in the settings")


class _File(_Section, frozen=True, kw_only=True):
    event_log: EventLogSettings = EventLogSettings()
    crm: CrmSettings
    capture: CaptureSettings = CaptureSettings()
    deals: DealSettings
    sites: list[SiteSettings]


def default_settings_path() -> Path:
    return Path(os.environ.get("OCSYNC_CONFIG", "settings.toml"))


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, expand and validate the settings file; errors name the key."""
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"settings file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc

    # Database URLs are expanded part by part, after they are split.
    database_templates = [
        site.get("database") if isinstance(site, dict) else None
        for site in raw.get("sites", [])
    ]
    expanded = _expand(raw, environ, path_hint="", skip_keys={"database"})

    try:
        parsed = msgspec.convert(expanded, _File)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{path}: {_readable(exc)}") from exc

    databases = {}
    for index, (site, template) in enumerate(
        zip(parsed.sites, database_templates, strict=True)
    ):
        _check_site(site, index)
        key = f"sites[{index}].database"
        databases[site.name] = _parse_database_url(str(template), environ, key)
    _check_unique_names(parsed.sites)
    _check_deals(parsed.deals)

    return Settings(
        base_dir=path.resolve().parent,
        event_log=parsed.event_log,
        crm=parsed.crm,
        capture=parsed.capture,
        deals=parsed.deals,
        sites=parsed.sites,
        databases=databases,
    )


def parse_sync_from(value: int | str) -> int | dt.date | None:
    """`"all"` -> None, an order id -> int, `"YYYY-MM-DD"` -> date."""
    if isinstance(value, int):
        return value
    if value == "all":
        return None
    return dt.date.fromisoformat(value)


def _expand(
    value: Any, environ: Mapping[str, str], path_hint: str, skip_keys: set[str]
) -> Any:
    if isinstance(value, str):
        return _expand_string(value, environ, path_hint)
    if isinstance(value, dict):
        return {
            key: item
            if key in skip_keys
            else _expand(item, environ, f"{path_hint}.{key}".lstrip("."), skip_keys)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _expand(item, environ, f"{path_hint}[{index}]", skip_keys)
            for index, item in enumerate(value)
        ]
    return value


def _expand_string(text: str, environ: Mapping[str, str], key: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingsError(f"{key}: environment variable {name} is not set")
        return environ[name]

    return _ENV_REFERENCE.sub(substitute, text)


def _parse_database_url(
    template: str, environ: Mapping[str, str], key: str
) -> DatabaseUrl:
    parts = urlsplit(template)
    if parts.scheme != "mysql":
        raise SettingsError(f"{key}: expected mysql://user:password@host:port/database")

    def part(raw: str | None) -> str:
        return _expand_string(unquote(raw or ""), environ, key)

    # urlsplit's port parsing rejects `${PORT}`; read the netloc ourselves.
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, _, port = hostport.partition(":")
    database = part(parts.path.lstrip("/"))
    if not host or not database:
        raise SettingsError(f"{key}: a host and a database name are required")
    try:
        port_number = int(part(port) or 3306)
    except ValueError as exc:
        raise SettingsError(f"{key}: the port must be a number") from exc

    return DatabaseUrl(
        user=part(user),
        password=part(password),
        host=part(host),
        port=port_number,
        database=database,
    )


def _check_site(site: SiteSettings, index: int) -> None:
    where = f"sites[{index}]"
    if not _SITE_NAME.match(site.name):
        raise SettingsError(
            f"{where}.name: {site.name!r} may hold only letters, digits, _ . -"
        )
    if not _IDENTIFIER.match(site.table_prefix) and site.table_prefix != "":
        raise SettingsError(
            f"{where}.table_prefix: {site.table_prefix!r} is not a valid identifier"
        )
    try:
        parse_sync_from(site.sync_from)
    except ValueError as exc:
        raise SettingsError(
            f'{where}.sync_from: {site.sync_from!r} is not "all", an order id '
            "or a date (YYYY-MM-DD)"
        ) from exc


def _check_unique_names(sites: list[SiteSettings]) -> None:
    seen: set[str] = set()
    for index, site in enumerate(sites):
        if site.name in seen:
            raise SettingsError(f"sites[{index}].name: {site.name!r} is used twice")
        seen.add(site.name)


def _check_deals(deals: DealSettings) -> None:
    if not deals.article_fields:
        raise SettingsError("deals.article_fields: name at least one product code")
    for field in deals.article_fields:
        if field not in ARTICLE_FIELDS:
            raise SettingsError(
                f"deals.article_fields: {field!r} is not one of "
                f"{', '.join(ARTICLE_FIELDS)}"
            )


def _readable(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.sites[0].source_id`";
    # lead with the key, which is what the operator has to find.
    message = str(exc)
    text, _, where = message.partition(" - at `$")
    if where:
        return f"{where.rstrip('`').lstrip('.')}: {text}"
    return message

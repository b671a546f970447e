"""Settings: one immutable object built once from `settings.toml`.

`${NAME}` in any string value is replaced from the environment after the file is
parsed, so that secrets never live in the file. A database URL is split into its
parts first and each part expanded afterwards, so a password may hold any
character (`@`, `/`, `:`) without percent-encoding; percent-encoding in the file
still works.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from daemon.errors import SettingsError

_ENV_REFERENCE = re.compile(r"\$\{(file:[^}]+|[A-Za-z_][A-Za-z0-9_]*)\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SITE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

VariantTarget = Literal["line_comment", "line_title", "deal_comment"]
UnlinkedArticles = Literal["send", "hold"]
ClientMatch = Literal["phone_and_name", "phone", "never"]
ShippingTarget = Literal["line", "field"]
RoundingGap = Literal["line", "comment"]
LineUpdate = Literal["replace", "comment"]
DatabaseTls = Literal["off", "verify"]
# Numbers a setting may not go below: a batch of 0 orders or a rate of 0
# requests a minute would stall the daemon, not configure it.
Positive = Annotated[float, msgspec.Meta(gt=0)]
NotNegative = Annotated[float, msgspec.Meta(ge=0)]
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]

ARTICLE_FIELDS = ("model", "sku", "upc", "ean", "jan", "isbn", "mpn")

# The JSON columns of `order` that hold custom field values by custom_field_id.
CUSTOM_FIELD_COLUMNS = ("custom_field", "payment_custom_field", "shipping_custom_field")

# Columns of OpenCart 3.0's `order` table (4.x adds a few, drops `fax`): a map
# or rule naming any other column is a typo, refused at start.
ORDER_COLUMNS = frozenset(
    # A word list reads better here than sixty lines of one string each.
    """
    order_id invoice_no invoice_prefix store_id store_name store_url customer_id
    customer_group_id firstname lastname email telephone fax custom_field
    payment_firstname payment_lastname payment_company payment_address_1
    payment_address_2 payment_city payment_postcode payment_country
    payment_country_id payment_zone payment_zone_id payment_address_format
    payment_custom_field payment_method payment_code shipping_firstname
    shipping_lastname shipping_company shipping_address_1 shipping_address_2
    shipping_city shipping_postcode shipping_country shipping_country_id
    shipping_zone shipping_zone_id shipping_address_format shipping_custom_field
    shipping_method shipping_code comment total order_status_id affiliate_id
    commission marketing_id tracking language_id currency_id currency_code
    currency_value ip forwarded_ip user_agent accept_language date_added
    date_modified language_code payment_address_id shipping_address_id
    subscription_id transaction_id
    """.split()  # noqa: SIM905
)

# Emails checkout forms make up when the buyer gives none (fnmatch patterns).
DEFAULT_DUMMY_EMAILS = (
    "null@nu.ll",
    "empty@*",
    "noemail@*",
    "no-email@*",
    "no_email@*",
    "nomail@*",
    "none@*",
    "*@localhost",
    "*@localhost.*",
    "*@*.invalid",
    "*@example.invalid",
)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every settings table: an unknown key is an error, not a no-op."""


class EventLogSettings(_Section, frozen=True, kw_only=True):
    url: str = "sqlite:///data/events.db"


class CrmSettings(_Section, frozen=True, kw_only=True):
    base_url: str = "https://api.keepincrm.com/v1"
    token: str
    timeout: Positive = 30.0
    # One limit for the whole CRM account, shared by every site: integrators
    # report 429 from about 100 requests a minute.
    requests_per_minute: AtLeastOne = 90
    # Tries of one call that failed for a passing reason (timeout, dropped
    # connection, 5xx, 429), with exponential backoff and jitter between them.
    max_attempts: AtLeastOne = 5
    retry_initial_seconds: NotNegative = 1.0
    retry_max_seconds: NotNegative = 60.0

    def __repr__(self) -> str:
        # The token must never reach a log line or a traceback.
        return f"CrmSettings(base_url={self.base_url!r}, token='***')"


class RunSettings(_Section, frozen=True, kw_only=True):
    # After SIGTERM: seconds to finish the work in hand and commit, then stop.
    shutdown_seconds: NotNegative = 30.0


class CaptureSettings(_Section, frozen=True, kw_only=True):
    poll_interval: Positive = 30.0
    # Shop timestamps have whole seconds and a slower writer may commit an
    # order stamped a little before our last read: look back this far again.
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0)] = 300
    batch_size: AtLeastOne = 200
    # `ocsync run --once` reads an order caught mid-edit (no lines, or back at
    # status 0) again after this long, once, before reporting it held back.
    mid_edit_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    # The queries of one batch (`batch_size` orders) not answered after this
    # long count as the shop down, so that a hanging database is reported
    # instead of freezing its watcher.
    query_timeout: Positive = 60.0


class DealFieldSettings(_Section, frozen=True, kw_only=True):
    """CRM custom field names (e.g. `field_12`) that deal facts go into.

    Every key but `marker` is optional: a fact with no field is not sent there.
    """

    marker: str
    shipping_method: str | None = None
    payment_method: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    branch: str | None = None
    address: str | None = None
    recipient: str | None = None
    comment: str | None = None
    order_number: str | None = None
    # The shipping cost, when `deals.shipping = "field"`.
    shipping_cost: str | None = None


class DealSettings(_Section, frozen=True, kw_only=True):
    language: str = "uk-ua"
    # The product codes tried in turn for the article; an empty one falls through.
    article_fields: tuple[str, ...] = ("model",)
    # A line whose article has no CRM catalogue item: send it anyway (the CRM
    # may create an item) or hold the whole deal until the item exists.
    unlinked_articles: UnlinkedArticles = "send"
    variant_target: VariantTarget = "line_comment"
    line_comment_key: str = "comment"
    phone_region: str = "UA"
    dummy_emails: tuple[str, ...] = DEFAULT_DUMMY_EMAILS
    # Reuse an existing CRM client found by phone: only when the name matches
    # too (a family sharing a phone stays apart), on the phone alone, or never.
    client_match: ClientMatch = "phone_and_name"
    # Shipping and other charges as lines of their own, or in a deal field.
    shipping: ShippingTarget = "line"
    # Parts a little short of the total shown: a small line, or a comment.
    rounding_gap: RoundingGap = "line"
    rounding_title: str = "Округлення"
    # How a deal's lines are corrected after creation: "replace" (remove the
    # lines ocsync sent by their CRM ids, add the right ones) or "comment"
    # (leave the lines, add a comment listing the right ones) for accounts
    # where replacing misbehaves.
    line_update: LineUpdate = "replace"
    # Method codes (`shipping_code`, `payment_code`) to Ukrainian names, e.g.
    # "novaposhta.department" = "Нова Пошта, відділення".
    methods: dict[str, str] = {}
    # Order total codes (`sub_total`, `total`, `coupon`, `voucher`, ...) to the
    # titles managers read, whatever language the customer ordered in;
    # `{detail}` stands for what the stored title has in brackets (a coupon's
    # code), e.g. coupon = "Купон ({detail})". Shipping titles come from
    # `methods`.
    total_titles: dict[str, str] = {}
    # Text as shops store it (city, region, branch typed in Russian or Latin
    # letters) to its Ukrainian name, e.g. "Одесса" = "Одеса".
    glossary: dict[str, str] = {}
    custom_fields: DealFieldSettings


class QuickOrderSettings(_Section, frozen=True, kw_only=True):
    """How a site's quick orders ("купити в 1 клік") are recognised and sent.

    An `order` row is a quick order when every rule given matches: empty
    shipping and payment methods, an empty address (address line 1 and city
    of both the payment and the shipping address), an email from `emails`, a
    comment holding `comment_marker`. A module that keeps its own table is
    read with `query` (see the README for the columns it must return).
    """

    empty_methods: bool = False
    empty_address: bool = False
    emails: tuple[str, ...] = ()
    comment_marker: str | None = None
    query: str | None = None
    title_prefix: str = "Швидке замовлення"
    source_id: int | None = None


class DatabaseUrl(msgspec.Struct, frozen=True, kw_only=True):
    user: str
    password: str
    host: str
    port: int
    database: str
    # The site's `database_tls`: "verify" requires TLS with a verified certificate.
    tls: DatabaseTls = "off"

    def __repr__(self) -> str:
        # Never let the password reach a log line or a traceback.
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    __str__ = __repr__


class SiteSettings(_Section, frozen=True, kw_only=True):
    name: str
    title: str = ""
    database: str
    table_prefix: str = "oc_"
    # TLS to the shop's database: "off" (a database on this machine or a
    # private network) or "verify" (required, certificate and host checked).
    database_tls: DatabaseTls = "off"
    # One store of a multi-store install (None: every store of the database).
    store_id: int | None = None
    source_id: int
    responsible_id: int
    sync_from: int | str
    funnel_id: int | None = None
    # The stage of a new deal when its status has no entry in `stages`.
    stage_id: int | None = None
    # order_status_id -> stage_id ("1" = 101); a status change moves the deal.
    stages: dict[str, int] = {}
    # Statuses that close the deal as failed (e.g. 7 Canceled, 8 Denied).
    failed_statuses: tuple[int, ...] = ()

    def stage_for(self, status_id: int) -> int | None:
        """The stage mapped to a shop status, else the site's default stage."""
        return self.stages.get(str(status_id), self.stage_id)

    # A display step for shops that round shown prices their own way, e.g.
    # "1" (whole hryvnia) or "0.50"; None keeps OpenCart's rule.
    price_step: str | None = None
    # Where the delivery branch is kept: "shipping_address_1",
    # "city_colon_branch" ("Київ : Відділення №1" in shipping_city),
    # "custom_field:<id>", or "query:<name>.<column>" (a column of `queries`).
    branch_from: str = "shipping_address_1"
    # Where the delivery city is kept: "shipping_city" (the address's city),
    # "city_colon_branch" (the part before the colon), "custom_field:<id>" or
    # "query:<name>.<column>"; the latter two fall back to the address's city.
    city_from: str = "shipping_city"
    # OpenCart custom fields ("custom_field.<id>", "payment_custom_field.<id>",
    # "shipping_custom_field.<id>") and order columns ("order.<column>") to
    # CRM custom field names.
    custom_fields: dict[str, str] = {}
    # Named SQL run per batch of orders; each must return an `order_id` column
    # and take `%(order_ids)s`. Rows travel in the snapshot (`extras[name]`).
    queries: dict[str, str] = {}
    quick_order: QuickOrderSettings | None = None


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the daemon needs, validated; `base_dir` anchors relative paths."""

    base_dir: Path
    event_log: EventLogSettings
    crm: CrmSettings
    capture: CaptureSettings
    deals: DealSettings
    sites: list[SiteSettings]
    databases: dict[str, DatabaseUrl]
    run: RunSettings = RunSettings()

    def site(self, name: str) -> SiteSettings:
        for site in self.sites:
            if site.name == name:
                return site
        raise SettingsError(f"no site named {name!r} in the settings")


class _File(_Section, frozen=True, kw_only=True):
    event_log: EventLogSettings = EventLogSettings()
    crm: CrmSettings
    run: RunSettings = RunSettings()
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
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    except OSError as exc:
        raise SettingsError(f"settings file {path} cannot be read: {exc}") from exc
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
        database = _parse_database_url(str(template), environ, key)
        databases[site.name] = msgspec.structs.replace(database, tls=site.database_tls)
    _check_unique_names(parsed.sites)
    _check_deals(parsed.deals)
    _check_crm_url(parsed.crm.base_url)

    return Settings(
        base_dir=path.resolve().parent,
        event_log=parsed.event_log,
        crm=parsed.crm,
        capture=parsed.capture,
        run=parsed.run,
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
        if name.startswith("file:"):
            return _secret_file(Path(name.removeprefix("file:")), key)
        if name not in environ:
            raise SettingsError(f"{key}: environment variable {name} is not set")
        return environ[name]

    return _ENV_REFERENCE.sub(substitute, text)


def _secret_file(path: Path, key: str) -> str:
    """A secret kept in a file (`${file:/run/secrets/crm_token}`), for its owner only.

    A file that others can read is refused: the secret is as good as public.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{key}: cannot read secret file {path}: {exc}") from exc
    if mode & 0o077:
        raise SettingsError(
            f"{key}: secret file {path} can be read by others than its owner "
            f"(mode {mode & 0o777:o}); chmod 600 it"
        )
    return text.rstrip("\r\n")


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
    _check_site_maps(site, where)
    try:
        start = parse_sync_from(site.sync_from)
        if isinstance(start, int) and start < 0:
            raise ValueError(site.sync_from)
    except ValueError as exc:
        raise SettingsError(
            f'{where}.sync_from: {site.sync_from!r} is not "all", an order id '
            "or a date (YYYY-MM-DD)"
        ) from exc


_BRANCH_SOURCES = ("shipping_address_1", "city_colon_branch")
_CITY_SOURCES = ("shipping_city", "city_colon_branch")
_CUSTOM_FIELD_KEY = re.compile(
    r"^(custom_field|payment_custom_field|shipping_custom_field)\.(\d+)$"
)


def _check_source(
    site: SiteSettings, key: str, source: str, columns: tuple[str, ...]
) -> None:
    """Refuse a `branch_from`-style source that names no column, field or query."""
    kind, _, detail = source.partition(":")
    if source in columns or (kind == "custom_field" and detail.isdigit()):
        return
    if kind == "query" and detail.partition(".")[0] in site.queries:
        if not detail.partition(".")[2]:
            raise SettingsError(
                f"{key}: {source!r} names no column (query:NAME.COLUMN)"
            )
        return
    raise SettingsError(
        f"{key}: {source!r} is not {', '.join(columns)}, custom_field:<id> "
        "or query:<name>.<column> of a query in queries"
    )


def _check_site_maps(site: SiteSettings, where: str) -> None:
    """Refuse maps and rules that name a field no OpenCart order has."""
    for status in site.stages:
        if not status.isdigit():
            raise SettingsError(f"{where}.stages: {status!r} is not an order_status_id")

    if site.price_step is not None:
        try:
            step = Decimal(site.price_step)
        except InvalidOperation:
            step = Decimal(0)
        if not step.is_finite() or step <= 0:
            raise SettingsError(
                f"{where}.price_step: {site.price_step!r} is not a positive amount"
            )

    for name, sql in site.queries.items():
        if "%(order_ids)s" not in sql:
            raise SettingsError(
                f"{where}.queries.{name}: the query must take %(order_ids)s"
            )

    _check_source(site, f"{where}.branch_from", site.branch_from, _BRANCH_SOURCES)
    _check_source(site, f"{where}.city_from", site.city_from, _CITY_SOURCES)

    for key in site.custom_fields:
        table, _, column = key.partition(".")
        if table == "order":
            if column not in ORDER_COLUMNS:
                raise SettingsError(
                    f"{where}.custom_fields: {key!r}: the order has no column "
                    f"{column!r}"
                )
        elif not _CUSTOM_FIELD_KEY.match(key):
            raise SettingsError(
                f"{where}.custom_fields: {key!r} is not order.<column> or "
                "custom_field.<id> (or payment_/shipping_custom_field.<id>)"
            )

    quick_query = site.quick_order.query if site.quick_order else None
    if quick_query is not None and "%(after_id)s" not in quick_query:
        raise SettingsError(
            f"{where}.quick_order.query: the query must take %(after_id)s"
        )


def _check_crm_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            f"crm.base_url: {base_url!r} is not an http(s) address such as "
            "https://api.keepincrm.com/v1"
        )
    # Plain http would carry the token in clear; only this machine may see it.
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise SettingsError(
            f"crm.base_url: {base_url!r} is plain http to another machine, which "
            "would send the API token in clear; use https (http is accepted for "
            "127.0.0.0/8, ::1 and localhost only, e.g. the sandbox)"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_unique_names(sites: list[SiteSettings]) -> None:
    seen: set[str] = set()
    for index, site in enumerate(sites):
        if site.name in seen:
            raise SettingsError(f"sites[{index}].name: {site.name!r} is used twice")
        seen.add(site.name)


def _check_deals(deals: DealSettings) -> None:
    if deals.shipping == "field" and not deals.custom_fields.shipping_cost:
        raise SettingsError(
            'deals.shipping = "field" needs deals.custom_fields.shipping_cost, '
            "the CRM field the shipping cost goes into"
        )
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

"""Loading settings.toml: expansion from the environment and validation."""

import datetime as dt
from pathlib import Path

import pytest

from daemon.errors import SettingsError
from daemon.settings import load_settings, parse_sync_from

REPO = Path(__file__).resolve().parent.parent

MINIMAL = """
[crm]
token = "${TOKEN}"

[deals.custom_fields]
marker = "field_1"

[[sites]]
name = "site_a"
database = "DATABASE"
source_id = 1
responsible_id = 2
sync_from = "all"
"""


def write(
    tmp_path: Path, text: str, database: str = "mysql://r:pw@db:3307/shop"
) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text.replace("DATABASE", database), encoding="utf-8")
    return path


def test_the_shipped_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """settings.toml in the repository is complete and valid."""
    environ = {"KEEPINCRM_TOKEN": "t0ken", "OCSYNC_DEMO_DB_PASSWORD": "secret"}

    settings = load_settings(REPO / "settings.toml", environ)

    assert [site.name for site in settings.sites] == ["site_a", "site_b"]
    assert settings.crm.token == "t0ken"
    assert settings.databases["site_b"].database == "ocsync_demo_site_b"


def test_a_password_may_hold_any_character(tmp_path: Path) -> None:
    """An expanded password keeps @, :, / and % as they are."""
    path = write(tmp_path, MINIMAL, "mysql://reader:${PW}@127.0.0.1:3306/shop")

    settings = load_settings(path, {"TOKEN": "t", "PW": "p@ss:w/rd%41"})

    database = settings.databases["site_a"]
    assert (database.user, database.password) == ("reader", "p@ss:w/rd%41")
    assert (database.host, database.port, database.database) == (
        "127.0.0.1",
        3306,
        "shop",
    )


def test_percent_encoding_in_the_file_still_works(tmp_path: Path) -> None:
    """A literal password written percent-encoded is decoded."""
    path = write(tmp_path, MINIMAL, "mysql://reader:p%40ss@db/shop")

    settings = load_settings(path, {"TOKEN": "t"})

    assert settings.databases["site_a"].password == "p@ss"
    assert settings.databases["site_a"].port == 3306


def test_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    """Neither the token nor a password shows in the settings' repr."""
    path = write(tmp_path, MINIMAL, "mysql://reader:${PW}@db/shop")

    settings = load_settings(path, {"TOKEN": "tok-123456", "PW": "pw-987654"})

    assert "tok-123456" not in repr(settings)
    assert "pw-987654" not in repr(settings)


def test_a_missing_variable_is_named(tmp_path: Path) -> None:
    """An unset ${NAME} stops loading with the key and the variable named."""
    with pytest.raises(SettingsError, match=r"crm\.token: environment variable TOKEN"):
        load_settings(write(tmp_path, MINIMAL), {})


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    """A typo in a key is an error naming it, never silently ignored."""
    text = MINIMAL.replace("source_id = 1", "source_id = 1\nsource = 3")

    with pytest.raises(SettingsError, match=r"sites\[0\].*source"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_a_wrong_type_names_the_key(tmp_path: Path) -> None:
    """source_id must be a number; the message says where."""
    text = MINIMAL.replace("source_id = 1", 'source_id = "one"')

    with pytest.raises(SettingsError, match=r"sites\[0\]\.source_id"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_table_prefix_must_be_an_identifier(tmp_path: Path) -> None:
    """A prefix goes into SQL: anything but an identifier is refused."""
    text = MINIMAL.replace("source_id = 1", 'source_id = 1\ntable_prefix = "oc-; x"')

    with pytest.raises(SettingsError, match="table_prefix"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_sync_from_is_required(tmp_path: Path) -> None:
    """Going live without saying where to start is refused."""
    text = MINIMAL.replace('sync_from = "all"', "")

    with pytest.raises(SettingsError, match="sync_from"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_an_unknown_article_field_is_refused(tmp_path: Path) -> None:
    """article_fields may only name product codes OpenCart has."""
    text = MINIMAL.replace(
        "[deals.custom_fields]",
        '[deals]\narticle_fields = ["code"]\n\n[deals.custom_fields]',
    )

    with pytest.raises(SettingsError, match=r"deals\.article_fields: 'code'"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("all", None), (17, 17), ("2026-12-01", dt.date(2026, 12, 1))],
)
def test_sync_from_forms(value: int | str, expected: object) -> None:
    """sync_from is "all", an order id or a date."""
    assert parse_sync_from(value) == expected


def test_shipping_as_a_field_needs_the_field_named(tmp_path: Path) -> None:
    """shipping = "field" without custom_fields.shipping_cost is refused."""
    text = MINIMAL.replace(
        "[deals.custom_fields]", '[deals]\nshipping = "field"\n\n[deals.custom_fields]'
    )

    with pytest.raises(SettingsError, match="shipping_cost"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('stages = { "new" = 3 }', "stages"),
        ('price_step = "-1"', "price_step"),
        ('branch_from = "query:np.branch"', "branch_from"),
        ('city_from = "query:np.city"', "city_from"),
        ('city_from = "shipping_address_1"', "city_from"),
        ('city_from = "custom_field:x"', "city_from"),
        (
            'queries = { np = "SELECT %(order_ids)s" }\ncity_from = "query:np"',
            "city_from",
        ),
        ('custom_fields = { "order.telefon" = "field_9" }', "custom_fields"),
        ('custom_fields = { "custom_field.x" = "field_9" }', "custom_fields"),
        ('queries = { np = "SELECT 1" }', "queries.np"),
    ],
)
def test_a_map_naming_a_missing_field_is_refused(
    tmp_path: Path, line: str, key: str
) -> None:
    """Per-site maps and rules naming no real field are refused, the key named."""
    text = MINIMAL.replace("source_id = 1", f"source_id = 1\n{line}")

    with pytest.raises(SettingsError, match=rf"sites\[0\]\.{key}"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


@pytest.mark.parametrize(
    "city_from",
    ["shipping_city", "city_colon_branch", "custom_field:1", "query:np.city"],
)
def test_every_city_source_is_accepted(tmp_path: Path, city_from: str) -> None:
    """city_from takes the city column, the colon form, a custom field or a query."""
    query = 'queries = { np = "SELECT order_id, city WHERE order_id IN %(order_ids)s" }'
    text = MINIMAL.replace(
        "source_id = 1", f'source_id = 1\n{query}\ncity_from = "{city_from}"'
    )

    settings = load_settings(write(tmp_path, text), {"TOKEN": "t"})

    assert settings.sites[0].city_from == city_from


def test_a_secret_may_come_from_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    """${file:PATH} reads the secret; the trailing newline is dropped."""
    secret = tmp_path / "token"
    secret.write_text("t0k3n-from-file\n", encoding="utf-8")
    secret.chmod(0o600)
    text = MINIMAL.replace("${TOKEN}", f"${{file:{secret}}}")

    settings = load_settings(write(tmp_path, text), {})

    assert settings.crm.token == "t0k3n-from-file"


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """A world- or group-readable secret file stops loading, naming the key."""
    secret = tmp_path / "token"
    secret.write_text("t0k3n", encoding="utf-8")
    secret.chmod(0o644)
    text = MINIMAL.replace("${TOKEN}", f"${{file:{secret}}}")

    with pytest.raises(SettingsError, match=r"crm\.token: secret file .* chmod 600"):
        load_settings(write(tmp_path, text), {})


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("[capture]", "batch_size = 0", r"capture\.batch_size"),
        ("[capture]", "poll_interval = 0", r"capture\.poll_interval"),
        ("[capture]", "mid_edit_seconds = 3600", r"capture\.mid_edit_seconds"),
        ("[crm]", "requests_per_minute = 0", r"crm\.requests_per_minute"),
        ("[crm]", "timeout = -5", r"crm\.timeout"),
        ("[crm]", 'base_url = "ftp://x/v1"', r"crm\.base_url"),
    ],
)
def test_a_value_that_would_stall_the_daemon_is_refused(
    tmp_path: Path, section: str, line: str, key: str
) -> None:
    """A batch of 0, a rate of 0, a negative timeout or a non-http CRM: refused."""
    text = MINIMAL.replace("[crm]", f"{section}\n{line}\n\n[crm]", 1)
    if section == "[crm]":
        text = MINIMAL.replace("[crm]\n", f"[crm]\n{line}\n", 1)

    with pytest.raises(SettingsError, match=key):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_a_negative_sync_from_is_refused(tmp_path: Path) -> None:
    """sync_from = -5 is no order id."""
    text = MINIMAL.replace('sync_from = "all"', "sync_from = -5")

    with pytest.raises(SettingsError, match=r"sites\[0\]\.sync_from"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


def test_a_folder_or_a_non_utf8_file_is_a_clear_error(tmp_path: Path) -> None:
    """Not a traceback: the path and what is wrong with it."""
    latin = tmp_path / "latin1.toml"
    latin.write_bytes("title = 'Сайт'".encode("cp1251"))

    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(tmp_path, {})
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings(latin, {})


@pytest.mark.parametrize(
    "url",
    [
        "http://api.keepincrm.com/v1",
        "http://10.0.0.5:8765/v1",
        "http://localhost.evil/v1",
    ],
)
def test_plain_http_to_another_machine_is_refused(tmp_path: Path, url: str) -> None:
    """The token would travel in clear: refused, naming the key and the fix."""
    text = MINIMAL.replace("[crm]\n", f'[crm]\nbase_url = "{url}"\n', 1)

    with pytest.raises(SettingsError, match=r"crm\.base_url: .*plain http.*https"):
        load_settings(write(tmp_path, text), {"TOKEN": "t"})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/v1",
        "http://127.10.0.1/v1",
        "http://[::1]:8765/v1",
        "http://LocalHost:8765/v1",
        "https://crm.example.com/v1",
    ],
)
def test_http_to_this_machine_and_https_anywhere_are_accepted(
    tmp_path: Path, url: str
) -> None:
    """Loopback (the sandbox) may be plain http; any host may be https."""
    text = MINIMAL.replace("[crm]\n", f'[crm]\nbase_url = "{url}"\n', 1)

    settings = load_settings(write(tmp_path, text), {"TOKEN": "t"})

    assert settings.crm.base_url == url


def test_database_tls_is_off_unless_a_site_asks_to_verify(tmp_path: Path) -> None:
    """database_tls reaches the site's database; any other value is refused."""
    plain = load_settings(write(tmp_path, MINIMAL), {"TOKEN": "t"})
    text = MINIMAL.replace(
        'sync_from = "all"', 'sync_from = "all"\ndatabase_tls = "verify"'
    )
    verified = load_settings(write(tmp_path, text), {"TOKEN": "t"})
    wrong = MINIMAL.replace(
        'sync_from = "all"', 'sync_from = "all"\ndatabase_tls = "on"'
    )

    assert plain.databases["site_a"].tls == "off"
    assert verified.databases["site_a"].tls == "verify"
    with pytest.raises(SettingsError, match=r"database_tls"):
        load_settings(write(tmp_path, wrong), {"TOKEN": "t"})

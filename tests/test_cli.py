"""Operator commands on the fixture shops: status, retry, relink, check, catalogue."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import OpenCartShop
from tests.e2e_support import SandboxCrm, ocsync_output, run_ocsync, write_settings


async def synced(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> Path:
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)
    code, log = await run_ocsync(config, "run", "--once")
    assert code == 0, log
    return config


async def test_status_and_retry_after_a_clean_sync(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """Nothing parked after the fixture sync; retrying an unknown order fails."""
    config = await synced(shops, sandbox, tmp_path)

    status = await ocsync_output(config, "status")
    unknown = await ocsync_output(config, "retry", "site_a:404")
    every = await ocsync_output(config, "retry", "--all")

    assert status[0] == 0 and status[1].startswith("No parked orders")
    assert unknown[0] == 1 and "no order 'site_a:404'" in unknown[2]
    assert every[0] == 0 and every[1].startswith("0 order(s)")


async def test_relink_finds_every_deal_already_linked(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """After a sync the log already links all 14 deals: relink changes nothing."""
    config = await synced(shops, sandbox, tmp_path)

    code, out, err = await ocsync_output(config, "relink")

    assert code == 0, err
    assert out.startswith("0 deal(s) linked to their orders, 14 already linked.")


async def test_check_warns_that_root_can_write(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """The fixture shops are read as root: check passes, warning for each site."""
    config = await synced(shops, sandbox, tmp_path)

    code, out, err = await ocsync_output(config, "check")

    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2
    assert all("user 'root' can write" in line for line in warnings)


async def test_commands_that_read_the_log_refuse_one_that_is_not_there(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """status, audit, retry and replay: a wrong log path is an error, not all clear."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)

    ran = [
        await ocsync_output(config, *command)
        for command in (
            ("status",),
            ("audit", "site_a:1"),
            ("retry", "--all"),
            ("replay", "deals", "--dry-run"),
        )
    ]

    for code, out, err in ran:
        assert code == 1 and out == "", err
        assert "there is no event log at" in err
    assert not (tmp_path / "events.db").exists()


async def test_catalogue_reports_products_the_crm_lacks(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """An empty CRM catalogue: all 21 products of each site listed, none spelt twice."""
    config = write_settings(tmp_path / "settings.toml", shops, sandbox.url)

    code, out, err = await ocsync_output(config, "catalogue")

    assert code == 0, err
    assert "Products whose article no CRM item carries: 42" in out
    assert "Articles spelt differently across sites: 0" in out


async def test_a_malformed_order_reference_is_refused_naming_what_is_wrong(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """audit and retry refuse `foo`, `site_a:abc` and a site the settings lack."""
    config = await synced(shops, sandbox, tmp_path)

    shapeless = await ocsync_output(config, "audit", "foo")
    not_a_number = await ocsync_output(config, "retry", "site_a:abc")
    no_such_site = await ocsync_output(config, "audit", "nosuchsite:1")
    quick = await ocsync_output(config, "audit", "site_a:quick-12")

    assert shapeless[0] == 2 and "'foo' is not SITE:ORDER_ID" in shapeless[2]
    assert not_a_number[0] == 2
    assert "'site_a:abc' is not SITE:ORDER_ID" in not_a_number[2]
    assert no_such_site[0] == 2
    assert "no site named 'nosuchsite' in the settings" in no_such_site[2]
    # A well-formed quick-order reference reaches the log, which lacks it.
    assert quick[0] == 1 and "no order 'site_a:quick-12'" in quick[2]

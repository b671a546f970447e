"""`ocsync run --once` as its own process: what its exit code promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import CASE, TSHIRT, OpenCartShop
from tests.e2e_support import SandboxCrm, deals_by_marker, run_ocsync, write_settings


def log_lines(stderr: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == event]


async def test_order_mid_edit_fails_the_run_until_it_has_lines(
    shop: OpenCartShop, sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """An order with no lines: exit 1 naming it; with its lines back, a deal, exit 0."""
    await shop.add_order(1)
    await shop.add_order(2)
    # OpenCart 3.0 deletes an order's lines before writing them again.
    await shop.delete_lines(2)
    config = write_settings(
        tmp_path / "settings.toml",
        {"site_a": shop},
        sandbox.url,
        capture="mid_edit_seconds = 0.2",
    )

    code, stderr = await run_ocsync(config, "run", "--once")

    assert code == 1, stderr
    [held] = log_lines(stderr, "order still mid-edit, not sent")
    assert held["level"] == "warning"
    assert (held["site"], held["order_id"], held["stream"]) == ("site_a", 2, "site_a:2")
    assert held["position"] is None
    [finished] = log_lines(stderr, "run finished")
    assert finished["mid_edit"] == ["site_a:2"]
    assert set(await deals_by_marker(sandbox.url)) == {"site_a:1"}

    await shop.add_lines(2, [TSHIRT, CASE])
    code, stderr = await run_ocsync(config, "run", "--once")

    assert code == 0, stderr
    assert not log_lines(stderr, "order still mid-edit, not sent")
    assert set(await deals_by_marker(sandbox.url)) == {"site_a:1", "site_a:2"}

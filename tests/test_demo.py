"""The demo's safety checks: what it refuses to load, what it says on failure.

The demo itself (scripts/demo.sh) uses fixed database names and is not run
here; its checks are functions, tested on real dumps and a real failing run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import DB_HOST, DB_PORT, OpenCartShop
from tests.e2e_support import REPO, SandboxCrm
from tests.test_replay import edit, ocsync, settings_file


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts/demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo"] = module
    spec.loader.exec_module(module)
    return module


demo = _demo()


def mysqldump(shop: OpenCartShop, path: Path, *options: str) -> Path:
    """The shop's database dumped by mysqldump, as a user would make it."""
    with path.open("wb") as out:
        subprocess.run(
            [
                "mysqldump",
                "--protocol=tcp",
                f"-h{DB_HOST}",
                f"-P{DB_PORT}",
                "-uroot",
                *options,
                shop.url.database,
            ],
            stdout=out,
            check=True,
        )
    return path


async def test_a_dump_made_with_databases_is_refused(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """`mysqldump --databases` writes CREATE DATABASE and USE: refused, with the fix."""
    shop = await make_shop()
    dump = mysqldump(shop, tmp_path / "shop.sql", "--databases")

    problem = demo.dump_problem(dump)

    assert problem is not None
    assert problem.startswith(f"{dump} line ")
    assert f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{shop.url.database}`" in problem
    assert "without --databases" in problem


async def test_a_plain_dump_of_one_database_is_accepted(
    make_shop: Callable[..., Awaitable[OpenCartShop]], tmp_path: Path
) -> None:
    """mysqldump of one database names none: nothing to refuse."""
    shop = await make_shop()

    assert demo.dump_problem(mysqldump(shop, tmp_path / "shop.sql")) is None


def test_a_use_statement_alone_is_refused(tmp_path: Path) -> None:
    """A hand-made dump that only switches database is refused as well."""
    dump = tmp_path / "edited.sql"
    dump.write_text("SET NAMES utf8mb4;\nuse live_shop;\nINSERT INTO t VALUES (1);\n")

    problem = demo.dump_problem(dump)

    assert problem is not None and "line 2 names a database" in problem


def test_two_dumps_of_one_name_are_refused_before_loading(tmp_path: Path) -> None:
    """shops/site.sql and old/site.sql would share a database: both named."""
    first, second = tmp_path / "shops" / "site.sql", tmp_path / "old" / "site.sql"

    with pytest.raises(SystemExit, match="would both load into ocsync_demo_site;"):
        demo.site_names([first, tmp_path / "other.sql", second])
    with pytest.raises(SystemExit, match=r"site-a\.sql would both"):
        demo.site_names([tmp_path / "site_a.sql", tmp_path / "site-a.sql"])
    assert demo.site_names([first, tmp_path / "site-b.sql"]) == ["site", "site_b"]


async def test_a_failed_run_is_explained_by_its_error_lines(
    shops: dict[str, OpenCartShop], sandbox: SandboxCrm, tmp_path: Path
) -> None:
    """A shop that cannot be read: the demo's lines name the site and the reason."""
    config = settings_file(shops, sandbox.url, tmp_path)
    edit(config, shops["site_b"].url.database, "ocsync_no_such_db")

    run = await ocsync(config, "run", "--once")
    lines = demo.failure_lines(run.err)

    assert run.code == 1
    assert lines
    assert any(
        line.startswith("shop unavailable site=site_b reason=")
        and "ocsync_no_such_db" in line
        for line in lines
    ), lines

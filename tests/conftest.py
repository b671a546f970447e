"""Scratch OpenCart 3.0 databases on the real MariaDB, and builders of orders.

Each test that asks for a shop gets its own database (`ocsync_test_<hex>`),
loaded with the minimal schema in `tests/sql/opencart30.sql` and a small
catalogue, and dropped afterwards. The server is the one `scripts/mariadb.sh`
makes sure of: $OCSYNC_DB_HOST:$OCSYNC_DB_PORT, root, empty password.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomysql
import pytest
from pymysql.constants import CLIENT

from daemon.settings import DatabaseUrl, SiteSettings
from daemon.shop import ShopReader
from daemon.shop_pool import open_shop_pool
from events import EventStore, open_event_store

# The fixture shops, the sandbox CRM and ocsync as a process, for whole-program tests.
pytest_plugins = ["tests.e2e_support", "tests.projection_support"]

DB_HOST = os.environ.get("OCSYNC_DB_HOST", "127.0.0.1")
DB_PORT = int(os.environ.get("OCSYNC_DB_PORT", "3306"))
SCHEMA = Path(__file__).parent / "sql" / "opencart30.sql"
PLACED_AT = "2026-12-03 18:20:00"


@dataclass(frozen=True)
class OptionSpec:
    product_option_id: int
    product_option_value_id: int
    name: str
    value: str
    type: str = "select"


@dataclass(frozen=True)
class LineSpec:
    product_id: int
    name: str
    model: str
    quantity: int
    price: str
    total: str
    tax: str = "0.0000"
    options: list[OptionSpec] = field(default_factory=list)


TSHIRT = LineSpec(
    product_id=50,
    name="Футболка з логотипом",
    model="TS-01",
    quantity=2,
    price="15.0000",
    total="30.0000",
    tax="3.0000",
    options=[
        OptionSpec(227, 17, "Колір", "Чорний"),
        OptionSpec(228, 21, "Розмір", "Середній (M)"),
    ],
)
CASE = LineSpec(51, "Чохол для смартфона", "CASE-01", 1, "9.9900", "9.9900")


async def _connect(database: str | None, **options: Any) -> Any:
    return await aiomysql.connect(
        host=DB_HOST,
        port=DB_PORT,
        user="root",
        password="",
        db=database,
        charset="utf8mb4",
        autocommit=True,
        **options,
    )


async def load_sql(database: str, text: str) -> None:
    """Run a file of statements (a schema, a mysqldump) in `database`."""
    connection = await _connect(database, client_flag=CLIENT.MULTI_STATEMENTS)
    try:
        # A dump's own notes (zero dates, engine hints) are not what we test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            async with connection.cursor() as cursor:
                await cursor.execute(text)
                while await cursor.nextset():
                    pass
    finally:
        connection.close()


@dataclass
class OpenCartShop:
    """One scratch shop database, with a writer connection for the builders."""

    url: DatabaseUrl
    prefix: str
    writer: Any

    def site(
        self, name: str = "site_a", sync_from: int | str = "all", **settings: Any
    ) -> SiteSettings:
        """The site's settings; `settings` sets any other key (store_id, queries)."""
        return SiteSettings(
            name=name,
            database=f"mysql://root@{DB_HOST}:{DB_PORT}/{self.url.database}",
            table_prefix=self.prefix,
            source_id=1,
            responsible_id=1,
            sync_from=sync_from,
            **settings,
        )

    async def execute(self, sql: str, *params: Any) -> int:
        sql = sql.replace("`oc_", f"`{self.prefix}")
        async with self.writer.cursor() as cursor:
            await cursor.execute(sql, params or None)
            return int(cursor.lastrowid or 0)

    async def insert(self, table: str, **values: Any) -> int:
        columns = ", ".join(f"`{column}`" for column in values)
        marks = ", ".join(["%s"] * len(values))
        sql = f"INSERT INTO `oc_{table}` ({columns}) VALUES ({marks})"
        return await self.execute(sql, *values.values())

    async def seed_catalogue(self) -> None:
        """Two languages, statuses, EUR and UAH, settings, three products."""
        for language_id, name, code in (
            (1, "English", "en-gb"),
            (2, "Українська", "uk-ua"),
        ):
            await self.insert("language", language_id=language_id, name=name, code=code)
        statuses = {
            1: ("Pending", "Очікує обробки"),
            2: ("Processing", "В обробці"),
            3: ("Shipped", "Відправлено"),
            7: ("Canceled", "Скасовано"),
        }
        for status_id, names in statuses.items():
            for language_id, name in enumerate(names, start=1):
                await self.insert(
                    "order_status",
                    order_status_id=status_id,
                    language_id=language_id,
                    name=name,
                )
        for currency_id, title, code, symbol, places, rate in (
            (3, "Euro", "EUR", "€", "2", 1.0),
            (4, "Гривня", "UAH", " грн", "0", 45.37),
        ):
            await self.insert(
                "currency",
                currency_id=currency_id,
                title=title,
                code=code,
                symbol_right=symbol,
                decimal_place=places,
                value=rate,
            )
        settings = [
            (0, "config_tax", "1", 0),
            (0, "config_timezone", "Europe/Kyiv", 0),
            (0, "config_language", "uk-ua", 0),
            (0, "config_currency", "EUR", 0),
            (0, "config_name", "Техно &amp; Світ", 0),
            (0, "config_processing_status", '["2","1"]', 1),
            (0, "config_email", "shop@example.com", 0),
            (1, "config_tax", "0", 0),
            (1, "config_name", "Outlet", 0),
        ]
        for store_id, key, value, serialized in settings:
            await self.insert(
                "setting",
                store_id=store_id,
                key=key,
                value=value,
                serialized=serialized,
            )
        await self._seed_products()

    async def _seed_products(self) -> None:
        products = [
            (50, "TS-01", "", "Футболка з логотипом", "Logo T-shirt"),
            (51, "CASE-01", "CASE-SKU-1", "Чохол для смартфона", "Smartphone case"),
            (42, "AC-30", "", "Монітор Apple Cinema 30&quot;", "Apple Cinema 30&quot;"),
        ]
        for product_id, model, sku, uk_name, en_name in products:
            await self.insert(
                "product", product_id=product_id, model=model, sku=sku, ean="4820001"
            )
            for language_id, name in ((1, en_name), (2, uk_name)):
                await self.insert(
                    "product_description",
                    product_id=product_id,
                    language_id=language_id,
                    name=name,
                )
        # T-shirt: option 13 Колір (value 49 Чорний), option 14 Розмір (53 M).
        await self.insert(
            "product_option", product_option_id=227, product_id=50, option_id=13
        )
        await self.insert(
            "product_option", product_option_id=228, product_id=50, option_id=14
        )
        for pov_id, po_id, option_id, value_id in (
            (17, 227, 13, 49),
            (21, 228, 14, 53),
        ):
            await self.insert(
                "product_option_value",
                product_option_value_id=pov_id,
                product_option_id=po_id,
                product_id=50,
                option_id=option_id,
                option_value_id=value_id,
            )
        for option_id, en, uk in ((13, "Color", "Колір"), (14, "Size", "Розмір")):
            for language_id, name in ((1, en), (2, uk)):
                await self.insert(
                    "option_description",
                    option_id=option_id,
                    language_id=language_id,
                    name=name,
                )
        for value_id, option_id, en, uk in (
            (49, 13, "Black", "Чорний"),
            (53, 14, "Medium", "Середній (M)"),
        ):
            for language_id, name in ((1, en), (2, uk)):
                await self.insert(
                    "option_value_description",
                    option_value_id=value_id,
                    option_id=option_id,
                    language_id=language_id,
                    name=name,
                )
        for language_id, name, value in (
            (1, "Nova Poshta branch", "Branch No. 1"),
            (2, "Відділення Нової Пошти", "Відділення №1"),
        ):
            await self.insert(
                "custom_field_description",
                custom_field_id=2,
                language_id=language_id,
                name=name,
            )
            await self.insert(
                "custom_field_value_description",
                custom_field_value_id=1,
                custom_field_id=2,
                language_id=language_id,
                name=value,
            )

    async def add_order(
        self,
        order_id: int,
        *,
        status: int = 1,
        lines: list[LineSpec] | None = None,
        placed_at: str = PLACED_AT,
        modified_at: str | None = None,
        **columns: Any,
    ) -> None:
        """An order as the 3.0 checkout writes it, with one history row if confirmed."""
        lines = [TSHIRT, CASE] if lines is None else lines
        # The rows add up as OpenCart writes them, unless a test says otherwise.
        sub_total = sum((Decimal(line.total) for line in lines), Decimal(0))
        tax = sum((Decimal(line.tax) * line.quantity for line in lines), Decimal(0))
        total = columns.pop("total", str(sub_total + tax))
        await self.insert(
            "order",
            order_id=order_id,
            order_status_id=status,
            total=total,
            date_added=placed_at,
            date_modified=modified_at or placed_at,
            **columns,
        )
        await self.add_lines(order_id, lines)
        totals = [
            ("sub_total", "Сума", str(sub_total), 1),
            ("tax", "ПДВ 20%", str(tax), 5),
        ]
        totals.append(("total", "Всього до сплати", total, 9))
        for code, title, value, sort_order in totals:
            await self.insert(
                "order_total",
                order_id=order_id,
                code=code,
                title=title,
                value=value,
                sort_order=sort_order,
            )
        if status > 0:
            await self.add_history(order_id, status, at=placed_at, move_modified=False)

    async def add_lines(self, order_id: int, lines: list[LineSpec]) -> None:
        for line in lines:
            order_product_id = await self.insert(
                "order_product",
                order_id=order_id,
                product_id=line.product_id,
                name=line.name,
                model=line.model,
                quantity=line.quantity,
                price=line.price,
                total=line.total,
                tax=line.tax,
            )
            for option in line.options:
                await self.insert(
                    "order_option",
                    order_id=order_id,
                    order_product_id=order_product_id,
                    product_option_id=option.product_option_id,
                    product_option_value_id=option.product_option_value_id,
                    name=option.name,
                    value=option.value,
                    type=option.type,
                )

    async def delete_lines(self, order_id: int) -> None:
        await self.execute(
            "DELETE FROM `oc_order_product` WHERE order_id = %s", order_id
        )
        await self.execute(
            "DELETE FROM `oc_order_option` WHERE order_id = %s", order_id
        )

    async def add_history(
        self,
        order_id: int,
        status: int,
        *,
        at: str,
        comment: str = "",
        move_modified: bool = True,
    ) -> None:
        """A status change; OpenCart 4.1 leaves date_modified (`move_modified`)."""
        await self.insert(
            "order_history",
            order_id=order_id,
            order_status_id=status,
            comment=comment,
            date_added=at,
        )
        await self.update_order(order_id, order_status_id=status)
        if move_modified:
            await self.update_order(order_id, date_modified=at)

    async def update_order(self, order_id: int, **columns: Any) -> None:
        assignments = ", ".join(f"`{column}` = %s" for column in columns)
        sql = f"UPDATE `oc_order` SET {assignments} WHERE order_id = %s"
        await self.execute(sql, *columns.values(), order_id)


@pytest.fixture
async def make_shop() -> AsyncIterator[Callable[..., Awaitable[OpenCartShop]]]:
    """Makes scratch shop databases; drops every one at the end of the test."""
    made: list[OpenCartShop] = []
    admin = await _connect(None)

    async def make(prefix: str = "oc_", dump: Path | None = None) -> OpenCartShop:
        name = f"ocsync_test_{secrets.token_hex(6)}"
        async with admin.cursor() as cursor:
            await cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        url = DatabaseUrl(
            user="root", password="", host=DB_HOST, port=DB_PORT, database=name
        )
        shop = OpenCartShop(url=url, prefix=prefix, writer=await _connect(name))
        made.append(shop)

        if dump is not None:
            await load_sql(name, dump.read_text(encoding="utf-8"))
        else:
            schema = SCHEMA.read_text(encoding="utf-8").replace("`oc_", f"`{prefix}")
            await load_sql(name, schema)
            await shop.seed_catalogue()
        return shop

    yield make

    for shop in made:
        shop.writer.close()
        async with admin.cursor() as cursor:
            await cursor.execute(f"DROP DATABASE IF EXISTS `{shop.url.database}`")
    admin.close()


@pytest.fixture
async def shop(make_shop: Callable[..., Awaitable[OpenCartShop]]) -> OpenCartShop:
    return await make_shop()


@pytest.fixture
async def shop_pool(shop: OpenCartShop) -> AsyncIterator[Any]:
    pool = await open_shop_pool(shop.url, "site_a")
    yield pool
    pool.close()
    await pool.wait_closed()


@pytest.fixture
def reader(shop: OpenCartShop, shop_pool: Any) -> ShopReader:
    return ShopReader(shop_pool, shop.site())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await open_event_store("sqlite:///events.db", tmp_path)
    yield store
    await store.close()

"""Every SQL statement capture sends to an OpenCart 3.0 (or ocStore) database.

The reader (`daemon.shop`, with `daemon.shop_pool` and `daemon.shop_rows`) owns
connections and turns rows into snapshots; this module only knows the schema.
OpenCart 4.x moves product codes into `product_code` and JSON into the method
columns: it becomes a sibling module with the same methods and the same result
columns.

Table names come from the shop's prefix, which settings validated as an
identifier; they are still quoted with backticks. Every value is a parameter
(pymysql's `%(name)s`), each member of an `IN` list too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import NamedTuple

# Where a site's own query takes its batch of order ids: `IN %(order_ids)s`
# (pymysql's habit for a list), or `IN (%(order_ids)s)` as many write it.
_ORDER_IDS = re.compile(r"\(\s*%\(order_ids\)s\s*\)|%\(order_ids\)s")


class Query(NamedTuple):
    sql: str
    params: dict[str, object]


def _members(name: str, values: Sequence[object], params: dict[str, object]) -> str:
    """`(%(name_0)s, %(name_1)s, ...)` for an IN list, its values put in `params`."""
    if not values:
        return "(NULL)"  # matches nothing, where `()` would be a syntax error
    marks = []
    for index, value in enumerate(values):
        params[f"{name}_{index}"] = value
        marks.append(f"%({name}_{index})s")
    return f"({', '.join(marks)})"


class OpenCart30:
    """The statements of the OpenCart 3.0 schema for one table prefix."""

    # Product columns that name the article; the lines query returns each one
    # as `code_<name>`, NULL when the product row is gone.
    product_codes = ("model", "sku", "upc", "ean", "jan", "isbn", "mpn")

    # Order columns kept byte for byte: JSON whose values are unescaped only
    # when interpreted (and the method titles, which hold JSON from 4.0.2).
    raw_order_columns = frozenset(
        {
            "custom_field",
            "payment_custom_field",
            "shipping_custom_field",
            "payment_method",
            "shipping_method",
        }
    )

    # Settings a snapshot carries (4.1 names the catalogue language
    # config_language_catalog, and adds config_void_status_id).
    setting_keys = (
        "config_tax",
        "config_timezone",
        "config_language",
        "config_language_catalog",
        "config_currency",
        "config_processing_status",
        "config_complete_status",
        "config_name",
        "config_customer_price",
        "config_void_status_id",
    )

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def _table(self, name: str) -> str:
        return f"`{self._prefix}{name}`"

    def latest_history_id(self) -> Query:
        """The newest `order_history` id (NULL when there is none)."""
        table = self._table("order_history")
        sql = f"SELECT MAX(`order_history_id`) AS history_id FROM {table}"
        return Query(sql, {})

    def changed_orders(
        self,
        *,
        since_modified: str | None,
        after_history_id: int,
        sync_from: int | dt.date | None,
        page_after: tuple[str, int] | None,
        limit: int,
        store_id: int | None = None,
    ) -> Query:
        """Confirmed orders modified since, or with newer history rows, paged.

        Pages are ordered by (date_modified, order_id), so that a page boundary
        inside one second of many orders still moves on. `store_id` keeps one
        store of a multi-store install; None keeps them all.
        """
        params: dict[str, object] = {"after_history": after_history_id, "limit": limit}

        modified = "o.`order_status_id` > 0"
        if since_modified is not None:
            modified += " AND o.`date_modified` >= %(since)s"
            params["since"] = since_modified

        conditions = [f"(({modified}) OR newer.`order_id` IS NOT NULL)"]
        if page_after is not None and not page_after[0]:
            # The page ended among NULL dates (""), which MySQL sorts first.
            conditions.append(
                "(o.`date_modified` IS NOT NULL OR o.`order_id` > %(page_order)s)"
            )
            params["page_order"] = page_after[1]
        elif page_after is not None:
            conditions.append(
                "(o.`date_modified` > %(page_modified)s OR (o.`date_modified` ="
                " %(page_modified)s AND o.`order_id` > %(page_order)s))"
            )
            params["page_modified"], params["page_order"] = page_after
        if isinstance(sync_from, int):
            conditions.append("o.`order_id` >= %(sync_from)s")
            params["sync_from"] = sync_from
        elif isinstance(sync_from, dt.date):
            conditions.append("o.`date_added` >= %(sync_from)s")
            params["sync_from"] = f"{sync_from.isoformat()} 00:00:00"
        if store_id is not None:
            conditions.append("o.`store_id` = %(store_id)s")
            params["store_id"] = store_id

        sql = f"""
            SELECT o.`order_id`, o.`order_status_id`, o.`date_modified`,
                   newer.`history_id`
            FROM {self._table("order")} o
            LEFT JOIN (
                SELECT h.`order_id`, MAX(h.`order_history_id`) AS history_id
                FROM {self._table("order_history")} h
                WHERE h.`order_history_id` > %(after_history)s
                GROUP BY h.`order_id`
            ) newer ON newer.`order_id` = o.`order_id`
            WHERE {" AND ".join(conditions)}
            ORDER BY o.`date_modified`, o.`order_id`
            LIMIT %(limit)s
        """
        return Query(sql, params)

    def orders(self, order_ids: Sequence[int], store_id: int | None = None) -> Query:
        """Every column of the orders (of one store, when `store_id` is given)."""
        params: dict[str, object] = {}
        ids = _members("id", order_ids, params)
        sql = f"SELECT * FROM {self._table('order')} WHERE `order_id` IN {ids}"
        if store_id is not None:
            sql += " AND `store_id` = %(store_id)s"
            params["store_id"] = store_id
        return Query(sql, params)

    def lines(self, order_ids: Sequence[int]) -> Query:
        """`order_product` rows with the product's codes, in the shop's order."""
        params: dict[str, object] = {}
        ids = _members("id", order_ids, params)
        codes = ", ".join(f"p.`{code}` AS code_{code}" for code in self.product_codes)
        sql = f"""
            SELECT op.`order_id`, op.`order_product_id`, op.`product_id`, op.`name`,
                   op.`model`, op.`quantity`, op.`price`, op.`total`, op.`tax`,
                   p.`product_id` AS catalogue_product_id, {codes}
            FROM {self._table("order_product")} op
            LEFT JOIN {self._table("product")} p ON p.`product_id` = op.`product_id`
            WHERE op.`order_id` IN {ids}
            ORDER BY op.`order_id`, op.`order_product_id`
        """
        return Query(sql, params)

    def options(self, order_ids: Sequence[int]) -> Query:
        """`order_option` rows with their catalogue option and value ids."""
        params: dict[str, object] = {}
        ids = _members("id", order_ids, params)
        sql = f"""
            SELECT oo.`order_id`, oo.`order_option_id`, oo.`order_product_id`,
                   oo.`product_option_id`, oo.`product_option_value_id`,
                   oo.`name`, oo.`value`, oo.`type`,
                   po.`option_id`, pov.`option_value_id`
            FROM {self._table("order_option")} oo
            LEFT JOIN {self._table("product_option")} po
                ON po.`product_option_id` = oo.`product_option_id`
            LEFT JOIN {self._table("product_option_value")} pov
                ON pov.`product_option_value_id` = oo.`product_option_value_id`
            WHERE oo.`order_id` IN {ids}
            ORDER BY oo.`order_id`, oo.`order_option_id`
        """
        return Query(sql, params)

    def totals(self, order_ids: Sequence[int]) -> Query:
        """`order_total` rows in display order."""
        params: dict[str, object] = {}
        ids = _members("id", order_ids, params)
        sql = f"""
            SELECT `order_id`, `code`, `title`, `value`, `sort_order`
            FROM {self._table("order_total")}
            WHERE `order_id` IN {ids}
            ORDER BY `order_id`, `sort_order`, `order_total_id`
        """
        return Query(sql, params)

    def history(self, order_ids: Sequence[int]) -> Query:
        """`order_history` rows, oldest first."""
        params: dict[str, object] = {}
        ids = _members("id", order_ids, params)
        sql = f"""
            SELECT `order_id`, `order_history_id`, `order_status_id`, `notify`,
                   `comment`, `date_added`
            FROM {self._table("order_history")}
            WHERE `order_id` IN {ids}
            ORDER BY `order_id`, `order_history_id`
        """
        return Query(sql, params)

    def currencies(self, currency_ids: Sequence[int]) -> Query:
        """The `currency` rows the orders name."""
        params: dict[str, object] = {}
        ids = _members("id", currency_ids, params)
        sql = f"""
            SELECT `currency_id`, `code`, `symbol_left`, `symbol_right`,
                   `decimal_place`, `value`
            FROM {self._table("currency")}
            WHERE `currency_id` IN {ids}
        """
        return Query(sql, params)

    def currency_by_code(self, code: str) -> Query:
        """The `currency` row of one code (the base currency of quick orders)."""
        sql = f"""
            SELECT `currency_id`, `code`, `symbol_left`, `symbol_right`,
                   `decimal_place`, `value`
            FROM {self._table("currency")}
            WHERE `code` = %(code)s
            ORDER BY `currency_id`
            LIMIT 1
        """
        return Query(sql, {"code": code})

    def uploads(self, codes: Sequence[str]) -> Query:
        """`upload` rows (the file name a buyer uploaded) of the codes given."""
        params: dict[str, object] = {}
        members = _members("code", codes, params)
        sql = f"""
            SELECT `code`, `name` FROM {self._table("upload")}
            WHERE `code` IN {members}
            ORDER BY `upload_id`
        """
        return Query(sql, params)

    def country_codes(self, country_ids: Sequence[int]) -> Query:
        """ISO alpha-2 codes of the countries given."""
        params: dict[str, object] = {}
        ids = _members("id", country_ids, params)
        sql = f"""
            SELECT `country_id`, `iso_code_2` FROM {self._table("country")}
            WHERE `country_id` IN {ids}
        """
        return Query(sql, params)

    def products(self, product_ids: Sequence[int]) -> Query:
        """Catalogue rows: today's price and every code (`code_<name>`)."""
        params: dict[str, object] = {}
        ids = _members("id", product_ids, params)
        codes = ", ".join(f"`{code}` AS code_{code}" for code in self.product_codes)
        sql = f"""
            SELECT `product_id`, `price`, {codes}
            FROM {self._table("product")}
            WHERE `product_id` IN {ids}
        """
        return Query(sql, params)

    def settings(self, store_ids: Sequence[int]) -> Query:
        """The `setting_keys` of the stores given, store 0 first."""
        params: dict[str, object] = {}
        stores = _members("store", store_ids, params)
        names = _members("key", self.setting_keys, params)
        sql = f"""
            SELECT `store_id`, `key`, `value`, `serialized`
            FROM {self._table("setting")}
            WHERE `store_id` IN {stores} AND `key` IN {names}
            ORDER BY `store_id`, `setting_id`
        """
        return Query(sql, params)

    def languages(self) -> Query:
        """Every language of the shop."""
        sql = f"""
            SELECT `language_id`, `code` FROM {self._table("language")}
            ORDER BY `language_id`
        """
        return Query(sql, {})

    def catalogue_names(
        self,
        product_ids: Sequence[int],
        option_ids: Sequence[int],
        option_value_ids: Sequence[int],
    ) -> Query:
        """Names in every language, one row per (kind, id, language_id).

        Products and options only for the ids given; custom fields, their values
        and order statuses whole (small tables a snapshot needs in full).
        """
        # Tables of one shop may carry different collations after upgrades,
        # which UNION refuses to mix: bring every name to one.
        name = "CONVERT(`name` USING utf8mb4) COLLATE utf8mb4_bin AS name"
        parts = [
            ("product", "product_id", "product_description", product_ids),
            ("option", "option_id", "option_description", option_ids),
            (
                "option_value",
                "option_value_id",
                "option_value_description",
                option_value_ids,
            ),
            ("custom_field", "custom_field_id", "custom_field_description", None),
            (
                "custom_field_value",
                "custom_field_value_id",
                "custom_field_value_description",
                None,
            ),
            ("order_status", "order_status_id", "order_status", None),
        ]
        selects: list[str] = []
        params: dict[str, object] = {}
        for kind, key, table, ids in parts:
            select = (
                f"SELECT '{kind}' AS kind, `{key}` AS id, `language_id`, {name}"
                f" FROM {self._table(table)}"
            )
            if ids is not None:
                if not ids:
                    continue
                select += f" WHERE `{key}` IN {_members(kind, ids, params)}"
            selects.append(select)

        return Query("\nUNION ALL\n".join(selects), params)

    def catalogue_products(self, language_code: str) -> Query:
        """Every product with its codes and its name in one language.

        For the catalogue report, not for capture: it reads the whole table.
        """
        codes = ", ".join(f"p.`{code}` AS code_{code}" for code in self.product_codes)
        sql = (
            f"SELECT p.`product_id`, p.`status`, {codes}, d.`name`"
            f" FROM {self._table('product')} p"
            f" LEFT JOIN {self._table('language')} l ON l.`code` = %(language)s"
            f" LEFT JOIN {self._table('product_description')} d"
            "   ON d.`product_id` = p.`product_id`"
            "  AND d.`language_id` = l.`language_id`"
            " ORDER BY p.`product_id`"
        )
        return Query(sql, {"language": language_code})


def site_query(sql: str, order_ids: Sequence[int]) -> Query:
    """A site's own query (`sites[].queries`) with its batch of order ids bound.

    PyMySQL 1.2 binds no list to one parameter, so `%(order_ids)s` becomes the
    member list `(%(order_ids_0)s, ...)`, written bare or in parentheses.
    Everything else in the text is the site's: a literal `%` is written `%%`.
    """
    params: dict[str, object] = {}
    members = _members("order_ids", order_ids, params)
    return Query(_ORDER_IDS.sub(lambda _: members, sql), params)


def quick_order_query(sql: str, after_id: int) -> Query:
    """A quick-order module's query (`quick_order.query`) past an id."""
    return Query(sql, {"after_id": after_id})

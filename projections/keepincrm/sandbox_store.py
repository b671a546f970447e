"""The sandbox's memory: one SQLite file a person can open and read afterwards.

Tables: `deals` (one row per deal, with the create call's query options and any
body keys the CRM would drop), `deal_lines` (their lines, each with its own id),
`deal_custom_fields`, `deal_comments`, `clients` and `materials` (the catalogue,
seeded from a file or grown by lines with unknown articles; `origin` says which).

A file made before a column was added to the schema gets it on open (`ALTER
TABLE ... ADD COLUMN`, empty in the deals already there): see `_ADDED_COLUMNS`.
New tables come from `CREATE TABLE IF NOT EXISTS` alone.

Amounts (prices, line amounts, totals, discounts) are TEXT holding the
`Decimal`'s own string, so `3629.60` reads as `3629.60` in the file and comes
back as `Decimal("3629.60")`; a file made when they were REAL is refused.

The store is synchronous on purpose: the sandbox serves one developer or one
test on loopback, each call is a millisecond of local SQLite, and running the
handlers one at a time on the event loop keeps every request atomic without
locks, as one database would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from projections.keepincrm.sandbox_rules import (
    ClientDraft,
    DealChanges,
    DealDraft,
    LineDraft,
    decode_json,
    encode_json,
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS materials (
    id INTEGER PRIMARY KEY,
    sku TEXT UNIQUE,
    title TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT 'шт',
    price TEXT NOT NULL DEFAULT '0',  -- a decimal, as text
    currency TEXT NOT NULL DEFAULT 'UAH',
    origin TEXT NOT NULL  -- 'catalogue' or 'deal line'
);
CREATE TABLE IF NOT EXISTS clients (
    id INTEGER PRIMARY KEY,
    person TEXT,
    company TEXT,
    email TEXT,
    phones TEXT NOT NULL,  -- JSON list
    lead INTEGER NOT NULL,
    source_id INTEGER,
    status_id INTEGER,
    custom_fields TEXT NOT NULL,  -- JSON list of {name, value}
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deals (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    comment TEXT,
    total TEXT,  -- a decimal, as text
    currency TEXT,
    discount TEXT,  -- a decimal, as text
    discount_kind TEXT,
    source_id INTEGER,
    main_responsible_id INTEGER,
    funnel_id INTEGER,
    stage_id INTEGER,
    client_id INTEGER REFERENCES clients (id),
    ordered_at TEXT,
    result TEXT CHECK (result IN ('successful', 'failed')),  -- NULL: open
    create_query TEXT NOT NULL,  -- JSON: the query options of the create call
    unpermitted TEXT NOT NULL,  -- JSON: body keys the CRM has no field for
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deal_lines (
    -- Never reused, as a Rails database's ids are not: ocsync tells its own
    -- lines by the ids it recorded.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deal_id INTEGER NOT NULL REFERENCES deals (id),
    title TEXT,
    amount TEXT NOT NULL,  -- a decimal, as text
    sku TEXT,
    product_title TEXT,
    price TEXT NOT NULL,  -- a decimal, as text
    currency TEXT,
    material_id INTEGER REFERENCES materials (id),
    extra TEXT NOT NULL  -- JSON: line keys with no known CRM field
);
CREATE TABLE IF NOT EXISTS deal_custom_fields (
    deal_id INTEGER NOT NULL REFERENCES deals (id),
    name TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (deal_id, name)
);
CREATE TABLE IF NOT EXISTS deal_comments (
    id INTEGER PRIMARY KEY,
    deal_id INTEGER NOT NULL REFERENCES deals (id),
    note TEXT NOT NULL,  -- as sent, HTML and all
    created_at TEXT NOT NULL
);
"""

# Columns added to a table after files were made without them, each with its
# declaration as in `_SCHEMA`; an older file gets them on open.
_ADDED_COLUMNS: Final = (
    ("deals", "result", "TEXT CHECK (result IN ('successful', 'failed'))"),
)

# Deal columns a create or a PATCH may set directly.
_DEAL_COLUMNS: Final = (
    "title",
    "comment",
    "total",
    "currency",
    "discount",
    "discount_kind",
    "source_id",
    "main_responsible_id",
    "funnel_id",
    "stage_id",
    "ordered_at",
    "result",
)

# Columns holding amounts: TEXT, so SQLite keeps each decimal digit for digit.
_MONEY_COLUMNS: Final = (
    ("materials", "price"),
    ("deals", "total"),
    ("deals", "discount"),
    ("deal_lines", "amount"),
    ("deal_lines", "price"),
)


class SandboxStore:
    """Deals, lines, clients and materials the sandbox received, in SQLite."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        try:
            self._check_money_columns(path)
        except ValueError:
            self._db.close()
            raise
        self._add_missing_columns()

    def close(self) -> None:
        """Close the file; the store cannot be used afterwards."""
        self._db.close()

    def _check_money_columns(self, path: Path) -> None:
        # CREATE TABLE IF NOT EXISTS leaves an older file's REAL columns as they
        # were, and SQLite would turn "3629.60" back into the float 3629.6.
        for table, column in _MONEY_COLUMNS:
            declared = {
                row["name"]: row["type"]
                for row in self._db.execute(f"PRAGMA table_info({table})")
            }
            if declared.get(column, "").upper() != "TEXT":
                raise ValueError(
                    f"sandbox store {path}: {table}.{column} is"
                    f" {declared.get(column)!s}, not TEXT; the file was made by an"
                    " older sandbox that kept amounts as floats; move it away"
                    " or delete it"
                )

    def _add_missing_columns(self) -> None:
        # CREATE TABLE IF NOT EXISTS leaves an older file's tables as they were.
        for table, column, declaration in _ADDED_COLUMNS:
            declared = {
                row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")
            }
            if column not in declared:
                self._db.execute(
                    f"ALTER TABLE {table} ADD COLUMN {column} {declaration}"
                )

    # Catalogue

    def seed_materials(self, items: Iterable[tuple[str, str, Decimal]]) -> None:
        """Add or refresh catalogue items `(sku, title, price)`, keyed by sku."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO materials (sku, title, price, origin)"
                " VALUES (?, ?, ?, 'catalogue')"
                " ON CONFLICT (sku) DO UPDATE SET title = excluded.title,"
                " price = excluded.price",
                [(sku, title, _text(price)) for sku, title, price in items],
            )

    def material_by_sku(self, sku: str) -> sqlite3.Row | None:
        """The catalogue item with this article, if any."""
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM materials WHERE sku = ?", (sku,)
        ).fetchone()
        return row

    def materials(
        self, sku: str | None, offset: int, limit: int
    ) -> tuple[list[sqlite3.Row], int]:
        """One page of catalogue items, and how many there are in all."""
        where, args = ("WHERE sku = ?", [sku]) if sku is not None else ("", [])
        return self._page(f"FROM materials {where}", args, offset, limit)

    # Clients

    def client(self, client_id: int) -> sqlite3.Row | None:
        """One client by id."""
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM clients WHERE id = ?", (client_id,)
        ).fetchone()
        return row

    def clients_matching(
        self, term: str, offset: int, limit: int
    ) -> tuple[list[sqlite3.Row], int]:
        """Clients whose phone digits, name or email contain `term`."""
        digits = "".join(ch for ch in term if ch.isdigit())
        # Phones are compared by digits, so "+38 067" and "38067" both match.
        phone_match = (
            "EXISTS (SELECT 1 FROM json_each(clients.phones) WHERE"
            " replace(replace(replace(replace(json_each.value, '+', ''), ' ', ''),"
            " '-', ''), '(', '') LIKE '%' || ? || '%')"
        )
        clause = (
            f"FROM clients WHERE ({phone_match} AND ? != '')"
            " OR person LIKE '%' || ? || '%' OR email LIKE '%' || ? || '%'"
        )
        return self._page(clause, [digits, digits, term, term], offset, limit)

    # Deals

    def add_deal(
        self, draft: DealDraft, create_query: dict[str, str], *, create_materials: bool
    ) -> sqlite3.Row:
        """Store a checked deal with its client, lines and custom fields.

        With `create_materials`, a line whose article is not in the catalogue
        adds it there; otherwise the line stays unlinked.
        """
        now = _now()
        with self._transaction():
            client_id = draft.client_id
            if draft.client is not None:
                client_id = self._add_client(draft.client, now)

            columns = [c for c in _DEAL_COLUMNS if c in draft.fields]
            names = ", ".join([*columns, "client_id", "create_query", "unpermitted"])
            marks = ", ".join("?" * (len(columns) + 3))
            cursor = self._db.execute(
                f"INSERT INTO deals ({names}, created_at, updated_at)"
                f" VALUES ({marks}, ?, ?)",
                [
                    *(_column(draft.fields[c]) for c in columns),
                    client_id,
                    _json(create_query),
                    _json(draft.unpermitted),
                    now,
                    now,
                ],
            )
            deal_id = _row_id(cursor)
            self._add_lines(deal_id, draft.lines, create_materials=create_materials)
            self._set_custom_fields(deal_id, draft.custom_fields)
        return self._deal_row(deal_id)

    def change_deal(
        self, deal_id: int, changes: DealChanges, *, create_materials: bool
    ) -> None:
        """Apply a checked PATCH; a line id not on this deal raises LookupError."""
        with self._transaction():
            line_ids = {row["id"] for row in self.deal_lines(deal_id)}
            touched = [e.line_id for e in changes.line_edits] + changes.removed_line_ids
            if unknown := [i for i in touched if i not in line_ids]:
                raise LookupError(f"deal {deal_id} has no line {unknown[0]}")

            fields = {c: v for c, v in changes.fields.items() if c in _DEAL_COLUMNS}
            if changes.client is not None:
                # Re-sending client_attributes makes a new client, as reported.
                fields["client_id"] = self._add_client(changes.client, _now())
            elif changes.client_id is not None:
                fields["client_id"] = changes.client_id
            fields["updated_at"] = _now()
            assignments = ", ".join(f"{column} = ?" for column in fields)
            self._db.execute(
                f"UPDATE deals SET {assignments} WHERE id = ?",
                [*map(_column, fields.values()), deal_id],
            )

            for edit in changes.line_edits:
                self._edit_line(edit.line_id, edit.values, edit.extra)
            self._db.executemany(
                "DELETE FROM deal_lines WHERE id = ?",
                [(i,) for i in changes.removed_line_ids],
            )
            self._add_lines(
                deal_id, changes.new_lines, create_materials=create_materials
            )
            if changes.custom_fields is not None:
                self._set_custom_fields(deal_id, changes.custom_fields)

    def deal(self, deal_id: int) -> sqlite3.Row | None:
        """One deal row by id."""
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM deals WHERE id = ?", (deal_id,)
        ).fetchone()
        return row

    def deal_lines(self, deal_id: int) -> list[sqlite3.Row]:
        """A deal's lines in the order they were added."""
        return self._db.execute(
            "SELECT * FROM deal_lines WHERE deal_id = ? ORDER BY id", (deal_id,)
        ).fetchall()

    def deal_custom_fields(self, deal_id: int) -> list[sqlite3.Row]:
        """A deal's custom fields as `name, value` rows."""
        return self._db.execute(
            "SELECT name, value FROM deal_custom_fields"
            " WHERE deal_id = ? ORDER BY rowid",
            (deal_id,),
        ).fetchall()

    def add_deal_comment(self, deal_id: int, note: str) -> sqlite3.Row:
        """Add a comment to a deal that exists; the deal itself stays as it was."""
        cursor = self._db.execute(
            "INSERT INTO deal_comments (deal_id, note, created_at) VALUES (?, ?, ?)",
            (deal_id, note, _now()),
        )
        row: sqlite3.Row = self._db.execute(
            "SELECT * FROM deal_comments WHERE id = ?", (_row_id(cursor),)
        ).fetchone()
        return row

    def deal_comments(self, deal_id: int) -> list[sqlite3.Row]:
        """A deal's comments, oldest first."""
        return self._db.execute(
            "SELECT * FROM deal_comments WHERE deal_id = ? ORDER BY id", (deal_id,)
        ).fetchall()

    def deals(
        self,
        title: str | None,
        custom_fields: Sequence[tuple[str, str]],
        offset: int,
        limit: int,
    ) -> tuple[list[sqlite3.Row], int]:
        """One page of deals, oldest first, filtered by exact title and fields."""
        conditions, args = ["1 = 1"], []
        if title is not None:
            conditions.append("title = ?")
            args.append(title)
        for name, value in custom_fields:
            conditions.append(
                "EXISTS (SELECT 1 FROM deal_custom_fields f"
                " WHERE f.deal_id = deals.id AND f.name = ? AND f.value = ?)"
            )
            args += [name, value]
        return self._page(
            f"FROM deals WHERE {' AND '.join(conditions)}", args, offset, limit
        )

    def _add_client(self, client: ClientDraft, now: str) -> int:
        custom_fields = [{"name": n, "value": v} for n, v in client.custom_fields]
        cursor = self._db.execute(
            "INSERT INTO clients (person, company, email, phones, lead, source_id,"
            " status_id, custom_fields, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                client.person,
                client.company,
                client.email,
                _json(client.phones),
                client.lead,
                client.source_id,
                client.status_id,
                _json(custom_fields),
                now,
            ),
        )
        return _row_id(cursor)

    def _add_lines(
        self, deal_id: int, lines: Iterable[LineDraft], *, create_materials: bool
    ) -> None:
        for line in lines:
            if create_materials and line.sku and self.material_by_sku(line.sku) is None:
                self._add_material_for_line(line)
            material = self.material_by_sku(line.sku) if line.sku else None
            self._db.execute(
                "INSERT INTO deal_lines (deal_id, title, amount, sku, product_title,"
                " price, currency, material_id, extra)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    deal_id,
                    line.title,
                    _text(line.amount),
                    line.sku,
                    line.product_title,
                    _text(line.price if line.price is not None else Decimal(0)),
                    line.currency,
                    material["id"] if material is not None else None,
                    _json(line.extra),
                ),
            )

    def _add_material_for_line(self, line: LineDraft) -> None:
        # As the real CRM may: an unknown article becomes a new catalogue item.
        self._db.execute(
            "INSERT INTO materials (sku, title, price, currency, origin)"
            " VALUES (?, ?, ?, ?, 'deal line') ON CONFLICT (sku) DO NOTHING",
            (
                line.sku,
                line.product_title or line.title or line.sku,
                _text(line.price if line.price is not None else Decimal(0)),
                line.currency or "UAH",
            ),
        )

    def _edit_line(
        self, line_id: int, values: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        row = self._db.execute(
            "SELECT extra FROM deal_lines WHERE id = ?", (line_id,)
        ).fetchone()
        columns = {**values, "extra": _json({**decode_json(row["extra"]), **extra})}
        if "sku" in values:
            material = self.material_by_sku(values["sku"]) if values["sku"] else None
            columns["material_id"] = material["id"] if material is not None else None
        assignments = ", ".join(f"{column} = ?" for column in columns)
        self._db.execute(
            f"UPDATE deal_lines SET {assignments} WHERE id = ?",
            [*map(_column, columns.values()), line_id],
        )

    def _set_custom_fields(
        self, deal_id: int, pairs: Iterable[tuple[str, str | None]]
    ) -> None:
        # Sandbox choice: fields are merged by name, a later value replacing one.
        self._db.executemany(
            "INSERT INTO deal_custom_fields (deal_id, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (deal_id, name) DO UPDATE SET value = excluded.value",
            [(deal_id, name, value) for name, value in pairs],
        )

    def _deal_row(self, deal_id: int) -> sqlite3.Row:
        row = self.deal(deal_id)
        assert row is not None, "a deal just written is readable"
        return row

    def _page(
        self, clause: str, args: Sequence[Any], offset: int, limit: int
    ) -> tuple[list[sqlite3.Row], int]:
        total: int = self._db.execute(f"SELECT count(*) {clause}", args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT * {clause} ORDER BY id LIMIT ? OFFSET ?", [*args, limit, offset]
        ).fetchall()
        return rows, total

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _row_id(cursor: sqlite3.Cursor) -> int:
    assert cursor.lastrowid is not None, "an INSERT sets lastrowid"
    return cursor.lastrowid


def _text(amount: Decimal) -> str:
    """How an amount is kept: the decimal's own string, `3629.60` as `3629.60`."""
    return str(amount)


def _column(value: Any) -> Any:
    """A value as bound to a column: amounts as their text, the rest as they are."""
    return _text(value) if isinstance(value, Decimal) else value


def _json(value: Any) -> str:
    # Cyrillic stays readable in the file; amounts stay exact numbers.
    return encode_json(value).decode("utf-8")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

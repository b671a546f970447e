"""Reads ORDERS.md beside the fixture dumps: orders as the storefront showed them.

The expected values of the end-to-end test come from this file and the dumps
at test time, never copied into the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "opencart"


@dataclass
class ShownLine:
    product_id: int
    model: str
    quantity: int
    name: str
    options: str
    unit_price: str
    line_total: str


@dataclass
class ShownOrder:
    site: str
    order_id: int
    status_id: int
    language: str
    currency: str
    buyer: str
    telephone: str
    total: str
    lines: list[ShownLine] = field(default_factory=list)
    # (title, amount) of each total row, in the order the page showed them.
    totals: list[tuple[str, str]] = field(default_factory=list)

    @property
    def confirmed(self) -> bool:
        return self.status_id > 0


def shown_orders(path: Path = FIXTURES / "ORDERS.md") -> list[ShownOrder]:
    """Every order of the headers table, with its lines."""
    sections = _tables(path.read_text(encoding="utf-8"))
    orders: dict[tuple[str, int], ShownOrder] = {}
    for row in sections["Order headers"]:
        key = (row["site"], int(row["order_id"]))
        orders[key] = ShownOrder(
            site=row["site"],
            order_id=int(row["order_id"]),
            status_id=int(row["final order_status_id"]),
            language=row["language (id)"].split()[0],
            currency=row["currency"],
            buyer=row["buyer"],
            telephone=row["telephone as typed"],
            total=row["displayed total"],
        )
    for row in sections["Order lines (displayed)"]:
        orders[(row["site"], int(row["order_id"]))].lines.append(
            ShownLine(
                product_id=int(row["product_id"]),
                model=row["model"],
                quantity=int(row["qty"]),
                name=row["name shown"],
                options=row["options shown"],
                unit_price=row["displayed unit price"],
                line_total=row["displayed line total"],
            )
        )
    for row in sections["Order totals (displayed, in display order)"]:
        shown = row["totals as shown (title -> amount)"]
        orders[(row["site"], int(row["order_id"]))].totals = [
            (title.strip(), amount.strip().strip("`"))
            for title, _, amount in (
                part.partition(" -> ") for part in shown.split("; ")
            )
        ]
    return list(orders.values())


def shown_amount(text: str, places: int) -> Decimal:
    """`1 633 грн`, `$198,29`, `9,074 грн` (0 places), `4,990.70 грн` -> Decimal.

    The page formats numbers by its language: uk-ua uses a space and a comma,
    en-gb a comma and a point; the currency's decimal places say which
    separator, if any, is the decimal one.
    """
    digits = re.sub(r"[^0-9,.\-]", "", text)
    negative = digits.startswith("-") or "-" in text
    digits = digits.replace("-", "")
    if places == 0:
        number = digits.replace(",", "").replace(".", "")
    else:
        whole, fraction = digits[: -places - 1], digits[-places:]
        number = re.sub(r"[,.]", "", whole) + "." + fraction
    amount = Decimal(number)
    return -amount if negative else amount


def _tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables under each `###` heading, as dicts by column name."""
    tables: dict[str, list[dict[str, str]]] = {}
    heading = ""
    columns: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("### "):
            heading, columns = line[4:].strip(), None
            continue
        if not line.startswith("|"):
            columns = None
            continue
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        if columns is None:
            columns = cells
            tables.setdefault(heading, [])
        elif not set(line) <= set("|-: "):
            tables[heading].append(dict(zip(columns, cells, strict=False)))
    return tables

"""Names in the managers' language, from the catalogue captured with the order.

Managers work in one language (Ukrainian by default) whatever language the
customer shopped in, so names come from the catalogue rows in that language and
fall back to the text the order itself stored when the catalogue row is gone.
"""

from __future__ import annotations

from events.snapshot import Line, LineOption, Names, OrderSnapshot


class CatalogueNames:
    """Looks up names of one order's catalogue in one language."""

    def __init__(self, snapshot: OrderSnapshot, language_code: str) -> None:
        self._catalogue = snapshot.catalogue
        self.language_id = next(
            (
                language.language_id
                for language in snapshot.languages
                if language.code.lower() == language_code.lower()
            ),
            None,
        )

    def product(self, line: Line) -> str:
        return self._name(self._catalogue.products, line.product_id) or line.name

    def option_name(self, option: LineOption) -> str:
        found = None
        if option.option_id is not None:
            found = self._name(self._catalogue.options, option.option_id)
        return found or option.name

    def option_value(self, option: LineOption) -> str:
        """A chosen value's label; typed values (text, date, ...) as typed."""
        found = None
        if option.option_value_id is not None and option.product_option_value_id:
            found = self._name(self._catalogue.option_values, option.option_value_id)
        return found or option.value

    def _name(self, names: Names, entity_id: int) -> str | None:
        if self.language_id is None:
            return None
        name = names.get(entity_id, {}).get(self.language_id, "").strip()
        return name or None


def variant_pairs(line: Line, names: CatalogueNames) -> list[tuple[str, str]]:
    """The line's options as (name, value) pairs in the shop's order.

    A checkbox with several ticked values has one `order_option` row per value,
    so each becomes a pair of its own.
    """
    return [
        (names.option_name(option), names.option_value(option))
        for option in line.options
    ]


def variant_text(pairs: list[tuple[str, str]]) -> str:
    """`Колір: Червоний; Розмір: M`; empty for a line without options."""
    return "; ".join(f"{name}: {value}" for name, value in pairs)

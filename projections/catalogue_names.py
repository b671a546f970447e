"""Names in the managers' language, from the catalogue captured with the order.

Managers work in one language (Ukrainian by default) whatever language the
customer shopped in, so names come from the catalogue rows in that language and
fall back to the text the order itself stored when the catalogue row is gone.

Shops that began on a `utf8` (3-byte) database often hold text double-encoded
("Олена" as "ÐžÐ»ÐµÐ½Ð°"); `undouble_utf8` undoes that, exactly or not at all.
"""

from __future__ import annotations

import re

from events.snapshot import Line, LineOption, Names, OrderSnapshot


class CatalogueNames:
    """Looks up names of one order's catalogue in one language."""

    def __init__(self, snapshot: OrderSnapshot, language_code: str) -> None:
        self._catalogue = snapshot.catalogue
        self._uploads = snapshot.uploads
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
        """A chosen value's label; typed values (text, date, ...) as typed.

        A file option stores the upload's code, which means nothing to a
        manager: the file name the buyer uploaded stands in for it, and the
        code is kept only when the `upload` row is gone.
        """
        if option.type == "file":
            return self._uploads.get(option.value) or option.value
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


# Cyrillic (and emoji) text that an old `utf8` shop stored double-encoded: its
# UTF-8 bytes read as MySQL's latin1 (cp1252 with 0x81, 0x8D, 0x8F, 0x90 and
# 0x9D kept as C1 controls) and encoded again, "Олена" as "ÐžÐ»ÐµÐ½Ð°".
_CP1252_ONLY = {
    char: byte
    for byte in range(0x80, 0xA0)
    if (char := bytes([byte]).decode("cp1252", errors="ignore"))
}
_CONTINUATION = "".join(
    bytes([byte]).decode("cp1252", errors="ignore") or chr(byte)
    for byte in range(0x80, 0xC0)
)
# A lead byte of two-byte Latin-1 or Cyrillic, or of four-byte (emoji) UTF-8,
# then a continuation byte: what double-encoded text is made of.
_DOUBLE_ENCODED = re.compile(f"[ÂÃÐÑÒÓð][{re.escape(_CONTINUATION)}]")


def undouble_utf8(text: str) -> str | None:
    """The text a double encoding hid, or None when `text` is not one whole.

    The repair is exact, not a guess: every character must be one latin1
    byte and the bytes must be valid UTF-8, which text typed in Latin letters
    with accents ("Café", "Müller") never is. ftfy's `fix_text` would also
    mend other encodings, but it rewrites text that is fine (curly quotes,
    ligatures, NFC) and this is the only mix-up OpenCart shops are known for.
    """
    if text.isascii():
        return None
    raw = bytearray()
    for char in text:
        code = ord(char)
        if code < 0x100:
            raw.append(code)
        elif char in _CP1252_ONLY:
            raw.append(_CP1252_ONLY[char])
        else:
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def looks_double_encoded(text: str) -> bool:
    """True for text with the marks of a double encoding, whole or not."""
    return not text.isascii() and _DOUBLE_ENCODED.search(text) is not None

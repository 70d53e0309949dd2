"""Editing a pycrdt ``Text`` with Python string indices.

pycrdt's ``Text`` counts positions in UTF-8 bytes, not characters: on ``"é😀"`` the index of
``😀`` is 2, and a slice that ends inside a character deletes more than asked (``del t[0:2]``
on ``"aé😀b"`` empties the text). These helpers convert character positions first.
"""

from __future__ import annotations

from pycrdt import Text


def utf8_offset(value: str, index: int) -> int:
    """The position pycrdt expects for the character position ``index`` of ``value``."""
    return len(value[:index].encode("utf-8"))


def insert_text(text: Text, index: int, value: str) -> None:
    """Insert ``value`` before the character at ``index`` (a Python ``str`` index)."""
    text.insert(utf8_offset(str(text), index), value)


def replace_text(text: Text, new: str) -> bool:
    """Make ``text`` read ``new`` with one minimal edit (common prefix and suffix kept).

    Keeping what did not change keeps other people's cursors and concurrent edits around it
    intact, and makes the call idempotent: it returns False and changes nothing when the text
    already reads ``new``.
    """
    old = str(text)
    if old == new:
        return False
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    start = utf8_offset(old, prefix)
    removed = old[prefix : len(old) - suffix]
    added = new[prefix : len(new) - suffix]
    with text.doc.transaction():
        if removed:
            del text[start : start + len(removed.encode("utf-8"))]
        if added:
            text.insert(start, added)
    return True

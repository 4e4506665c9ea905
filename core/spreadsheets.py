"""Cells of CSV files that people open in spreadsheets.

A cell that starts with `=`, `+`, `-` or `@`, or with a tab or a carriage return (which some
spreadsheets skip before reading a formula), would run as a formula: it is written with a leading
apostrophe, which spreadsheets show as text. Reading such a file back takes one apostrophe off.
"""

from __future__ import annotations

import re

_FORMULA = re.compile(r"'*[=+\-@\t\r]")
_FORMULA_ESCAPED = re.compile(r"'+[=+\-@\t\r]")


def cell_escape(value: str) -> str:
    """`value` as a cell no spreadsheet runs; an apostrophe before one that looks escaped, too, so
    that `cell_unescape` gives back exactly `value`."""
    return f"'{value}" if _FORMULA.match(value) else value


def cell_unescape(value: str) -> str:
    return value[1:] if _FORMULA_ESCAPED.match(value) else value

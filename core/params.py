"""Whole numbers from query strings, form fields and CSV cells.

`str.isdigit()` is true for "²", "٣" and other digits that `int()` refuses or reads as a number no
one typed, and a string of 30 digits overflows every integer column; either used to reach `int()` or
the database and answer 500. `int_param` is the one test for "an id or a count a person wrote".
"""

BIGINT_MAX = 2**63 - 1  # PostgreSQL's bigint, the widest integer column (ids are bigint)


def int_param(value: object) -> int | None:
    """`value` as an int when it is a string of ASCII digits no larger than a bigint, else None."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= BIGINT_MAX else None

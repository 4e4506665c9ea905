"""What PostgreSQL can store of a value decoded from JSON, checked in one walk: text and jsonb refuse
NUL characters and lone surrogates (which JSON's \\u escapes can carry), jsonb has no infinite
numbers, and a value nested deeper than JSON_MAX_DEPTH would exhaust the stack of whatever walks it
next (Python's encoder, DRF's fields, the admin's pretty-printing). The API's parser checks every
body with it, and the services every JSON field and message content, whatever door they came by."""

from __future__ import annotations

import math
import re
from typing import Any

from django.core.exceptions import ValidationError

JSON_MAX_DEPTH = 64
NESTED_TOO_DEEP = f"Nested more than {JSON_MAX_DEPTH} levels deep."
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store the text, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "Must not contain NUL characters (\\u0000)."
    return "Must not contain lone surrogates (\\ud800-\\udfff)."


def text_storable(text: str) -> str:
    """The text with what PostgreSQL cannot store replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _path_join(path: str, key: str) -> str:
    # A bad key is named without its bad characters: an error answer must itself be storable text.
    key = _UNSTORABLE.sub("\ufffd", key)
    return f"{path}.{key}" if path else key


def json_problem(value: Any) -> tuple[str, str] | None:
    """A place in the value that cannot be stored, as (path, why); the path reads like
    `body[0].text` ("" for the value itself). None when all of it can be stored. Walked with a
    stack of its own, so no depth exhausts Python's."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                return path, problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "Must be a finite number."
        elif isinstance(item, dict | list):
            if depth >= JSON_MAX_DEPTH:
                return path, NESTED_TOO_DEEP
            if isinstance(item, list):
                children = [(child, f"{path}[{index}]") for index, child in enumerate(item)]
            else:
                children = []
                for key, child in item.items():
                    key_path = _path_join(path, str(key))
                    if isinstance(key, str) and (problem := text_problem(key)):
                        return key_path, f"This key: {problem[0].lower()}{problem[1:]}"
                    children.append((child, key_path))
            stack.extend((child, child_path, depth + 1) for child, child_path in reversed(children))
    return None


def json_too_deep(value: Any) -> bool:
    """Whether the value nests lists and objects more than JSON_MAX_DEPTH levels deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth >= JSON_MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_check(value: Any, *, field: str) -> None:
    """ValidationError keyed by the place (`field` and the path inside it) that cannot be stored."""
    problem = json_problem(value)
    if problem is not None:
        path, message = problem
        place = field if not path else f"{field}{path}" if path.startswith("[") else f"{field}.{path}"
        raise ValidationError({place or "non_field_errors": message})

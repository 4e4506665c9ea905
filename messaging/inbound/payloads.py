"""Reading Meta's webhook bodies, whose shapes are never trusted: a body as storable JSON, and the
readers that take a value of the expected type or an empty one."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text[:20]}")
    return value


def _constant_refuse(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _jsonb_safe(value: Any) -> Any:
    """PostgreSQL's jsonb refuses NUL characters and lone surrogates, which JSON's \\u escapes can
    carry; they become U+FFFD in the payload (the raw body keeps them)."""
    if isinstance(value, str):
        return _UNSAFE_TEXT.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_jsonb_safe(key): _jsonb_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonb_safe(item) for item in value]
    return value


def inbound_payload_parse(body: bytes) -> dict | None:
    """The JSON object a body holds, made storable as jsonb; None when it holds anything else."""
    try:
        payload = json.loads(body, parse_float=_finite_float, parse_constant=_constant_refuse)
        if not isinstance(payload, dict):
            return None
        return _jsonb_safe(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def meta_dicts(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def meta_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def meta_str(value: Any, limit: int | None = None) -> str:
    if isinstance(value, str):
        text = value.strip()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        return ""
    return text[:limit] if limit else text


def meta_name(value: Any, limit: int | None = None) -> str:
    """An identifier or a type name: only a string is one."""
    return meta_str(value, limit) if isinstance(value, str) else ""


def meta_int(value: Any) -> int | None:
    """An integer that fits PostgreSQL's integer column, from an int or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and -(2**31) <= value < 2**31 else None


def meta_time(value: Any) -> datetime | None:
    """Meta's times are seconds since the epoch, as strings (messages, statuses) or ints (entry.time)."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    if value > 1e11:  # milliseconds
        value /= 1000
    if not 0 < value < 32503680000:  # before the year 3000
        return None
    return datetime.fromtimestamp(value, UTC)


def meta_error(errors: Any) -> dict[str, Any]:
    """Meta's first error as Message fields: code, title, details (error_data.details, else message)."""
    first = next(iter(meta_dicts(errors)), None)
    if first is None:
        return {}
    return {
        "error_code": meta_int(first.get("code")),
        "error_title": meta_str(first.get("title"), 255),
        "error_details": meta_str(meta_dict(first.get("error_data")).get("details"))
        or meta_str(first.get("message")),
    }

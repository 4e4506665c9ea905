"""Reading Meta's webhook bodies, whose shapes are never trusted: a body as storable JSON, and the
readers that take a value of the expected type or an empty one."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from core.json_input import json_too_deep

_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")
# Digits are ASCII ones: str.isdigit() and int() also take "²" or "٤" (and disagree on some).
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_SECONDS = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,9})?")
_WA_ID = re.compile(r"[0-9]{1,32}")


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
    """The JSON object a body holds, made storable as jsonb; None when it holds anything else, or
    nests deeper than any of Meta's (`json_too_deep`: reading it back would exhaust the stack)."""
    try:
        payload = json.loads(body, parse_float=_finite_float, parse_constant=_constant_refuse)
        if not isinstance(payload, dict) or json_too_deep(payload):
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


def meta_int(value: Any, *, limit: int = 2**31) -> int | None:
    """An integer from an int or a string of ASCII digits, within ±limit (by default PostgreSQL's
    integer column's range); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        value = int(text) if _INTEGER.fullmatch(text) else None
    return value if isinstance(value, int) and -limit <= value < limit else None


def meta_id(value: Any) -> int | None:
    """One of our row ids (bigint), as Meta echoes it back in a string (`biz_opaque_callback_data`)."""
    found = meta_int(value, limit=2**63) if isinstance(value, str) else None
    return found if found is not None and found > 0 else None


def meta_wa_id(value: Any) -> str:
    """A WhatsApp id: up to 32 ASCII digits, else empty (the API refuses anything else as one)."""
    text = meta_name(value)
    return text if _WA_ID.fullmatch(text) else ""


def meta_time(value: Any) -> datetime | None:
    """Meta's times are seconds since the epoch, as strings (messages, statuses) or ints (entry.time);
    None for anything else, or a time outside years 1970 to 3000."""
    if isinstance(value, str):
        text = value.strip()
        value = float(text) if _SECONDS.fullmatch(text) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not 0 < value < 2**53:  # beyond a float's whole numbers
        return None
    value = float(value)
    if not math.isfinite(value):
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

"""Meta's cursor paging of an edge (`/{waba_id}/message_templates`, `/{waba_id}/phone_numbers`):
`limit` (25 by default, 1,000 at most), opaque `after`/`before` cursors, and a `next` URL only when
there is more, keeping the request's other arguments."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from flask import request, url_for

from devstack.sandbox.errors import invalid_parameter

LIMIT_DEFAULT = 25
LIMIT_MAX = 1000
PAGING_ARGUMENTS = ("after", "before", "limit")


def edge_page(items: Sequence[Any], *, render: Callable[[Any], dict], endpoint: str, **url_values) -> dict:
    """The page of `items` the request asks for, as Meta answers it: `{"data": [...], "paging": ...}`;
    `endpoint` and `url_values` build the `next` URL."""
    try:
        limit = min(int(request.args.get("limit", LIMIT_DEFAULT)), LIMIT_MAX)
    except ValueError:
        raise invalid_parameter("Param limit must be an integer.") from None
    if limit < 1:
        raise invalid_parameter("Param limit must be at least 1.")
    start = 0
    if after := request.args.get("after"):
        start = _cursor_position(after) + 1
    elif before := request.args.get("before"):
        start = max(0, _cursor_position(before) - limit)
    page = items[start : start + limit]
    answer: dict = {"data": [render(item) for item in page]}
    if page:
        paging: dict = {"cursors": {"before": _cursor(start), "after": _cursor(start + len(page) - 1)}}
        if start + len(page) < len(items):
            kept = {key: value for key, value in request.args.items() if key not in PAGING_ARGUMENTS}
            paging["next"] = url_for(
                endpoint, **url_values, **kept, limit=limit, after=paging["cursors"]["after"], _external=True
            )
        answer["paging"] = paging
    return answer


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"position:{position}".encode()).decode()


def _cursor_position(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        return int(text.removeprefix("position:"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid_parameter("Param after/before is not a valid cursor.") from None

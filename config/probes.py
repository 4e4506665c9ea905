"""`/livez` for the platform's health checks, and who may see the backlog on `/healthz?verbose`.

`/livez` says that the process answers requests, and nothing else: it touches no database, broker
or bucket, so an outage of one of them never has every web task replaced. It is answered by a
middleware placed first, before the host check (the load balancer asks by the task's address)
and the HTTPS redirect (it asks over plain HTTP).

The backlog (messaging/backlog.py) is for administrators: staff users, or a caller sending
`Authorization: Bearer <HEALTHZ_TOKEN>`. Anyone else asking for it gets the plain answer.
"""

from dataclasses import asdict

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils.crypto import constant_time_compare

from messaging.backlog import backlog

LIVEZ_PATH = "/livez"


class LivezMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        if request.path_info.rstrip("/") == LIVEZ_PATH and request.method in ("GET", "HEAD"):
            return JsonResponse({"status": "ok"})
        return self.get_response(request)


def backlog_visible(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = settings.HEALTHZ_TOKEN
    return bool(token) and bearer_given(request, token)


def bearer_given(request: HttpRequest, token: str) -> bool:
    """Whether the request carries `Authorization: Bearer <token>`, compared in constant time."""
    return constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}")


def backlog_report() -> dict | str:
    """The backlog's figures, or why they could not be read."""
    try:
        return asdict(backlog())
    except DatabaseError as error:
        return f"unavailable: {type(error).__name__}"

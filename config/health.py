"""Health for load balancers and orchestrators: liveness and readiness, kept apart.

`/healthz` (liveness) answers 200 from the process alone and touches nothing: it is public, and any
number of hits costs no query, no SQS or S3 request. `/readyz` (readiness) asks the database, the
broker and the storage, and answers 200, or 503 naming any that does not answer; each process asks
at most once per READINESS_CACHE_S and answers from that in between, so a flood of hits never
becomes a flood on the dependencies. With READINESS_TOKEN set, `/readyz` answers only a request
with `Authorization: Bearer <token>` (401 otherwise), so what is failing is told to the
orchestrator, not to the internet. `/healthz?verbose` adds the backlog for administrators
(config/probes.py), and `/livez` answers before any middleware, for the platform's health checks.
"""

import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from config.probes import backlog_report, backlog_visible, bearer_given
from core.aws import bucket_check, sqs_client

logger = logging.getLogger(__name__)


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    sqs_client().get_queue_url(QueueName=f"{settings.SQS_QUEUE_PREFIX}default")


def _storage() -> None:
    bucket_check()


CHECKS = {"database": _database, "broker": _broker, "storage": _storage}


class _Readiness:
    """The last answer of this process's checks and when it was made; one request checks at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.answer: tuple[int, dict] | None = None
        self.at = 0.0

    def get(self) -> tuple[int, dict]:
        with self.lock:
            if self.answer is None or time.monotonic() - self.at >= settings.READINESS_CACHE_S:
                self.answer, self.at = _readiness_check(), time.monotonic()
            return self.answer


_readiness = _Readiness()


def _readiness_check() -> tuple[int, dict]:
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:
            logger.warning("health check %s failed: %s", name, type(error).__name__)
            results[name] = f"unavailable: {type(error).__name__}"
        else:
            results[name] = "ok"
    failing = [name for name, result in results.items() if result != "ok"]
    body = {"status": "unavailable" if failing else "ok", "failing": failing, **results}
    return (503 if failing else 200), body


def _token_given(request) -> bool:
    token = settings.READINESS_TOKEN
    if not token:
        return True
    return bearer_given(request, token)


@require_GET
def healthz(request):
    """Liveness: this process answers requests. With `?verbose`, administrators (config/probes.py)
    also get the backlog: the one form of /healthz that reads the database."""
    body: dict = {"status": "ok"}
    if "verbose" in request.GET and backlog_visible(request):
        body["backlog"] = backlog_report()
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


@require_GET
def readyz(request):
    """Readiness: the database, the broker and the storage answer (at most READINESS_CACHE_S old)."""
    if not _token_given(request):
        response = JsonResponse(
            {"detail": "Readiness needs Authorization: Bearer <READINESS_TOKEN>."}, status=401
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    status, body = _readiness.get()
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response

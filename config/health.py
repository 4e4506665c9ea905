"""`/healthz`: 200 when the database, the broker and the storage answer; 503 naming any that does not.
With `?verbose`, administrators also get the backlog (config/probes.py)."""

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from config.probes import backlog_report, backlog_visible
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


@require_GET
def healthz(request):
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
    status = 503 if failing else 200
    body = {"status": "unavailable" if failing else "ok", "failing": failing, **results}
    if "verbose" in request.GET and backlog_visible(request):
        body["backlog"] = backlog_report()
    return JsonResponse(body, status=status)

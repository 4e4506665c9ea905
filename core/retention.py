"""Retention: rows that only record what happened, deleted once older than their setting, a bounded
batch per statement so that no sweep holds many locks or a long transaction.

Each batch is one DELETE of at most RETENTION_BATCH_SIZE rows chosen by a sub-select, committed on
its own; a sweep stops when a batch comes back short or its time budget is spent, and the next run
goes on from there. A crash between two batches loses nothing that was to be kept: every batch
deletes only rows its condition names.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

logger = logging.getLogger(__name__)

SWEEP_BUDGET_S = 240.0  # a sweep's time; what is left waits for the next run


def rows_delete_batched(queryset: QuerySet, *, batch_size: int, deadline: float | None = None) -> int:
    """Delete the rows of `queryset`, `batch_size` a statement, each statement its own transaction,
    until none is left or `deadline` (time.monotonic()) has passed; returns how many were deleted.

    The rows are deleted in SQL, without Django's cascade: callers exclude rows that others still
    reference (the database's foreign keys would refuse them)."""
    model = queryset.model
    inner = queryset.order_by().values_list("pk", flat=True)[:batch_size]
    select_sql, params = inner.query.sql_with_params()
    table, pk = model._meta.db_table, model._meta.pk.column
    sql = f'DELETE FROM "{table}" WHERE "{pk}" IN ({select_sql})'
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
            count = cursor.rowcount
        deleted += count
        if count < batch_size or (deadline is not None and time.monotonic() >= deadline):
            return deleted


def retention_cutoff(days: int):
    return timezone.now() - timedelta(days=days)


def task_results_sweep(*, budget_s: float = SWEEP_BUDGET_S) -> dict[str, int]:
    """Delete Celery's task and group results older than RETENTION_TASK_RESULTS_DAYS."""
    cutoff = retention_cutoff(settings.RETENTION_TASK_RESULTS_DAYS)
    deadline = time.monotonic() + budget_s
    batch = settings.RETENTION_BATCH_SIZE
    result = {
        "task_results": rows_delete_batched(
            TaskResult.objects.filter(date_done__lt=cutoff), batch_size=batch, deadline=deadline
        ),
        "group_results": rows_delete_batched(
            GroupResult.objects.filter(date_done__lt=cutoff), batch_size=batch, deadline=deadline
        ),
    }
    if any(result.values()):
        logger.info("retention: deleted %s", result)
    return result

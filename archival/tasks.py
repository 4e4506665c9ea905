"""Archival tasks on the `archival` queue. A failure logs an error, raises an operator alert (admin
banner until acknowledged, email to ADMINS) and fails the task: SQS delivers it again after the
queue's visibility timeout and moves it to `archival-dlq` after its third receive. A run already
in progress elsewhere is not a failure."""

import logging

from celery import shared_task

from archival.media import media_archive
from archival.messages import ArchivalBusy, archive_batches_restore, messages_archive
from core.alerts import operator_alert_raise

logger = logging.getLogger(__name__)


def archival_failure_alert(*, what: str, error: BaseException) -> None:
    logger.error("archival of %s failed: %s: %s", what, type(error).__name__, error)
    operator_alert_raise(
        key=f"archival:{what}",
        text=f"Archival of {what} failed: {type(error).__name__}: {error}. Nothing was deleted that is not"
        " verified in S3; the run is retried (3 tries, then archival-dlq).",
    )


@shared_task(name="archival.messages_archive")
def messages_archive_task() -> int:
    try:
        return sum(batch.deleted_count for batch in messages_archive())
    except ArchivalBusy as busy:
        logger.info("messages archival skipped: %s", busy)
        return 0
    except Exception as error:
        archival_failure_alert(what="messages", error=error)
        raise


@shared_task(name="archival.media_archive")
def media_archive_task() -> int:
    try:
        return media_archive().record_count
    except ArchivalBusy as busy:
        logger.info("media archival skipped: %s", busy)
        return 0
    except Exception as error:
        archival_failure_alert(what="media", error=error)
        raise


@shared_task(name="archival.batches_restore")
def archive_batches_restore_task(batch_ids: list[int]) -> int:
    try:
        return sum(result.inserted for result in archive_batches_restore(batch_ids=batch_ids))
    except Exception as error:
        archival_failure_alert(what="restore", error=error)
        raise

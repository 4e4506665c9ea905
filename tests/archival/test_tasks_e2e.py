"""A real Celery worker on the `archival` queue (moto's SQS) whose S3 is down: the run fails three
times, one visibility timeout apart, then SQS moves it to `archival-dlq`; nothing is deleted and
operators are alerted."""

import pytest
from django.conf import settings

from archival.models import ArchiveBatch
from config.celery import app as celery_app
from core.models import OperatorAlert
from core.queues import dlq_list, queues_ensure
from messaging.models import Message
from tests.archival.conftest import closed_port
from tests.platform.conftest import broker_connection, wait_for, worker_running

pytestmark = pytest.mark.e2e


def test_a_failing_run_ends_in_archival_dlq_after_three_tries(
    transactional_db, old_messages, queue_prefix, tmp_path
):
    queues_ensure(visibility_timeout_override=1)
    before = Message.objects.count()
    s3_down = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "AWS_CLIENT_TIMEOUT_S": "1",
        "ADMINS": "ops@example.com",
        "ARCHIVE_WORKERS": "1",
    }
    with worker_running(
        queues=["archival"], queue_prefix=queue_prefix, log_path=tmp_path / "worker.log", env=s3_down
    ) as worker:
        with broker_connection(queue_prefix) as connection:
            result = celery_app.send_task(
                "archival.messages_archive", queue="archival", connection=connection
            )

        def dead() -> bool:
            return any(letter.task_id == result.id for letter in dlq_list(queue="archival", limit=10))

        wait_for(dead, timeout_s=120, interval_s=1, worker=worker, what="the run in archival-dlq")
        log = worker.log()

    assert log.count("archival of messages failed") == 3
    assert Message.objects.count() == before
    assert OperatorAlert.objects.get(key="archival:messages").acknowledged_at is None
    (batch,) = ArchiveBatch.objects.all()
    assert batch.state == ArchiveBatch.State.OPEN and batch.attempts == 3

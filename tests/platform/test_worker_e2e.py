"""A real Celery worker process on moto's SQS: a task runs, a failing one is redelivered until SQS
moves it to the dead-letter queue, and a replay brings it back to be run again.

The worker is started as `make run` starts it, but with the solo pool and on `default` only, and it
writes results to the test database that pytest-django created. Its queues have a prefix of the test's own, so
nothing another test leaves in the session's moto server reaches it.
"""

from collections.abc import Iterator
from io import StringIO

import environ
import pytest
from django.core.cache import cache
from django.core.management import call_command

from config.celery import app as celery_app
from core.queues import QUEUES, DeadLetter, dlq_list, queues_ensure
from tests.platform.conftest import Worker, broker_connection, database_url, wait_for, worker_running
from tests.platform.e2e_tasks import e2e_add, e2e_fail_until_healed, healed_key

pytestmark = pytest.mark.e2e

FAILING_TASK = "tests.platform.e2e_tasks.e2e_fail_until_healed"


@pytest.fixture
def worker(transactional_db, queue_prefix, tmp_path) -> Iterator[Worker]:
    """A worker on `default`, stopped (SIGTERM, then SIGKILL) however the test ends.

    It depends on transactional_db so that it stops before the test database is flushed.
    """
    queues_ensure(visibility_timeout_override=1)  # redeliveries within seconds
    with worker_running(
        queues=["default"],
        queue_prefix=queue_prefix,
        log_path=tmp_path / "worker.log",
        include=["tests.platform.e2e_tasks"],
    ) as running:
        yield running


def dead_letter(task_id: str) -> DeadLetter | None:
    return next((letter for letter in dlq_list(queue="default", limit=10) if letter.task_id == task_id), None)


def test_database_url_points_at_the_same_database():
    env = environ.Env()
    for url in (
        "postgres://postgres@127.0.0.1:5432/test_wharf_b",
        "postgres://wharf:p%40ss%2Fword@db.internal:6432/test_wharf?sslmode=require",
        "postgres://postgres@/test_wharf?host=%2Fwork%2Fmain%2Fvar%2Fpg",
    ):
        config = env.db_url_config(url)
        assert env.db_url_config(database_url(config)) == config


def test_a_worker_runs_tasks_dead_letters_failures_and_runs_them_again_after_a_replay(worker, queue_prefix):
    token = queue_prefix.removeprefix("wharf-test-").rstrip("-")
    with broker_connection(queue_prefix) as connection:
        # a task that succeeds
        added = e2e_add.apply_async((2, 3), connection=connection)
        assert added.get(timeout=60) == 5

        # a task that fails is rejected, redelivered, and after maxReceiveCount receives dead-lettered
        failing = e2e_fail_until_healed.apply_async((token,), connection=connection)

    letter = wait_for(lambda: dead_letter(failing.id), timeout_s=90, worker=worker, what="dead letter")
    assert letter.task == FAILING_TASK
    assert (letter.args, letter.kwargs) == ([token], {})
    max_receive_count = QUEUES["default"].max_receive_count
    assert letter.receive_count > max_receive_count  # SQS's receives, then this listing's own
    assert worker.log().count(f"Task {FAILING_TASK}[{failing.id}] raised unexpected") == max_receive_count
    assert celery_app.AsyncResult(failing.id).state == "FAILURE"
    listing = StringIO()
    call_command("dlq", "list", "default", stdout=listing)
    assert letter.message_id in listing.getvalue() and FAILING_TASK in listing.getvalue()

    # the bug is fixed; the operator replays the dead letters
    cache.set(healed_key(token), True, timeout=300)
    replay = StringIO()
    call_command("dlq", "replay", "default", "--all", stdout=replay)

    assert replay.getvalue().startswith("replayed 1 dead letter(s)")
    assert dlq_list(queue="default", limit=10) == []
    wait_for(
        lambda: celery_app.AsyncResult(failing.id).state == "SUCCESS",
        timeout_s=30,
        worker=worker,
        what="success of the replayed task",
    )
    assert celery_app.AsyncResult(failing.id).result == token
    assert dlq_list(queue="default", limit=10) == []

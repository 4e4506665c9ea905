"""A real Celery worker process on moto's SQS: a task runs, a failing one is redelivered until SQS
moves it to the dead-letter queue, and a replay brings it back to be run again.

The worker is started as `make run` starts it, but with the solo pool and on `default` only, and it
writes results to the test database that pytest-django created. Its queues have a prefix of the test's own, so
nothing another test leaves in the session's moto server reaches it.
"""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from urllib.parse import quote, urlencode

import environ
import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

from config.celery import app as celery_app
from config.queues import QUEUES, DeadLetter, dlq_list, queues_ensure
from config.stack import BASE_DIR, stop_process
from tests.platform.conftest import broker_connection
from tests.platform.e2e_tasks import e2e_add, e2e_fail_until_healed, healed_key

pytestmark = pytest.mark.e2e

FAILING_TASK = "tests.platform.e2e_tasks.e2e_fail_until_healed"


def database_url(database: dict) -> str:
    """DATABASE_URL for the database Django is connected to (the test database, in a test)."""
    user = quote(database.get("USER") or "", safe="")
    password = quote(str(database.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    options = {
        key: value for key, value in (database.get("OPTIONS") or {}).items() if isinstance(value, str | int)
    }
    host = database.get("HOST") or ""
    if host.startswith("/"):  # a Unix socket's folder, as with the embedded PostgreSQL
        options["host"], host = host, ""
    port = f":{database['PORT']}" if database.get("PORT") and host else ""
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{credentials}{host}{port}/{quote(database['NAME'], safe='')}{query}"


@dataclass
class Worker:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(condition: Callable, *, timeout_s: float, interval_s: float = 0.5, worker: Worker, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if worker.process.poll() is not None:
            pytest.fail(
                f"the worker exited with {worker.process.returncode} waiting for {what}:\n{worker.log()}"
            )
        time.sleep(interval_s)
    pytest.fail(f"no {what} after {timeout_s} s; the worker's log:\n{worker.log()[-6000:]}")


@pytest.fixture
def worker(transactional_db, queue_prefix, tmp_path) -> Iterator[Worker]:
    """A worker on `default`, stopped (SIGTERM, then SIGKILL) however the test ends.

    It depends on transactional_db so that it stops before the test database is flushed.
    """
    queues_ensure(visibility_timeout_override=1)  # redeliveries within seconds
    env = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "SQS_QUEUE_PREFIX": queue_prefix,
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"), "-A", "config", "worker",
                "--queues", "default", "--pool", "solo", "--concurrency", "1",
                "--without-mingle", "--without-gossip", "--include", "tests.platform.e2e_tasks",
                "--loglevel", "INFO", "--hostname", "e2e@%h",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    running = Worker(process, log_path)
    try:
        wait_for(lambda: " ready." in running.log(), timeout_s=30, worker=running, what="worker ready")
        yield running
    finally:
        stop_process(process, grace_s=10)


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

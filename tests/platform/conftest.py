import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode
from uuid import uuid4

import pytest
from django.conf import settings
from kombu import Connection

from config.celery import app as celery_app
from core.aws import sqs_client
from core.queues import QueueState, queues_ensure
from devstack.stack import BASE_DIR, stop_process
from tests.waiting import wait_until


def broker_connection(prefix: str) -> Connection:
    """A broker connection like the app's own, to the queues named with `prefix`."""
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "queue_name_prefix": prefix}
    return Connection(
        settings.CELERY_BROKER_URL, transport=settings.CELERY_BROKER_TRANSPORT, transport_options=options
    )


def receive_all(url: str) -> list[dict]:
    """Every message in a queue, consumed: a test's own check of what SQS holds."""
    messages: list[dict] = []
    while (
        batch := sqs_client()
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60)
        .get("Messages", [])
    ):
        messages += batch
    return messages


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
    """wait_until for a test with a worker process: it fails at once, with the worker's log, when
    the worker exits, and shows the end of the log when time runs out."""
    __tracebackhide__ = True

    def met():
        if value := condition():
            return value
        if worker.process.poll() is not None:
            pytest.fail(
                f"the worker exited with {worker.process.returncode} waiting for {what}:\n{worker.log()}"
            )
        return None

    return wait_until(
        met,
        timeout=timeout_s,
        interval=interval_s,
        message=lambda: f"{what}; the worker's log:\n{worker.log()[-6000:]}",
    )


@contextmanager
def worker_running(
    *,
    queues: Iterable[str],
    queue_prefix: str,
    log_path: Path,
    include: Iterable[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Worker]:
    """A real Celery worker process (solo pool) on `queues`, writing to the test database; stopped
    (SIGTERM, then SIGKILL) however the block ends. Run it inside a transactional_db test, so that
    it stops before the test database is flushed."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "SQS_QUEUE_PREFIX": queue_prefix,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    includes = [argument for module in include for argument in ("--include", module)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"), "-A", "config", "worker",
                "--queues", ",".join(queues), "--pool", "solo", "--concurrency", "1",
                "--without-mingle", "--without-gossip", *includes,
                "--loglevel", "INFO", "--hostname", "e2e@%h",
            ],
            cwd=BASE_DIR,
            env=environment,
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


class Letter(NamedTuple):
    message_id: str
    task_id: str
    body: str


@pytest.fixture
def queue_prefix(settings, monkeypatch) -> str:
    """A queue prefix of the test's own, so that its queues start empty in the session's moto server.

    Reading a DLQ long-polls so that real SQS, which samples its servers on a short poll, does not
    report a small queue empty; moto answers a short poll with every visible message, so the tests
    skip the one-second wait that ends every reading.
    """
    monkeypatch.setattr("core.queues._RECEIVE_WAIT_S", 0)
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    return prefix


@pytest.fixture
def queues(queue_prefix) -> dict[str, QueueState]:
    return {state.name: state for state in queues_ensure()}


@pytest.fixture
def dead_letter_put(queues, queue_prefix):
    """Put a task message, as Celery and kombu write it to SQS, in a queue's DLQ.

    The message is published to the source queue by Celery itself and then moved, body unchanged,
    as SQS's redrive does.
    """

    def put(
        task: str, args: list | None = None, kwargs: dict | None = None, *, queue: str = "default"
    ) -> Letter:
        state = queues[queue]
        with broker_connection(queue_prefix) as connection:
            result = celery_app.send_task(task, args=args, kwargs=kwargs, queue=queue, connection=connection)
        (message,) = receive_all(state.url)
        client = sqs_client()
        message_id = client.send_message(QueueUrl=state.dlq_url, MessageBody=message["Body"])["MessageId"]
        client.delete_message(QueueUrl=state.url, ReceiptHandle=message["ReceiptHandle"])
        return Letter(message_id, result.id, message["Body"])

    return put

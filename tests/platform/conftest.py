from typing import NamedTuple
from uuid import uuid4

import pytest
from django.conf import settings
from kombu import Connection

from config.aws import sqs_client
from config.celery import app as celery_app
from config.queues import QueueState, queues_ensure


def broker_connection(prefix: str) -> Connection:
    """A broker connection like the app's own, to the queues named with `prefix`."""
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "queue_name_prefix": prefix}
    return Connection(settings.CELERY_BROKER_URL, transport_options=options)


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
    monkeypatch.setattr("config.queues._RECEIVE_WAIT_S", 0)
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

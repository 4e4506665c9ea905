"""The tasks the app published, read back from the session's SQS server.

A test that takes the `broker` fixture gets queues of its own (a fresh queue name prefix, so they
start empty) and the app publishes there, through Celery and kombu as in production; no worker
reads them. The test then receives what was published, instead of stubbing the publishing.
"""

import base64
import json
from collections.abc import Iterator
from typing import NamedTuple
from uuid import uuid4

import pytest

from core.aws import sqs_client
from tests.messaging.webhook_helpers import celery_publishing_to
from tests.platform.conftest import receive_all


class Published(NamedTuple):
    task: str
    args: list
    kwargs: dict
    eta: str | None  # ISO time, when published with a countdown


class Broker:
    """The queues named with `prefix` on the session's SQS server."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def url(self, queue: str) -> str | None:
        """The queue's URL, or None when nothing has made it yet (kombu makes a queue on first use)."""
        client = sqs_client()
        try:
            return client.get_queue_url(QueueName=f"{self.prefix}{queue}")["QueueUrl"]
        except client.exceptions.QueueDoesNotExist:
            return None

    def purge(self, queue: str) -> None:
        if (url := self.url(queue)) is not None:
            sqs_client().purge_queue(QueueUrl=url)

    def published(self, queue: str) -> list[Published]:
        """Every task message in `queue`, received (so a second call sees only newer ones)."""
        url = self.url(queue)
        return [_decoded(message["Body"]) for message in receive_all(url)] if url else []

    def tasks(self, queue: str) -> list[str]:
        return [published.task for published in self.published(queue)]


def _decoded(body: str) -> Published:
    """kombu's SQS envelope (base64 JSON) around Celery's message (protocol 2: args, kwargs, embed)."""
    envelope = json.loads(base64.b64decode(body))
    args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    headers = envelope["headers"]
    return Published(headers["task"], args, kwargs, headers.get("eta"))


@pytest.fixture
def broker(settings) -> Iterator[Broker]:
    """Queues of this test's own, empty, where the app publishes (see the module's header)."""
    prefix = f"wharf-test-{uuid4().hex[:10]}-"
    settings.SQS_QUEUE_PREFIX = prefix
    with celery_publishing_to(queue_prefix=prefix):
        yield Broker(prefix)

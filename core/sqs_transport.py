"""kombu's SQS transport, made to survive the loss of its queues while it runs.

SQS forgets queues when they are deleted, and the local emulator forgets all of them when it
restarts. kombu's own transport then fails in three ways: a publisher with the queue's URL cached
raises QueueDoesNotExist on every send (a web process, beat); a consumer's receive raises it
through the event loop, which Celery takes as unrecoverable, so the worker exits; and a process
that looks the queue up afresh creates a bare one, with neither the dead-letter queue nor the
redrive policy of QUEUES.

Here every one of the platform's queues is created by `queues_ensure`, with its DLQ, whenever
kombu would create it or finds it missing: a send that meets QueueDoesNotExist ensures the queues
and is sent once more; a receive that meets it ensures them and polls again after the polling
interval, in the same worker process. Other queues (Celery's remote control) are kombu's affair.
On AWS a queue deleted less than a minute ago cannot be made again: the send then fails (its
caller's fallback picks the work up) and the receive tries again at its next poll.

The methods replaced are kombu's private ones (kombu is pinned in requirements.txt);
tests/platform/test_faults.py fails if an upgrade changes them.
"""

from __future__ import annotations

import logging
from functools import partial

from botocore.exceptions import ClientError
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException
from vine import promise, transform

from core.queues import QUEUES, queues_ensure

logger = logging.getLogger(__name__)

QUEUE_MISSING_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def queue_missing(error: BaseException) -> bool:
    """SQS answered that the queue does not exist: a ClientError from boto3, or the bare Exception
    that kombu's asynchronous client raises with SQS's answer in its text."""
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in QUEUE_MISSING_CODES
    return any(code in str(error) for code in QUEUE_MISSING_CODES)


class Channel(SQS.Channel):
    """kombu's SQS channel that makes the platform's queues again when SQS has lost them."""

    def _queues_recreate(self, queue: str) -> None:
        logger.warning("SQS queue %s is missing: creating the queues again", self.canonical_queue_name(queue))
        for state in queues_ensure(prefix=self.queue_name_prefix):
            self._queue_cache[state.sqs_name] = state.url
            self._queue_cache[state.dlq_sqs_name] = state.dlq_url

    def _new_queue(self, queue, **kwargs):
        if queue not in QUEUES:
            return super()._new_queue(queue, **kwargs)
        try:
            return self._resolve_queue_url(queue)
        except DoesNotExistQueueException:
            self._queues_recreate(queue)
            return self._resolve_queue_url(queue)

    def _put(self, queue, message, **kwargs):
        try:
            return super()._put(queue, message, **kwargs)
        except ClientError as error:
            if queue not in QUEUES or not queue_missing(error):
                raise
        self._queues_recreate(queue)
        return super()._put(queue, message, **kwargs)

    def _get_async(self, queue, count=1, callback=None):
        """kombu's, with an error handler on the receive: a missing queue is made again."""
        queue_url = self._new_queue(queue)
        sqs_name = self.canonical_queue_name(queue)
        return self._get_from_sqs(
            queue_name=sqs_name,
            queue_url=queue_url,
            count=count,
            connection=self.asynsqs(queue=sqs_name),
            callback=promise(
                transform(self._on_messages_ready, callback, queue_url, queue),
                on_error=partial(self._receive_failed, queue),
            ),
        )

    def _receive_failed(self, queue: str, error: BaseException) -> None:
        if queue not in QUEUES or not queue_missing(error):
            raise error
        try:
            self._queues_recreate(queue)
        except Exception as ensure_error:  # SQS still away: try again at the next poll
            logger.warning(
                "could not create the SQS queues: %s: %s", type(ensure_error).__name__, ensure_error
            )
        # the receive's callback, which polls again, is not called on an error: poll again here
        self.hub.call_later(max(self.connection.polling_interval or 0, 1), self._schedule_queue, queue)


class Transport(SQS.Transport):
    Channel = Channel

"""The Celery queues on SQS, each with its dead-letter queue and redrive policy."""

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueSpec:
    name: str
    visibility_timeout: int  # seconds; longer than the slowest task on the queue
    max_receive_count: int = 5  # receives before SQS moves a message to the DLQ

    @property
    def dlq_name(self) -> str:
        return f"{self.name}-dlq"


QUEUES: dict[str, QueueSpec] = {
    spec.name: spec
    for spec in (
        QueueSpec("incoming", visibility_timeout=120),
        QueueSpec("outgoing", visibility_timeout=120),
        QueueSpec("analytics", visibility_timeout=120),
        QueueSpec("archival", visibility_timeout=1800, max_receive_count=3),
        QueueSpec("default", visibility_timeout=300),
    )
}

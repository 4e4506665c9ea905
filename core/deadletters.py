"""Operators' replays and deletions of dead letters (core/queues.py), each audited."""

from __future__ import annotations

from core.audit import Actor, audit_log_record
from core.queues import dlq_delete, dlq_replay, queue_spec, sqs_queue_name


def dead_letters_replay(*, queue: str, message_ids: set[str] | None, actor: Actor, source: str) -> int:
    """Send the chosen dead letters of `queue` (None: all) back to it; returns how many moved."""
    replayed = dlq_replay(queue=queue, message_ids=message_ids)
    _audit("dead_letters.replay", queue, message_ids, replayed, actor=actor, source=source)
    return replayed


def dead_letters_delete(*, queue: str, message_ids: set[str], actor: Actor, source: str) -> int:
    """Delete the chosen dead letters of `queue` for good; returns how many were deleted."""
    deleted = dlq_delete(queue=queue, message_ids=message_ids)
    _audit("dead_letters.delete", queue, message_ids, deleted, actor=actor, source=source)
    return deleted


def _audit(
    action: str, queue: str, message_ids: set[str] | None, count: int, *, actor: Actor, source: str
) -> None:
    audit_log_record(
        actor=actor,
        source=source,
        action=action,
        target_repr=sqs_queue_name(queue_spec(queue).dlq_name),
        changes={
            "queue": queue,
            "message_ids": sorted(message_ids) if message_ids is not None else "all",
            "count": count,
        },
    )

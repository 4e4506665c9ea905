"""Celery tasks of messaging, routed by name ("messaging.inbound_*" and "messaging.media_*" to the
`incoming` queue, "messaging.outbound_*" to `outgoing`, read receipts and the sender numbers'
reads from Meta to `default`). A drain's task
lives beside the drain, which enqueues it, as read receipts' beside theirs; the rest are thin
wrappers of their services."""

from dataclasses import asdict

from celery import shared_task

from messaging.backlog import backlog_publish
from messaging.conversations import conversations_wake
from messaging.inbound.events import inbound_events_process_task, inbound_events_sweep
from messaging.media import media_fetch_task
from messaging.numbers import phone_number_sync_task, phone_numbers_sync_task
from messaging.outbound.drain import outbound_send_task
from messaging.outbound.sweep import outgoing_sweep
from messaging.ratelimit import rate_paces_sweep
from messaging.receipts import message_read_receipt_send_task
from messaging.retention import inbound_rows_sweep

__all__ = [
    "backlog_publish_task",
    "conversations_wake_task",
    "inbound_events_process_task",
    "inbound_events_sweep_task",
    "media_fetch_task",
    "message_read_receipt_send_task",
    "outbound_send_task",
    "outbound_sweep_task",
    "phone_number_sync_task",
    "phone_numbers_sync_task",
    "rate_paces_sweep_task",
    "retention_sweep_task",
]


@shared_task(name="messaging.inbound_events_sweep")
def inbound_events_sweep_task() -> bool:
    return inbound_events_sweep()


@shared_task(name="messaging.outbound_sweep")
def outbound_sweep_task() -> dict:
    return outgoing_sweep()


@shared_task(name="messaging.ratelimit_sweep")
def rate_paces_sweep_task() -> int:
    return rate_paces_sweep()


@shared_task(name="messaging.conversations_wake")
def conversations_wake_task() -> int:
    return conversations_wake()


@shared_task(name="messaging.retention_sweep")
def retention_sweep_task() -> dict:
    """Delete webhook bodies, pending statuses and webhook events past their retention."""
    return inbound_rows_sweep()


@shared_task(name="messaging.backlog_publish")
def backlog_publish_task() -> dict | None:
    figures = backlog_publish()
    return asdict(figures) if figures else None

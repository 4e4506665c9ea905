"""A conversation's activity as its timeline shows it, read from the audit log: the one record of
who changed what (`core.audit`). Each row whose target is the conversation and whose action is
listed here becomes one line ("alice assigned this to bob"); others (a read, a note's own row: the
note is shown itself) are not activity, and a row whose changes do not read is left out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from core.models import AuditLog
from messaging.models import Conversation

ASSIGN = "conversation.assign"
STATUS = "conversation.status"
LABELS = "conversation.labels"
PRIORITY = "conversation.priority"
WAKE = "conversation.wake"
ACTIVITY_ACTIONS = (ASSIGN, STATUS, LABELS, PRIORITY, WAKE)

_STATUS_DONE = {
    Conversation.Status.OPEN: "reopened this",
    Conversation.Status.PENDING: "marked this pending",
    Conversation.Status.RESOLVED: "resolved this",
    Conversation.Status.SNOOZED: "snoozed this",
}


@dataclass
class ConversationActivity:
    log: AuditLog
    text: str  # "alice assigned this to bob"
    until: datetime | None = None  # a snooze's end: the page shows it in its own format

    @property
    def action(self) -> str:
        return self.log.action

    @property
    def actor(self) -> AbstractBaseUser | None:
        return self.log.actor


def activity_user_ids(logs: Iterable[AuditLog]) -> set[int]:
    """The users the rows name besides their actors (assignees), to fetch in one query."""
    ids: set[int] = set()
    for log in logs:
        if log.action == ASSIGN and isinstance(log.changes.get("assignee"), list):
            ids |= {pk for pk in log.changes["assignee"] if isinstance(pk, int)}
    return ids


def _who(log: AuditLog) -> str:
    if log.actor is not None:
        return log.actor.get_username()
    return "Wharf" if log.source == AuditLog.Source.SYSTEM else "someone"


def _name(users: dict[int, AbstractBaseUser], pk: int) -> str:
    user = users.get(pk)
    return user.get_username() if user is not None else "a removed user"


def _assign_text(log: AuditLog, users: dict[int, AbstractBaseUser]) -> str:
    seen, wanted = log.changes["assignee"]
    if wanted is None:
        return f"unassigned {_name(users, seen)}" if seen is not None else "unassigned this"
    if wanted == log.actor_id:
        return "self-assigned this"
    return f"assigned this to {_name(users, wanted)}"


def _text(log: AuditLog, users: dict[int, AbstractBaseUser]) -> tuple[str, datetime | None]:
    changes: dict[str, Any] = log.changes
    if log.action == WAKE:
        return "woke up from snooze", None
    if log.action == ASSIGN:
        return f"{_who(log)} {_assign_text(log, users)}", None
    if log.action == STATUS:
        status = changes["status"][1]
        until = datetime.fromisoformat(changes["snoozed_until"]) if changes.get("snoozed_until") else None
        return f"{_who(log)} {_STATUS_DONE[status]}", until
    if log.action == LABELS:
        labels = changes["labels"][1]
        done = f"set the labels: {', '.join(labels)}" if labels else "removed the labels"
        return f"{_who(log)} {done}", None
    priority = changes["priority"][1]
    if priority == Conversation.Priority.NONE:
        return f"{_who(log)} cleared the priority", None
    return f"{_who(log)} set the priority to {priority}", None


def conversation_activity(
    *, log: AuditLog, users: dict[int, AbstractBaseUser]
) -> ConversationActivity | None:
    """The timeline's line for an audit row about a conversation; None for a row that is not
    activity or whose changes do not have the shape its service writes."""
    if log.action not in ACTIVITY_ACTIONS:
        return None
    try:
        text, until = _text(log, users)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return ConversationActivity(log=log, text=text, until=until)

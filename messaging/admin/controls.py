"""The conversation page's header: an operator's controls on the conversation of the page's contact
and sender number (assignee, status, snooze, labels, priority).

Each control is a plain POST form to its own URL under the inbox's ConversationAdmin
(`/admin/messaging/conversation/<id>/<control>/`, messaging/admin/inbox.py): a Django form here
validates it, a service of messaging.conversations carries it out, and the answer is a redirect
back to the conversation page saying what was done or why it was refused. The page works without
its script; the script only submits a select when it changes and closes menus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format

from contacts.models import Contact
from messaging.admin.common import SOURCE
from messaging.conversations import (
    conversation_assign,
    conversation_labels_set,
    conversation_priority_set,
    conversation_status_set,
    phone_number_viewers_q,
)
from messaging.models import Conversation, Label, PhoneNumber

CHANGE_PERMISSION = "messaging.change_conversation"
MORNING = time(9, 0)
_S = Conversation.Status


def assignees(conversation: Conversation) -> QuerySet:
    """Whom the conversation may be given to: active staff who see its sender number."""
    return (
        get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .filter(phone_number_viewers_q(phone_number_id=conversation.phone_number_id))
        .order_by("username")
    )


def snooze_times(now: datetime) -> dict[str, datetime]:
    """The snooze menu's times: in an hour, tomorrow at nine, next Monday at nine (local time)."""
    local = timezone.localtime(now)
    tomorrow = local.date() + timedelta(days=1)
    monday = local.date() + timedelta(days=7 - local.weekday())
    zone = timezone.get_current_timezone()
    return {
        "hour": now + timedelta(hours=1),
        "tomorrow": datetime.combine(tomorrow, MORNING, tzinfo=zone),
        "monday": datetime.combine(monday, MORNING, tzinfo=zone),
    }


SNOOZE_CHOICES = [
    ("hour", "1 hour"),
    ("tomorrow", "Tomorrow, 09:00"),
    ("monday", "Next Monday, 09:00"),
    ("custom", "Until…"),
]
STATUS_DONE = {_S.OPEN: "Reopened.", _S.PENDING: "Marked pending.", _S.RESOLVED: "Resolved."}


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        queryset=None,
        required=False,
        error_messages={"invalid_choice": "Choose someone who sees this number's conversations."},
    )
    # The assignee the page showed: the service refuses when someone else changed it meanwhile.
    seen = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, conversation: Conversation, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignees(conversation)


class StatusForm(forms.Form):
    status = forms.ChoiceField(choices=[(status, status) for status in STATUS_DONE])


class SnoozeForm(forms.Form):
    until = forms.ChoiceField(choices=SNOOZE_CHOICES)
    custom = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def clean(self) -> dict:
        cleaned = super().clean()
        choice = cleaned.get("until")
        if choice == "custom":
            if cleaned.get("custom") is None and "custom" not in self.errors:
                self.add_error("custom", "Say until when.")
            cleaned["snoozed_until"] = cleaned.get("custom")
        elif choice:
            cleaned["snoozed_until"] = snooze_times(timezone.now())[choice]
        return cleaned


class LabelsForm(forms.Form):
    labels = forms.MultipleChoiceField(
        required=False, error_messages={"invalid_choice": "Unknown label: %(value)s."}
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["labels"].choices = [
            (name, name) for name in Label.objects.values_list("name", flat=True)
        ]


class PriorityForm(forms.Form):
    priority = forms.ChoiceField(choices=Conversation.Priority.choices)


def _assign(conversation: Conversation, data: dict, actor: AbstractBaseUser) -> str:
    conversation.assignee_id = data["seen"]  # what the operator saw, not what the row holds now
    assignee = data["assignee"]
    conversation_assign(conversation=conversation, assignee=assignee, actor=actor, source=SOURCE)
    return f"Assigned to {assignee.get_username()}." if assignee else "Unassigned."


def _status(conversation: Conversation, data: dict, actor: AbstractBaseUser) -> str:
    conversation_status_set(conversation=conversation, status=data["status"], actor=actor, source=SOURCE)
    return STATUS_DONE[data["status"]]


def _snooze(conversation: Conversation, data: dict, actor: AbstractBaseUser) -> str:
    until = data["snoozed_until"]
    conversation_status_set(
        conversation=conversation, status=_S.SNOOZED, snoozed_until=until, actor=actor, source=SOURCE
    )
    when = date_format(timezone.localtime(until), "D j M H:i")
    return f"Snoozed until {when} {timezone.get_current_timezone_name()}."


def _labels(conversation: Conversation, data: dict, actor: AbstractBaseUser) -> str:
    changed = conversation_labels_set(
        conversation=conversation, labels=data["labels"], actor=actor, source=SOURCE
    )
    return f"Labels: {', '.join(changed.labels)}." if changed.labels else "Labels removed."


def _priority(conversation: Conversation, data: dict, actor: AbstractBaseUser) -> str:
    conversation_priority_set(
        conversation=conversation, priority=data["priority"], actor=actor, source=SOURCE
    )
    return f"Priority: {Conversation.Priority(data['priority']).label.lower()}."


@dataclass(frozen=True)
class Control:
    form: type[forms.Form]
    apply: Callable[[Conversation, dict, AbstractBaseUser], str]  # the service call; what it did


CONTROLS: dict[str, Control] = {
    "assign": Control(AssignForm, _assign),
    "status": Control(StatusForm, _status),
    "snooze": Control(SnoozeForm, _snooze),
    "labels": Control(LabelsForm, _labels),
    "priority": Control(PriorityForm, _priority),
}


FIELD_NAMES = {
    "assignee": "Assignee",
    "status": "Status",
    "until": "Snooze",
    "custom": "Snooze",
    "snoozed_until": "Snooze",
    "labels": "Labels",
    "priority": "Priority",
}


def _error_lines(errors: dict[str, list[str]]) -> list[str]:
    """A refusal per line, named by the control it concerns ("Snooze: A snooze ends in the future.")."""
    return [
        f"{FIELD_NAMES[field]}: {text}" if field in FIELD_NAMES else text
        for field, texts in errors.items()
        for text in texts
    ]


def conversation_control_apply(
    request: HttpRequest, conversation: Conversation, control: str
) -> tuple[str, list[str]]:
    """Run one header control's POST: (what was done, "") or ("", the refusals to show)."""
    entry = CONTROLS[control]
    kwargs: dict[str, Any] = {"conversation": conversation} if entry.form is AssignForm else {}
    form = entry.form(request.POST, **kwargs)
    if not form.is_valid():
        return "", _error_lines(form.errors)
    try:
        return entry.apply(conversation, form.cleaned_data, request.user), []
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            return "", _error_lines(error.message_dict)
        return "", list(error.messages)


def conversation_controls_context(
    request: HttpRequest, contact: Contact, sender: PhoneNumber | None
) -> dict[str, Any]:
    """What the page's header shows of the conversation of `contact` with `sender` (None when they
    have none yet), and the controls when the operator may change conversations."""
    found = (
        Conversation.objects.select_related("assignee", "phone_number")
        .filter(contact=contact, phone_number=sender)
        .first()
    )
    context: dict[str, Any] = {"conversation": found, "sender": sender}
    if found is None:
        return context
    catalogue = list(Label.objects.all())
    colours = {label.name: label.colour for label in catalogue}
    context["labels"] = [(name, colours.get(name, Label.Colour.GREY)) for name in found.labels]
    context["can_change"] = request.user.has_perm(CHANGE_PERMISSION)
    if not context["can_change"]:
        return context
    people = list(assignees(found))
    if found.assignee is not None and found.assignee not in people:
        people.insert(0, found.assignee)  # shown as it is, though no longer someone to give it to
    now = timezone.now()
    times = snooze_times(now)
    context |= {
        "urls": {name: reverse(f"admin:messaging_conversation_{name}", args=[found.pk]) for name in CONTROLS},
        "assignees": people,
        "assign_to_me": found.assignee_id != request.user.pk and request.user in people,
        "catalogue": [(label, label.name in found.labels) for label in catalogue],
        "priorities": Conversation.Priority.choices,
        "snooze_options": [(value, words, times.get(value)) for value, words in SNOOZE_CHOICES[:-1]],
        "snooze_min": timezone.localtime(now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"),
        "time_zone": timezone.get_current_timezone_name(),
    }
    return context

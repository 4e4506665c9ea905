"""The catalogue of labels operators may put on conversations.

Conversations carry label names in an array (`Conversation.labels`); every write here keeps them
in step with the catalogue in the same transaction: renaming a label renames it on its
conversations, deleting one takes it off them (each holding the label's row lock). A conversation's
labels are set only to names of the catalogue (`labels_unknown`, which share-locks them until the
setting commits).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Func, QuerySet, Value
from django.utils import timezone

from core.audit import Actor, audit_log_record
from messaging.models import LABEL_PATTERN, Conversation, Label

LABEL_FIELDS = ("name", "colour", "description")
_LABELS_FIELD = Conversation._meta.get_field("labels")
_KNOWN_SQL = f"SELECT name FROM {Label._meta.db_table} WHERE name = ANY(%s::text[]) FOR KEY SHARE"


class _ArrayReplace(Func):
    function = "array_replace"


class _ArrayRemove(Func):
    function = "array_remove"


def labels_unknown(names: Iterable[str]) -> list[str]:
    """The names (in their order) that are not in the catalogue. Inside a transaction the ones that
    are stay locked (FOR KEY SHARE) until it ends, so a label renamed or deleted meanwhile waits and
    a conversation never keeps a name the catalogue has lost."""
    names = list(names)
    if not names:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_KNOWN_SQL, [names])
        known = {name for (name,) in cursor.fetchall()}
    return [name for name in names if name not in known]


def _label_clean(*, name: str, colour: str, description: str, exclude_id: int | None) -> dict:
    name = name.strip().lower()
    if not LABEL_PATTERN.match(name):
        raise ValidationError({"name": "Up to 32 lower-case letters, digits, - or _."})
    if colour not in Label.Colour.values:
        raise ValidationError({"colour": f"One of {', '.join(Label.Colour.values)}."})
    if Label.objects.filter(name=name).exclude(pk=exclude_id).exists():
        raise ValidationError({"name": f"There is already a label {name}."})
    return {"name": name, "colour": colour, "description": description.strip()[:200]}


@transaction.atomic
def label_create(
    *, name: str, colour: str = Label.Colour.GREY, description: str = "", actor: Actor, source: str
) -> Label:
    values = _label_clean(name=name, colour=colour, description=description, exclude_id=None)
    label = Label.objects.create(**values)
    audit_log_record(actor=actor, source=source, action="label.create", target=label, changes=values)
    return label


@transaction.atomic
def label_update(
    *, label: Label, name: str, colour: str, description: str, actor: Actor, source: str
) -> Label:
    """Change a label; a new name replaces the old one on every conversation that has it."""
    values = _label_clean(name=name, colour=colour, description=description, exclude_id=label.pk)
    before = Label.objects.select_for_update().get(pk=label.pk)
    changes = {
        field: [getattr(before, field), value]
        for field, value in values.items()
        if getattr(before, field) != value
    }
    if not changes:
        return before
    Label.objects.filter(pk=label.pk).update(**values, updated_at=timezone.now())
    if "name" in changes:
        Conversation.objects.filter(labels__contains=[before.name]).update(
            labels=_ArrayReplace(
                "labels", Value(before.name), Value(values["name"]), output_field=_LABELS_FIELD
            ),
            updated_at=timezone.now(),
        )
    label.refresh_from_db()
    audit_log_record(actor=actor, source=source, action="label.update", target=label, changes=changes)
    return label


@transaction.atomic
def label_delete(*, label: Label, actor: Actor, source: str) -> None:
    """Delete a label and take it off the conversations that have it."""
    labels_delete(queryset=Label.objects.filter(pk=label.pk), actor=actor, source=source)


@transaction.atomic
def labels_delete(*, queryset: QuerySet[Label], actor: Actor, source: str) -> int:
    names = list(queryset.select_for_update().values_list("name", flat=True))
    for name in names:
        Conversation.objects.filter(labels__contains=[name]).update(
            labels=_ArrayRemove("labels", Value(name), output_field=_LABELS_FIELD), updated_at=timezone.now()
        )
    deleted, _ = Label.objects.filter(name__in=names).delete()
    if names:
        audit_log_record(
            actor=actor,
            source=source,
            action="label.delete",
            target_repr=f"labels {', '.join(names)}"[:200],
            changes={"names": names},
        )
    return deleted

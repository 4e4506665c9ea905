from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.db.models import Count, Max, Min, Q, Sum

from archival.models import ArchiveBatch, ArchivedConversation
from contacts.models import Contact


@dataclass(frozen=True)
class ArchivedMessages:
    """A conversation's messages that are in the archive, not in the database."""

    count: int
    first_day: date
    last_day: date
    batch_ids: list[int]


def conversation_archived(*, contact: Contact) -> ArchivedMessages | None:
    """The contact's archived messages not restored since; None when there are none."""
    rows = ArchivedConversation.objects.filter(
        contact=contact, batch__state=ArchiveBatch.State.DELETED, batch__restored_at__isnull=True
    )
    summary = rows.aggregate(count=Sum("messages"), first=Min("batch__day"), last=Max("batch__day"))
    if not summary["count"]:
        return None
    return ArchivedMessages(
        count=summary["count"],
        first_day=summary["first"],
        last_day=summary["last"],
        batch_ids=sorted(set(rows.values_list("batch_id", flat=True))),
    )


@dataclass(frozen=True)
class RestorePlan:
    """What restoring some batches would put back: their messages, days and conversations."""

    batch_ids: list[int]
    messages: int
    first_day: date | None
    last_day: date | None
    restored_before: int  # batches restored once already: only what is missing comes back
    conversations: int
    contacts: list[Contact]  # the first few, by name


def archive_batches_restore_plan(*, batch_ids: Iterable[int], contacts_listed: int = 10) -> RestorePlan:
    """The message batches among `batch_ids` that hold archived messages, and what is in them."""
    batches = ArchiveBatch.objects.filter(
        pk__in=list(batch_ids), kind=ArchiveBatch.Kind.MESSAGES, state=ArchiveBatch.State.DELETED
    )
    summary = batches.aggregate(
        messages=Sum("record_count"),
        first=Min("day"),
        last=Max("day"),
        restored=Count("id", filter=Q(restored_at__isnull=False)),
    )
    ids = sorted(batches.values_list("id", flat=True))
    contacts = Contact.objects.filter(
        pk__in=ArchivedConversation.objects.filter(batch_id__in=ids).values("contact_id")
    )
    return RestorePlan(
        batch_ids=ids,
        messages=summary["messages"] or 0,
        first_day=summary["first"],
        last_day=summary["last"],
        restored_before=summary["restored"],
        conversations=contacts.count() if ids else 0,
        contacts=list(contacts.order_by("name", "pk")[:contacts_listed]) if ids else [],
    )

from dataclasses import dataclass
from datetime import date

from django.db.models import Max, Min, Sum

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

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from contacts.models import Contact
from messaging.conversations import conversations_visible_q
from messaging.inbound.apply import TARGET_KINDS
from messaging.models import INBOX_LATEST, INBOX_WAITING, Conversation, Message

CONVERSATION_PAGE_SIZE = 200
CONVERSATION_TABS = ("all", "mine", "unassigned")
CONVERSATION_SORTS = ("waiting", "latest")
# How long a change may take to commit and still move the inbox's token (a transaction's now() is
# its start, so a slow one can commit a row older than the newest one already seen).
CONVERSATION_CHANGES_WINDOW = timedelta(minutes=5)


def message_list(
    *,
    contact_id: int | None = None,
    direction: str | None = None,
    status: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Message]:
    """Messages, newest first; `since` is inclusive, `until` exclusive; a filter left None is not applied."""
    queryset = Message.objects.select_related("contact", "phone_number").order_by("-timestamp", "-id")
    if contact_id is not None:
        queryset = queryset.filter(contact_id=contact_id)
    if direction:
        queryset = queryset.filter(direction=direction)
    if status:
        queryset = queryset.filter(status=status)
    if type:
        queryset = queryset.filter(type=type)
    if since is not None:
        queryset = queryset.filter(timestamp__gte=since)
    if until is not None:
        queryset = queryset.filter(timestamp__lt=until)
    return queryset


def message_get(*, id: int) -> Message | None:
    return Message.objects.select_related("contact", "phone_number").filter(id=id).first()


def message_quoted(*, message: Message) -> Message | None:
    """The message a reply quotes, when Wharf has it."""
    if not message.context_wamid:
        return None
    return Message.objects.filter(wamid=message.context_wamid).first()


def message_media_error(*, message: Message) -> str:
    """What an operator reads when a message's media cannot be shown; empty when nothing is wrong."""
    if message.media_state != Message.MediaState.UNAVAILABLE:
        return ""
    reason = message.media_error.strip() or "the media could not be fetched"
    return f"media unavailable: {reason}"


@dataclass
class ConversationEntry:
    message: Message
    quoted: Message | None = None  # the message a reply quotes
    target: Message | None = None  # for a reaction, edit or revoke shown alone: what it is about
    reactions: list[Message] = field(default_factory=list)
    media_url: str | None = None  # presigned by the view that shows the entry
    media_note: str = ""  # why there is no link (archived media being restored)

    @property
    def media_error(self) -> str:
        return message_media_error(message=self.message)

    @property
    def reaction(self) -> str:
        """The latest emoji on the message (the parser keeps it from every reaction row, as their text)."""
        return self.message.reaction


@dataclass
class ConversationPage:
    contact: Contact
    entries: list[ConversationEntry]
    earlier: Message | None  # the oldest message shown, when older ones exist


def conversation(
    *,
    contact: Contact,
    before_id: int | None = None,
    limit: int = CONVERSATION_PAGE_SIZE,
    conversation_id: int | None = None,
    user=None,
) -> ConversationPage:
    """The contact's latest `limit` messages (or those before message `before_id`), oldest first;
    only those of conversation `conversation_id` (one sender number) when it is given, and only
    those of the sender numbers `user` sees (`conversations_visible_q`) when a user is given.

    Reactions, edits and revokes are attached to the message they are about when it is on the
    page; replies carry the message they quote. Two queries, whatever the number of messages:
    the page, and one for quoted or targeted messages that are not on it.
    """
    queryset = Message.objects.filter(contact=contact)
    if conversation_id is not None:
        queryset = queryset.filter(conversation_id=conversation_id)
    if user is not None:
        queryset = queryset.filter(conversations_visible_q(user))
    if before_id is not None:
        anchor = queryset.filter(id=before_id).values("timestamp", "id").first()
        if anchor is not None:
            queryset = queryset.filter(
                Q(timestamp__lt=anchor["timestamp"]) | Q(timestamp=anchor["timestamp"], id__lt=anchor["id"])
            )
    newest_first = list(queryset.select_related("phone_number").order_by("-timestamp", "-id")[: limit + 1])
    earlier = newest_first[limit - 1] if len(newest_first) > limit else None
    messages = newest_first[:limit][::-1]

    by_wamid = {message.wamid: message for message in messages}
    wanted = {m.context_wamid for m in messages if m.context_wamid} | {
        m.target_wamid for m in messages if m.target_wamid
    }
    missing = wanted - by_wamid.keys()
    others = {m.wamid: m for m in Message.objects.filter(wamid__in=missing)} if missing else {}

    entries: dict[str, ConversationEntry] = {m.wamid: ConversationEntry(message=m) for m in messages}
    shown: list[ConversationEntry] = []
    for message in messages:
        entry = entries[message.wamid]
        if message.context_wamid:
            entry.quoted = by_wamid.get(message.context_wamid) or others.get(message.context_wamid)
        if message.type in TARGET_KINDS and message.target_wamid:
            target_entry = entries.get(message.target_wamid)
            if target_entry is not None:
                if message.type == "reaction":
                    target_entry.reactions.append(message)
                continue
            entry.target = others.get(message.target_wamid)
        shown.append(entry)
    return ConversationPage(contact=contact, entries=shown, earlier=earlier)


def conversation_get(*, id: int, user) -> Conversation | None:
    """The conversation, when `user` sees it (`conversations_visible_q`)."""
    return (
        Conversation.objects.select_related("contact", "phone_number", "assignee")
        .filter(conversations_visible_q(user), id=id)
        .first()
    )


def conversation_list(
    *,
    user,
    tab: str = "all",
    status: str | None = None,
    phone_number: int | None = None,
    label: str | None = None,
    assignee: int | None = None,
    sort: str = "waiting",
    q: str | None = None,
) -> QuerySet[Conversation]:
    """The inbox: conversations with their contact, number and assignee joined, and the latest
    message's preview as a column of the row (`last_message_preview`, written by the statements
    that move `last_message_at`, so a page costs no query per row).

    `tab` is all, mine (assigned to `user`) or unassigned; `phone_number` and `assignee` are ids;
    "waiting" puts the longest-waiting first (then the latest), "latest" the latest message first;
    `q` looks in the contact's name, phone and WhatsApp id and in the conversation's message text.
    Only the conversations `user` sees (`conversations_visible_q`): so are the tabs' counts and the
    changes token, which read through here.
    """
    queryset = Conversation.objects.select_related("contact", "phone_number", "assignee").filter(
        conversations_visible_q(user)
    )
    if tab != "all":
        queryset = queryset.filter(conversation_tab_q(user=user, tab=tab))
    if status:
        queryset = queryset.filter(status=status)
    if phone_number is not None:
        queryset = queryset.filter(phone_number_id=phone_number)
    if label:
        queryset = queryset.filter(labels__contains=[label])
    if assignee is not None:
        queryset = queryset.filter(assignee_id=assignee)
    if q and q.strip():
        term = q.strip()
        said = Message.objects.filter(conversation=OuterRef("pk"), text__icontains=term)
        queryset = queryset.filter(
            Q(contact__name__icontains=term)
            | Q(contact__phone__icontains=term)
            | Q(contact__wa_id__icontains=term)
            | Exists(said)
        )
    return queryset.order_by(*(INBOX_LATEST if sort == "latest" else INBOX_WAITING))


def conversations_hidden(*, contact_id: int, user) -> bool:
    """Whether the contact has conversations and `user` sees none of them (one query: the live
    conversation page asks at every poll)."""
    counts = Conversation.objects.filter(contact_id=contact_id).aggregate(
        every=Count("id"), visible=Count("id", filter=conversations_visible_q(user))
    )
    return counts["every"] > 0 and counts["visible"] == 0


def conversation_tab_q(*, user, tab: str) -> Q:
    """What a tab holds: mine (assigned to `user`), unassigned, or all."""
    if tab == "mine":
        return Q(assignee=user)
    if tab == "unassigned":
        return Q(assignee__isnull=True)
    return Q()


def conversation_counts(*, user, **filters) -> dict[str, int]:
    """How many conversations each tab holds under the inbox's other filters, and how many of them
    have unread messages (`unread`); one query."""
    counts = {tab: Count("id", filter=conversation_tab_q(user=user, tab=tab)) for tab in CONVERSATION_TABS}
    return (
        conversation_list(user=user, tab="all", **filters)
        .order_by()
        .aggregate(**counts, unread=Count("id", filter=Q(unread_count__gt=0)))
    )


def _changes_token(latest: datetime | None, count: int) -> str:
    """The latest change in microseconds and how many rows changed recently (see below)."""
    return f"{int(latest.timestamp() * 1_000_000) if latest else 0}-{count}"


def conversation_changes_token(*, user) -> str:
    """A token that moves whenever a conversation `user` may see changes: the latest `updated_at`
    and how many rows changed within CONVERSATION_CHANGES_WINDOW. The count catches a row committed
    late with an older time; a row leaving the window moves it once more (one spare refresh).
    One query on the `updated_at` index, whatever the number of conversations."""
    since = timezone.now() - CONVERSATION_CHANGES_WINDOW
    recent = (
        conversation_list(user=user)
        .order_by()
        .filter(updated_at__gte=since)
        .aggregate(latest=Max("updated_at"), count=Count("id"))
    )
    return _changes_token(recent["latest"], recent["count"])


def conversations_unread(
    *, contact: Contact, user, phone_number_id: int | None = None
) -> QuerySet[Conversation]:
    """The contact's conversations with unread messages that `user` sees, those with
    `phone_number_id` when given."""
    queryset = Conversation.objects.filter(conversations_visible_q(user), contact=contact, unread_count__gt=0)
    if phone_number_id is not None:
        queryset = queryset.filter(phone_number_id=phone_number_id)
    return queryset


_TIMELINE_CHANGES_SQL = f"""
    SELECT max(updated_at), count(*) FROM (
        SELECT updated_at FROM {Message._meta.db_table}
        WHERE contact_id = %(contact)s AND updated_at >= %(since)s
        UNION ALL
        SELECT updated_at FROM {Conversation._meta.db_table}
        WHERE contact_id = %(contact)s AND updated_at >= %(since)s
    ) AS changed
"""


def conversation_timeline_token(*, contact_id: int) -> str:
    """A token that moves whenever the contact's conversation page would show something new: a
    message arrives or changes (a status, media stored, an edit) or one of its conversations does.
    As the inbox's token: the latest `updated_at` and how many rows changed within
    CONVERSATION_CHANGES_WINDOW, so a row committed late with an older time still moves it. One
    query: the messages' `(contact, updated_at)` index and the few conversations of the contact."""
    with connection.cursor() as cursor:
        since = timezone.now() - CONVERSATION_CHANGES_WINDOW
        cursor.execute(_TIMELINE_CHANGES_SQL, {"contact": contact_id, "since": since})
        latest, count = cursor.fetchone()
    return _changes_token(latest, count)

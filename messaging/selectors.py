from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import CharField, Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from contacts.models import Contact
from core.models import AuditLog
from messaging.activity import ACTIVITY_ACTIONS, activity_user_ids, conversation_activity
from messaging.calls import call_preview, calls_of_conversations
from messaging.conversations import QUIET_KINDS, conversations_visible_q, message_preview
from messaging.inbound.apply import TARGET_KINDS
from messaging.models import (
    INBOX_LATEST,
    INBOX_WAITING,
    AnalyticsEvent,
    Call,
    Conversation,
    ConversationNote,
    Message,
    PendingStatus,
    SendAttempt,
)

CONVERSATION_PAGE_SIZE = 200
CONVERSATION_TABS = ("all", "mine", "unassigned")
CONVERSATION_SORTS = ("waiting", "latest")
# How long a change may take to commit and still move the inbox's token (a transaction's now() is
# its start, so a slow one can commit a row older than the newest one already seen).
CONVERSATION_CHANGES_WINDOW = timedelta(minutes=5)
NOTIFICATIONS_NEW_MAX = 5


def message_list(
    *,
    contact_id: int | None = None,
    direction: str | None = None,
    status: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    user=None,
) -> QuerySet[Message]:
    """Messages, newest first; `since` is inclusive, `until` exclusive; a filter left None is not
    applied. With `user`, only the messages of the sender numbers that user sees."""
    queryset = Message.objects.select_related("contact", "phone_number").order_by("-timestamp", "-id")
    if user is not None:
        queryset = queryset.filter(conversations_visible_q(user))
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


def message_get(*, id: int, user=None) -> Message | None:
    """The message; with `user`, only when that user sees its sender number's conversations."""
    queryset = Message.objects.select_related("contact", "phone_number")
    if user is not None:
        queryset = queryset.filter(conversations_visible_q(user))
    return queryset.filter(id=id).first()


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


STATUSES_COUNTED_MAX = 1000  # statuses of a number counted since a request left, at most


@dataclass
class DoubtEvidence:
    """What an operator weighs before resending or abandoning an in-doubt message."""

    attempts: list[SendAttempt]
    request_left_at: datetime | None  # when its latest attempt was cleared to leave (None: it never left)
    own_status: str  # the latest status Meta posted for it ("" when none came)
    own_status_at: datetime | None  # when that status was received
    number_status: str  # the latest status Meta posted for any message of its sender number
    number_status_at: datetime | None  # when that one was received
    number_statuses_since: int  # statuses received for its number since its request left (capped)

    @property
    def verdict(self) -> str:
        """A reading of the evidence, never a proof: Meta can post a status late, or not at all."""
        if self.own_status:
            return "Meta posted a status for this message: it reached Meta. Abandon it rather than resend it."
        if self.number_statuses_since:
            return (
                "Meta has posted statuses for this number's messages since this request left, and none for "
                "this one: most likely it never reached Meta, and resending it will not send it twice."
            )
        return (
            "No status for this number has arrived since this request left: statuses may not be arriving "
            "(look at the webhook), so the silence about this message says nothing yet."
        )


def message_doubt_evidence(*, message: Message) -> DoubtEvidence:
    """Whether Meta's statuses are arriving for the message's sender number, the last one seen for
    the message itself (by its wamid, or by our id carried as `biz_opaque_callback_data`), and when
    its request left (its attempts)."""
    attempts = list(SendAttempt.objects.filter(message=message).order_by("started_at", "id"))
    left_at = attempts[-1].cleared_at if attempts else None
    statuses = AnalyticsEvent.objects.filter(kind=AnalyticsEvent.Kind.STATUS_CHANGED)
    own = statuses.filter(message_id=message.pk).order_by("-created_at").first()
    own_status, own_at = (own.status, own.created_at) if own else ("", None)
    if not own_status:
        pending = (
            PendingStatus.objects.filter(payload__biz_opaque_callback_data=str(message.pk))
            .order_by("-created_at")
            .first()
        )
        if pending is not None:
            own_status, own_at = pending.status, pending.created_at
    number_status, number_at, since = "", None, 0
    if message.phone_number_id is not None:
        of_number = statuses.filter(phone_number_id=message.phone_number_id)
        latest = of_number.order_by("-created_at").first()
        if latest is not None:
            number_status, number_at = latest.status, latest.created_at
        if left_at is not None:
            later = of_number.filter(created_at__gt=left_at).exclude(message_id=message.pk)
            since = later.values("pk")[:STATUSES_COUNTED_MAX].count()
    return DoubtEvidence(
        attempts=attempts,
        request_left_at=left_at,
        own_status=own_status,
        own_status_at=own_at,
        number_status=number_status,
        number_status_at=number_at,
        number_statuses_since=since,
    )


@dataclass
class ConversationEntry:
    """One entry of a conversation's timeline: `kind` says what it is ("message", "note",
    "activity"), `at` where it falls; a message is `message`, anything else `item` (the note, the
    ConversationActivity)."""

    kind: str
    at: datetime
    message: Message | None = None
    item: Any = None
    quoted: Message | None = None  # the message a reply quotes
    target: Message | None = None  # for a reaction, edit or revoke shown alone: what it is about
    reactions: list[Message] = field(default_factory=list)
    media_url: str | None = None  # presigned by the view that shows the entry
    media_note: str = ""  # why there is no link (archived media being restored)

    @property
    def media_error(self) -> str:
        return message_media_error(message=self.message) if self.message else ""

    @property
    def reaction(self) -> str:
        """The latest emoji on the message (the parser keeps it from every reaction row, as their text)."""
        return self.message.reaction if self.message else ""


@dataclass
class ConversationPage:
    contact: Contact
    entries: list[ConversationEntry]
    earlier: Message | None  # the oldest message shown, when older ones exist

    @property
    def messages(self) -> list[Message]:
        return [entry.message for entry in self.entries if entry.message is not None]


def _within(queryset: QuerySet, field: str, since: datetime | None, until: datetime | None) -> QuerySet:
    if since is not None:
        queryset = queryset.filter(**{f"{field}__gte": since})
    if until is not None:
        queryset = queryset.filter(**{f"{field}__lt": until})
    return queryset


def _notes(
    *, conversations: QuerySet[Conversation], since: datetime | None, until: datetime | None
) -> list[ConversationEntry]:
    """The conversations' private notes: one query."""
    notes = _within(
        ConversationNote.objects.filter(conversation__in=conversations), "created_at", since, until
    )
    return [
        ConversationEntry(kind="note", at=note.created_at, item=note)
        for note in notes.select_related("author").order_by("created_at", "id")
    ]


def _activity(
    *, conversations: QuerySet[Conversation], since: datetime | None, until: datetime | None
) -> list[ConversationEntry]:
    """Who changed the conversations, from their audit rows (messaging.activity): one query, and
    one more for the assignees they name."""
    keys = conversations.annotate(key=Cast("pk", output_field=CharField())).values("key")
    logs = _within(
        AuditLog.objects.filter(
            target_type=ContentType.objects.get_for_model(Conversation),
            target_id__in=keys,
            action__in=ACTIVITY_ACTIONS,
        ),
        "created_at",
        since,
        until,
    )
    logs = list(logs.select_related("actor").order_by("created_at", "id"))
    named = activity_user_ids(logs)
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=named)} if named else {}
    entries = []
    for log in logs:
        activity = conversation_activity(log=log, users=users)
        if activity is not None:
            entries.append(ConversationEntry(kind="activity", at=log.created_at, item=activity))
    return entries


@dataclass
class TimelineCall:
    """A call in a timeline: the record, and what the timeline says of it ("Missed call" ...)."""

    call: Call
    text: str


def _calls(
    *, conversations: QuerySet[Conversation], since: datetime | None, until: datetime | None
) -> list[ConversationEntry]:
    """The conversations' WhatsApp calls, by when they started: one query."""
    return [
        ConversationEntry(
            kind="call", at=call.started_at, item=TimelineCall(call=call, text=call_preview(call))
        )
        for call in calls_of_conversations(conversations=conversations, since=since, until=until)
    ]


# What the timeline shows beside messages, each a few queries whatever the page's size: a source
# gives the entries of `conversations` that fall within [since, until). A new kind is one more here.
TIMELINE_SOURCES = (_notes, _activity, _calls)
_KIND_ORDER = {"message": 0, "note": 1}  # at the same time: the message, then notes, then the rest


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

    The same conversations' notes and activity (TIMELINE_SOURCES) are merged in by time: those
    from the page's oldest message (from the start when it reaches the first) up to the message
    the page comes before (to now on the latest page), so each is on exactly one page. A few more
    queries, as many whatever the number of entries.
    """
    queryset = Message.objects.filter(contact=contact)
    conversations = Conversation.objects.filter(contact=contact)
    if conversation_id is not None:
        queryset = queryset.filter(conversation_id=conversation_id)
        conversations = conversations.filter(pk=conversation_id)
    if user is not None:
        queryset = queryset.filter(conversations_visible_q(user))
        conversations = conversations.filter(conversations_visible_q(user))
    anchor = None
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

    entries: dict[str, ConversationEntry] = {
        m.wamid: ConversationEntry(kind="message", at=m.timestamp, message=m) for m in messages
    }
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

    since = earlier.timestamp if earlier is not None else None
    until = anchor["timestamp"] if anchor is not None else None
    for source in TIMELINE_SOURCES:
        shown.extend(source(conversations=conversations, since=since, until=until))
    shown.sort(key=lambda entry: (entry.at, _KIND_ORDER.get(entry.kind, 2)))  # stable: ids stay in order
    return ConversationPage(contact=contact, entries=shown, earlier=earlier)


def conversation_notes(*, conversation: Conversation) -> QuerySet[ConversationNote]:
    """The conversation's private notes, oldest first, with their authors."""
    return (
        ConversationNote.objects.filter(conversation=conversation)
        .select_related("author")
        .order_by("created_at", "id")
    )


def conversation_get(*, id: int, user) -> Conversation | None:
    """The conversation, when `user` sees it (`conversations_visible_q`)."""
    return (
        Conversation.objects.select_related("contact", "phone_number", "assignee")
        .filter(conversations_visible_q(user), id=id)
        .first()
    )


def conversation_of(*, contact_id: int, phone_number_id: int, user) -> Conversation | None:
    """The contact's conversation with the sender number, when `user` sees it."""
    return (
        Conversation.objects.select_related("contact", "phone_number")
        .filter(conversations_visible_q(user), contact_id=contact_id, phone_number_id=phone_number_id)
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
    Only the conversations `user` sees (`conversations_visible_q`): so are the tabs' counts, which
    read through here, and the changes token.
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
    """How many conversations each tab holds under the inbox's other filters; one query."""
    counts = {tab: Count("id", filter=conversation_tab_q(user=user, tab=tab)) for tab in CONVERSATION_TABS}
    return conversation_list(user=user, tab="all", **filters).order_by().aggregate(**counts)


def _changes_token(latest: datetime | None, count: int) -> str:
    """The latest change in microseconds and how many rows changed recently (see below)."""
    return f"{int(latest.timestamp() * 1_000_000) if latest else 0}-{count}"


def conversation_changes_token(*, user) -> str:
    """A token that moves whenever a conversation `user` may see changes: the latest `updated_at`
    and how many rows changed within CONVERSATION_CHANGES_WINDOW. The count catches a row committed
    late with an older time; a row leaving the window moves it once more (one spare refresh).
    One query on the `updated_at` index, whatever the number of conversations: the live pages ask
    every few seconds, so it filters by the visibility rule alone (the inbox's tab "all" without
    filters) rather than building the inbox's list."""
    since = timezone.now() - CONVERSATION_CHANGES_WINDOW
    recent = Conversation.objects.filter(conversations_visible_q(user), updated_at__gte=since).aggregate(
        latest=Max("updated_at"), count=Count("id")
    )
    return _changes_token(recent["latest"], recent["count"])


def conversations_calling(*, user) -> QuerySet[Conversation]:
    """The conversations that call for `user`: those they see, assigned to them or to nobody, with
    unread messages. Their number is the unread count of the admin's title on every page."""
    return conversation_list(user=user).filter(
        Q(assignee=user) | Q(assignee__isnull=True), unread_count__gt=0
    )


@dataclass
class NotificationEntry:
    conversation: Conversation
    message: Message  # the customer's latest message

    @property
    def key(self) -> str:
        """Names the news: notified once, whichever page or tab asks."""
        return f"{self.conversation.pk}:{self.message.pk}"

    @property
    def preview(self) -> str:
        return message_preview(kind=self.message.type, text=self.message.text)


@dataclass
class ConversationNotifications:
    token: str
    changed: bool  # False: nothing moved since the caller's token, and nothing else is answered
    unread: int = 0
    new: list[NotificationEntry] = field(default_factory=list)


def conversation_notifications(*, user, since: str = "") -> ConversationNotifications:
    """What the admin's title and the browser's notifications show `user`: how many conversations
    call for them (`conversations_calling`), and those of them that moved within
    CONVERSATION_CHANGES_WINDOW, latest first, with the customer's latest message (at most
    NOTIFICATIONS_NEW_MAX). The page notifies each entry's `key` once, so an entry answered again is
    not news. When the inbox's changes token equals `since`, nothing the user sees moved: one
    indexed query answers that. Otherwise three more: the count, the entries, their messages."""
    token = conversation_changes_token(user=user)
    if since and since == token:
        return ConversationNotifications(token=token, changed=False)
    calling = conversations_calling(user=user)
    latest = Message.objects.filter(conversation=OuterRef("pk"), direction=Message.Direction.INBOUND).exclude(
        type__in=QUIET_KINDS
    )
    moved = list(
        calling.filter(updated_at__gte=timezone.now() - CONVERSATION_CHANGES_WINDOW)
        .annotate(latest_inbound_id=Subquery(latest.order_by("-id").values("id")[:1]))
        .order_by(F("last_message_at").desc(nulls_last=True), "-id")[:NOTIFICATIONS_NEW_MAX]
    )
    messages = Message.objects.in_bulk([c.latest_inbound_id for c in moved if c.latest_inbound_id])
    return ConversationNotifications(
        token=token,
        changed=True,
        unread=calling.order_by().count(),
        new=[
            NotificationEntry(conversation=c, message=messages[c.latest_inbound_id])
            for c in moved
            if c.latest_inbound_id in messages
        ],
    )


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
    message arrives or changes (a status, media stored, an edit) or one of its conversations does
    (every operator's action and every note moves the conversation's `updated_at`, as the wake-up does).
    As the inbox's token: the latest `updated_at` and how many rows changed within
    CONVERSATION_CHANGES_WINDOW, so a row committed late with an older time still moves it. One
    query: the messages' `(contact, updated_at)` index and the few conversations of the contact."""
    with connection.cursor() as cursor:
        since = timezone.now() - CONVERSATION_CHANGES_WINDOW
        cursor.execute(_TIMELINE_CHANGES_SQL, {"contact": contact_id, "since": since})
        latest, count = cursor.fetchone()
    return _changes_token(latest, count)

import re

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F
from django.db.models.functions import Now

from contacts.models import Contact


class PhoneNumber(models.Model):
    """A sender number of a WhatsApp Business Account; webhooks are routed by `phone_number_id`."""

    phone_number_id = models.CharField(max_length=64, unique=True)
    display_phone_number = models.CharField(max_length=32, blank=True, default="")
    verified_name = models.CharField(max_length=200, blank=True, default="")
    waba_id = models.CharField("WABA id", max_length=64, blank=True, default="", db_index=True)
    rate_limit_per_s = models.PositiveIntegerField(default=80)
    # Meta's, read by messaging.numbers (sync and the phone_number_quality_update webhook).
    quality_rating = models.CharField(max_length=16, blank=True, default="")
    messaging_limit = models.CharField(max_length=32, blank=True, default="")
    throughput_level = models.CharField(max_length=16, blank=True, default="")
    name_status = models.CharField("display name status", max_length=32, blank=True, default="")
    # When Meta last said what the rating and limit are: an older report never overwrites a newer one.
    standing_at = models.DateTimeField("quality as of", null=True, blank=True)
    synced_at = models.DateTimeField("last synced from Meta", null=True, blank=True)
    # Sending stops while paused (Meta answered 190: the token no longer works for this number).
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=255, blank=True, default="")
    read_receipts = models.BooleanField(
        "Send read receipts",
        default=True,
        help_text="Opening a conversation marks the customer's messages read (blue ticks).",
    )
    # Whose members see this number's conversations (messaging.conversations.phone_numbers_visible_q);
    # none: every operator who may view conversations.
    groups = models.ManyToManyField(
        "auth.Group",
        blank=True,
        related_name="phone_numbers",
        help_text="Members of these groups see this number's conversations and may be assigned them. "
        "None: everyone who may view conversations.",
    )
    # messaging.conversations.conversation_auto_assign
    auto_assign = models.BooleanField(
        "assign automatically",
        default=False,
        help_text="A conversation the customer opens (or reopens) without an assignee goes to the "
        "available operator who sees this number and was assigned one least recently.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_phone_number"]

    def __str__(self) -> str:
        return self.display_phone_number or self.phone_number_id


class OperatorStatus(models.Model):
    """Whether an operator takes automatically assigned conversations, and when they last got one
    (the round-robin's order). No row: away."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="operator_status"
    )
    available = models.BooleanField(default=False)
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "operator statuses"

    def __str__(self) -> str:
        return f"{self.user} ({'available' if self.available else 'away'})"


class InboundEvent(models.Model):
    """One webhook body exactly as Meta sent it: the record that makes inbound lossless.

    A body is stored before it is answered, once (`body_sha256` is unique), and processed later
    by workers that claim pending rows with SKIP LOCKED.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        PROCESSED = "processed"
        FAILED = "failed"
        REJECTED = "rejected"  # signed, but not a JSON object: kept for inspection

    body = models.BinaryField()
    body_sha256 = models.CharField(max_length=64, unique=True)
    payload = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    fields = ArrayField(models.CharField(max_length=64), blank=True, default=list)
    unknown_phone_number = models.BooleanField(default=False)
    unknown_fields = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=models.Q(state="pending"),
                name="inboundevent_pending",
            ),
            models.Index(fields=["state", "received_at"], name="inboundevent_state"),
        ]

    def __str__(self) -> str:
        return f"event {self.pk} ({self.state})"


# A label's name: a short slug (lower-case letters, digits, - and _), as conversations carry them.
LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class Label(models.Model):
    """A label operators may put on conversations: the catalogue `Conversation.labels` draws from.

    Conversations keep the names (an array the inbox filters on with one index); the services keep
    the two in step: a renamed label is renamed on its conversations, a deleted one taken off them."""

    class Colour(models.TextChoices):
        GREY = "grey"
        BLUE = "blue"
        GREEN = "green"
        YELLOW = "yellow"
        ORANGE = "orange"
        RED = "red"
        PURPLE = "purple"
        TEAL = "teal"

    name = models.CharField(
        max_length=32,
        unique=True,
        validators=[
            RegexValidator(
                LABEL_PATTERN, "Up to 32 lower-case letters, digits, - or _, starting with a letter or digit."
            )
        ],
        help_text="Lower-case letters, digits, - and _ (vip, refund, follow-up).",
    )
    colour = models.CharField(max_length=16, choices=Colour.choices, default=Colour.GREY)
    description = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# The inbox's orders: the longest waiting first (then the latest), or the latest message first.
INBOX_LATEST = (F("last_message_at").desc(nulls_last=True), F("id").desc())
INBOX_WAITING = (F("waiting_since").asc(nulls_last=True), *INBOX_LATEST)


class Conversation(models.Model):
    """A contact's thread with one sender number: what the inbox lists and operators work on.

    Messages whose sender number is unknown (an event for a phone_number_id Wharf does not know)
    share one conversation per contact with no number: the unique constraint treats NULL as a value.
    Counters and times are written only by single UPSERT/UPDATE statements in
    messaging/conversations.py, never read-modify-write.
    """

    class Status(models.TextChoices):
        OPEN = "open"  # the customer waits for us
        PENDING = "pending"  # we answered; waiting on the customer
        RESOLVED = "resolved"
        SNOOZED = "snoozed"  # back to open at snoozed_until (beat), or when the customer writes

    class Priority(models.TextChoices):
        NONE = "none"
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        URGENT = "urgent"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="conversations")
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    labels = ArrayField(models.CharField(max_length=32), blank=True, default=list)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NONE)
    unread_count = models.PositiveIntegerField(default=0)  # inbound messages no operator has seen
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    last_message_preview = models.CharField(max_length=200, blank=True, default="")
    # When the customer's oldest unanswered message arrived; None once an operator answered.
    waiting_since = models.DateTimeField(null=True, blank=True)
    # When Meta was last asked to show the customer a typing indicator (messaging/receipts.py);
    # never touches `updated_at`, the live pages' token.
    typing_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "phone_number"], nulls_distinct=False, name="conversation_unique"
            ),
        ]
        indexes = [
            # The inbox's two sorts (messaging.selectors.conversation_list) column for column, with
            # and without a status: a first page reads 50 index entries instead of sorting every row.
            models.Index(*INBOX_WAITING, name="inbox_waiting"),
            models.Index("status", *INBOX_WAITING, name="inbox_status_waiting"),
            models.Index(*INBOX_LATEST, name="inbox_latest"),
            models.Index("status", *INBOX_LATEST, name="inbox_status_latest"),
            # Its tabs' counts (conversation_counts) from the index alone, without the rows.
            models.Index(
                fields=["status", "phone_number"],
                include=["assignee", "unread_count", "id"],
                name="inbox_counts",
            ),
            # The conversations calling for an operator (conversations_calling: the admin title's
            # unread count, on every page) among the few with unread messages, not every row.
            models.Index(
                fields=["assignee", "phone_number"],
                condition=models.Q(unread_count__gt=0),
                name="conversation_calling",
            ),
            models.Index(fields=["assignee", "status"], name="conversation_assignee_status"),
            models.Index(fields=["last_message_at"], name="conversation_latest"),
            models.Index(fields=["updated_at"], name="conversation_updated"),  # the inbox's live token
            models.Index(
                fields=["snoozed_until"], condition=models.Q(status="snoozed"), name="conversation_snoozed"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact} via {self.phone_number or 'no number'}"


class Message(models.Model):
    """A WhatsApp message, inbound or outbound, keyed by Meta's `wamid`."""

    class Direction(models.TextChoices):
        INBOUND = "inbound"
        OUTBOUND = "outbound"

    class Status(models.TextChoices):
        RECEIVED = "received"  # inbound
        QUEUED = "queued"  # outbound, waiting for its due time and a rate-limit slot
        SENDING = "sending"  # claimed by a worker; a request to Meta may be under way
        IN_DOUBT = "in_doubt"  # its worker died after a request may have reached Meta
        ABANDONED = "abandoned"  # an operator chose not to resend an in-doubt message
        SENT = "sent"
        DELIVERED = "delivered"
        READ = "read"
        PLAYED = "played"
        DELETED = "deleted"
        FAILED = "failed"

    class MediaState(models.TextChoices):
        NONE = ""
        PENDING = "pending"
        STORED = "stored"
        UNAVAILABLE = "unavailable"

    wamid = models.CharField(max_length=255, unique=True)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    type = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="messages")
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    text = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    timestamp = models.DateTimeField(db_index=True)

    # A reply's quoted message, and the message a reaction, edit or revoke is about.
    context_wamid = models.CharField(max_length=255, blank=True, default="", db_index=True)
    target_wamid = models.CharField(max_length=255, blank=True, default="", db_index=True)
    reaction = models.CharField(max_length=32, blank=True, default="")  # latest emoji on this message
    edited_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    media_id = models.CharField(max_length=128, blank=True, default="")
    media_mime_type = models.CharField(max_length=128, blank=True, default="")
    media_sha256 = models.CharField(max_length=128, blank=True, default="")
    media_size = models.PositiveBigIntegerField(null=True, blank=True)
    media_filename = models.CharField(max_length=255, blank=True, default="")
    media_key = models.CharField(max_length=512, blank=True, default="")
    media_state = models.CharField(max_length=16, choices=MediaState.choices, blank=True, default="")
    media_error = models.TextField(blank=True, default="")

    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True, default="")
    error_details = models.TextField(blank=True, default="")

    # Outbound sending: who asked, with which Idempotency-Key, when it is next due, how often tried.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    due_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=128, blank=True, default="")

    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    played_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["timestamp", "id"]
        indexes = [
            models.Index(fields=["contact", "timestamp"], name="message_conversation"),
            models.Index(fields=["contact", "updated_at"], name="message_contact_updated"),  # live page
            models.Index(
                fields=["phone_number", "due_at", "id"],
                condition=models.Q(status="queued"),
                name="message_outbound_queued",
            ),
            models.Index(  # the backlog's in-doubt figures (messaging/backlog.py)
                fields=["claimed_at"], condition=models.Q(status="in_doubt"), name="message_in_doubt"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="message_idempotency_key_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.type} {self.wamid}"


class Call(models.Model):
    """A WhatsApp call with a contact, keyed by Meta's call id and kept current by the `calls`
    webhooks (messaging/calls.py).

    Only facts are written, each moving one way (`started_at` earliest, `ended_at` first, ...), so
    events applied twice or out of order leave the same row; `status` and `missed` are computed
    from them by PostgreSQL. Meta's states map to `status` thus: a call that has not ended is
    ringing (connect, RINGING), or ongoing once connected (ACCEPTED, or a terminate with a
    duration); an ended one failed (terminate FAILED), completed (it connected), was rejected
    (REJECTED by the user), missed (an inbound call nobody answered) or unanswered (an outbound
    call the user did not pick up). `missed` is any inbound call that ended without connecting.
    """

    class Direction(models.TextChoices):
        INBOUND = "inbound"  # Meta's USER_INITIATED
        OUTBOUND = "outbound"  # BUSINESS_INITIATED

    class Status(models.TextChoices):
        RINGING = "ringing"
        ONGOING = "ongoing"
        COMPLETED = "completed"
        MISSED = "missed"
        UNANSWERED = "unanswered"
        REJECTED = "rejected"
        FAILED = "failed"

    call_id = models.CharField(max_length=255, unique=True)
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="calls")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices)
    from_number = models.CharField(max_length=32, blank=True, default="")
    to_number = models.CharField(max_length=32, blank=True, default="")
    started_at = models.DateTimeField()  # the earliest time any event gives
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.PositiveIntegerField("duration (s)", null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)  # the user declined a business call
    end_status = models.CharField(max_length=16, blank=True, default="")  # Meta's: COMPLETED, FAILED
    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True, default="")
    error_details = models.TextField(blank=True, default="")
    status = models.GeneratedField(
        expression=models.Case(
            models.When(end_status="FAILED", then=models.Value(Status.FAILED)),
            models.When(
                connected_at__isnull=False,
                then=models.Case(
                    models.When(ended_at__isnull=True, then=models.Value(Status.ONGOING)),
                    default=models.Value(Status.COMPLETED),
                ),
            ),
            models.When(rejected_at__isnull=False, then=models.Value(Status.REJECTED)),
            models.When(ended_at__isnull=True, then=models.Value(Status.RINGING)),
            models.When(direction=Direction.INBOUND, then=models.Value(Status.MISSED)),
            default=models.Value(Status.UNANSWERED),
        ),
        output_field=models.CharField(max_length=16, choices=Status.choices),
        db_persist=True,
    )
    missed = models.GeneratedField(
        expression=models.Q(direction=Direction.INBOUND, ended_at__isnull=False, connected_at__isnull=True),
        output_field=models.BooleanField(),
        db_persist=True,
    )
    payload = models.JSONField(default=dict, blank=True)  # the latest event, as Meta sent it
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["phone_number", "-started_at"], name="call_number_started"),
            models.Index(fields=["-started_at"], name="call_started"),
            models.Index(fields=["conversation", "started_at"], name="call_conversation"),
            models.Index(fields=["contact", "started_at"], name="call_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} call {self.call_id}"


class ConversationNote(models.Model):
    """An operator's private note on a conversation: shown in its timeline, never sent to the customer."""

    BODY_MAX_LENGTH = 4000

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField(max_length=BODY_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="conversationnote_timeline")]

    def __str__(self) -> str:
        return f"note {self.pk} on conversation {self.conversation_id}"


class PendingStatus(models.Model):
    """A status for a `wamid` not known yet: applied when its message appears."""

    wamid = models.CharField(max_length=255, db_index=True)
    status = models.CharField(max_length=16)
    timestamp = models.DateTimeField()
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["wamid", "status", "timestamp"], name="pendingstatus_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="pendingstatus_created")]  # retention

    def __str__(self) -> str:
        return f"{self.status} for {self.wamid}"


class WebhookEvent(models.Model):
    """A change other than messages and statuses (template, quality, account, calls ...), typed
    by its `field` and `event`; a field Wharf does not know is kept raw with `known=False`."""

    inbound_event = models.ForeignKey(InboundEvent, on_delete=models.CASCADE, related_name="webhook_events")
    position = models.PositiveIntegerField()  # the change's place in the body
    field = models.CharField(max_length=64, db_index=True)
    event = models.CharField(max_length=64, blank=True, default="")
    known = models.BooleanField(default=True)
    waba_id = models.CharField(max_length=64, blank=True, default="")
    phone_number = models.ForeignKey(PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL)
    value = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["inbound_event", "position"], name="webhookevent_unique")
        ]
        indexes = [models.Index(fields=["created_at"], name="webhookevent_created")]  # retention

    def __str__(self) -> str:
        return f"{self.field} {self.event}".strip()


class AnalyticsEvent(models.Model):
    """One row per inbound message and per status change, for reporting."""

    class Kind(models.TextChoices):
        MESSAGE_RECEIVED = "message_received"
        STATUS_CHANGED = "status_changed"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    wamid = models.CharField(max_length=255)
    status = models.CharField(max_length=16, blank=True, default="")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    contact_id = models.BigIntegerField(null=True, blank=True)
    phone_number_id = models.BigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(db_index=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "wamid", "status"], name="analyticsevent_unique")
        ]
        # The latest statuses of a sender number: whether Meta's statuses are arriving.
        indexes = [models.Index(fields=["phone_number_id", "created_at"], name="analyticsevent_number")]

    def __str__(self) -> str:
        return f"{self.kind} {self.wamid} {self.status}".strip()


class WakeUp(models.Model):
    """Coalesces wake-ups: a queue gets a new SQS message only when none is outstanding.

    A webhook flips `pending` from false to true and, only if it did, enqueues the drain task;
    the drain clears `pending` before it claims anything, so an event committed after the clear
    flips it again and wakes another drain. One SQS message thus covers every event that arrives
    while a drain is queued.
    """

    name = models.CharField(max_length=32, primary_key=True)
    pending = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} ({'pending' if self.pending else 'idle'})"


class SendAttempt(models.Model):
    """One try at handing an outbound message to Meta: when, the answer, how long it took."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        RETRY = "retry"
        FAILED = "failed"
        IN_DOUBT = "in_doubt"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attempts_made")
    started_at = models.DateTimeField()
    # When its request was cleared to leave, committed just before it may leave; NULL: it never
    # left (messaging/outbound/__init__.py, steps 4 and 5). A row inserted without it is cleared.
    cleared_at = models.DateTimeField(null=True, blank=True, db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=128, blank=True, default="")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True, default="")
    error_details = models.TextField(blank=True, default="")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")

    class Meta:
        ordering = ["message", "started_at", "id"]

    def __str__(self) -> str:
        return f"attempt on {self.message_id} at {self.started_at:%H:%M:%S} ({self.outcome or 'open'})"


class Template(models.Model):
    """A message template of a WABA, as Meta holds it (synced, and kept current by webhooks)."""

    waba_id = models.CharField("WABA id", max_length=64)
    meta_id = models.CharField(max_length=64, blank=True, default="")
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16)
    status = models.CharField(max_length=32, blank=True, default="")  # APPROVED, PENDING, PAUSED ...
    category = models.CharField(max_length=32, blank=True, default="")
    quality_score = models.CharField(max_length=16, blank=True, default="")
    # Meta's reason when it rejected the template (PROMOTIONAL, INVALID_FORMAT ...); "" otherwise.
    rejected_reason = models.CharField(max_length=64, blank=True, default="")
    components = models.JSONField(default=list, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "language"]
        constraints = [
            models.UniqueConstraint(fields=["waba_id", "name", "language"], name="template_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"


class RecipientPace(models.Model):
    """When a sender may next write to one recipient (Meta's pair limit, error 131056)."""

    phone_number = models.ForeignKey(PhoneNumber, on_delete=models.CASCADE)
    recipient = models.CharField(max_length=64)
    next_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phone_number", "recipient"], name="recipientpace_unique")
        ]

    def __str__(self) -> str:
        return f"{self.phone_number_id} -> {self.recipient}"


class CannedResponse(models.Model):
    """A prepared answer operators insert into the reply box by its shortcut ("/hours"). Kept per
    team: one with a group is seen by that group's members, one without by everyone
    (messaging.canned.canned_responses_for); its body may hold a contact's placeholders
    (contacts.placeholders), filled when it is inserted."""

    BODY_MAX_LENGTH = 4096  # WhatsApp's limit for a text message

    shortcut = models.SlugField(max_length=64, help_text='Typed after "/" in the reply box, as in /hours.')
    title = models.CharField(max_length=200)
    body = models.TextField(
        help_text="The text inserted. {{name}} and {{first_name}} are filled from the contact; "
        "after | a default for a contact without one: {{first_name|there}}."
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_responses",
        help_text="The team whose members see it. None: everyone.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut", "group_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["shortcut", "group"],
                nulls_distinct=False,
                name="cannedresponse_unique",
                violation_error_message="This team already has a canned response with this shortcut.",
            ),
        ]

    def __str__(self) -> str:
        return f"/{self.shortcut}"

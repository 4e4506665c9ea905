from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from contacts.models import Contact
from messaging.models import Message, PhoneNumber, Template


class Campaign(models.Model):
    """A bulk job: one message to every contact of an audience, on one channel, paced.

    Its recipients (one row per contact) are the record of what was sent: see campaigns/services.py.
    """

    class Channel(models.TextChoices):
        WHATSAPP = "WHATSAPP", "WhatsApp"
        EMAIL = "EMAIL", "Email"
        SMS = "SMS", "SMS"

    class Status(models.TextChoices):
        DRAFT = "draft"
        SCHEDULED = "scheduled"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"

    name = models.CharField(max_length=200)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WHATSAPP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)

    # Content. WhatsApp: an approved template and its parameters by component ("header", "body",
    # "button.0"), each a list of texts with {{name}}, {{phone}}, {{email}}, {{attributes.KEY}}
    # placeholders (and a default after "|": {{name|there}}). Email: subject and body. SMS: body.
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    template = models.ForeignKey(
        Template, null=True, blank=True, on_delete=models.PROTECT, related_name="campaigns"
    )
    template_parameters = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=255, blank=True, default="")
    body = models.TextField(blank=True, default="")

    # Audience: contacts with any of the tags or in the list (all contacts when both are empty),
    # narrowed by the filters; contacts opted out of the channel or without its address never count.
    audience_tags = ArrayField(models.CharField(max_length=64), blank=True, default=list)
    audience_filters = models.JSONField(default=dict, blank=True)
    audience_contacts = models.ManyToManyField(Contact, blank=True, related_name="+")

    scheduled_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="Messages per second at most; empty: the sender's limit."
    )
    failure_pause_pct = models.PositiveSmallIntegerField(
        default=20, help_text="Pause when this share of the latest sends failed (0: never)."
    )

    total_recipients = models.PositiveIntegerField(default=0)
    status_reason = models.CharField(max_length=255, blank=True, default="")
    # The feeder chain: only the task carrying the current token feeds; `feed_at` is when it runs.
    feed_token = models.CharField(max_length=32, blank=True, default="")
    feed_at = models.DateTimeField(null=True, blank=True)
    report_key = models.CharField(max_length=512, blank=True, default="")
    report_written_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_campaign", "Can start, pause, resume and cancel campaigns")]
        indexes = [
            models.Index(
                fields=["scheduled_at"], condition=models.Q(status="scheduled"), name="campaign_scheduled"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Recipient(models.Model):
    """One contact of a campaign, sent to at most once.

    WhatsApp: `message` is the one Message this recipient produced, linked in the transaction
    that queued it; its status is the recipient's progress. Email and SMS: the row itself is
    claimed, attempted and settled (`attempt_started_at` before the request leaves).
    """

    class Status(models.TextChoices):
        PENDING = "pending"  # not handed to a channel yet
        QUEUED = "queued"  # WhatsApp: its message exists (see the message's status)
        SENDING = "sending"  # email/SMS: claimed by a worker
        SENT = "sent"
        FAILED = "failed"
        IN_DOUBT = "in_doubt"  # email/SMS: the worker died after the request may have left
        CANCELLED = "cancelled"
        SKIPPED = "skipped"  # opted out, or no address, after the audience was taken

    # Indexed by the unique (campaign, contact) and (campaign, status, id): fewer indexes, a faster launch.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    address = models.CharField(max_length=254)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    message = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="campaign_recipient"
    )
    provider_message_id = models.CharField(max_length=255, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_title = models.CharField(max_length=255, blank=True, default="")
    claimed_by = models.CharField(max_length=128, blank=True, default="")
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempt_started_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    due_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "contact"], name="recipient_campaign_contact_unique")
        ]
        indexes = [
            models.Index(fields=["campaign", "status", "id"], name="recipient_campaign_status"),
        ]

    def __str__(self) -> str:
        return f"{self.address} in campaign {self.campaign_id}"

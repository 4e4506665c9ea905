from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from contacts.validators import validate_email


class Channel(models.TextChoices):
    """The channels a contact can be written to, each with its own opt-out."""

    WHATSAPP = "whatsapp", "WhatsApp"
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"


class Contact(models.Model):
    """A person the business talks to. `phone` is E.164 (normalised with phonenumbers).

    A contact that wrote to us on WhatsApp may have no phone: its WhatsApp id may not be a number
    phonenumbers accepts, and newer webhooks may name it only by its business-scoped `user_id`.
    """

    phone = models.CharField(max_length=20, unique=True, null=True, blank=True)
    wa_id = models.CharField("WhatsApp id", max_length=32, blank=True, default="")
    user_id = models.CharField("WhatsApp user id", max_length=128, blank=True, default="", db_default="")
    name = models.CharField(max_length=200, blank=True, default="")
    # Not an EmailField: addresses may have UTF-8 before the @ (see ContactEmailValidator).
    email = models.CharField(max_length=254, blank=True, default="", validators=[validate_email])
    tags = ArrayField(models.CharField(max_length=64), blank=True, default=list)
    language = models.CharField(max_length=16, blank=True, default="")
    attributes = models.JSONField(blank=True, default=dict)

    opted_in_at = models.DateTimeField(null=True, blank=True)
    opt_in_source = models.CharField(max_length=64, blank=True, default="")
    opted_out_at = models.DateTimeField(null=True, blank=True)
    opt_out_source = models.CharField(max_length=64, blank=True, default="")
    # opted_out_at above is WhatsApp's; email and SMS have their own (an unsubscribe link, a STOP).
    email_opted_out_at = models.DateTimeField("email opted out at", null=True, blank=True)
    email_opt_out_source = models.CharField(
        "email opt-out source", max_length=64, blank=True, default="", db_default=""
    )
    sms_opted_out_at = models.DateTimeField("SMS opted out at", null=True, blank=True)
    sms_opt_out_source = models.CharField(
        "SMS opt-out source", max_length=64, blank=True, default="", db_default=""
    )

    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["wa_id"], condition=~models.Q(wa_id=""), name="contact_wa_id_unique"
            ),
            models.UniqueConstraint(
                fields=["user_id"], condition=~models.Q(user_id=""), name="contact_user_id_unique"
            ),
        ]
        indexes = [
            # Search also has trigram indexes where pg_trgm exists: see migration 0002.
            GinIndex(fields=["tags"], name="contact_tags_gin"),
            models.Index(fields=["opted_out_at"], name="contact_opted_out_at"),
            # Newest first (Meta.ordering) read in order: an import gives thousands of rows one
            # created_at, which a created_at index alone leaves to be sorted by id.
            models.Index(fields=["created_at", "id"], name="contact_created_at_id"),
        ]

    def __str__(self) -> str:
        address = self.phone or self.wa_id or self.user_id or f"contact {self.pk}"
        return f"{self.name} ({address})" if self.name else address

    @property
    def is_opted_out(self) -> bool:
        return self.opted_out_at is not None

    def is_opted_out_of(self, channel: str) -> bool:
        return getattr(self, OPT_OUT_FIELDS[Channel(channel)][0]) is not None


# Each channel's opt-out time and source on Contact.
OPT_OUT_FIELDS: dict[Channel, tuple[str, str]] = {
    Channel.WHATSAPP: ("opted_out_at", "opt_out_source"),
    Channel.EMAIL: ("email_opted_out_at", "email_opt_out_source"),
    Channel.SMS: ("sms_opted_out_at", "sms_opt_out_source"),
}

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models


class AuditLog(models.Model):
    """Who changed what, through which door. Written by services, read-only everywhere else."""

    class Source(models.TextChoices):
        ADMIN = "admin"
        API = "api"
        CSV = "csv"
        WEBHOOK = "webhook"
        UNSUBSCRIBE = "unsubscribe"  # a contact's own click on an email's unsubscribe link
        SYSTEM = "system"

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    action = models.CharField(max_length=32)
    target_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    target_id = models.CharField(max_length=64, blank=True, default="")
    target_repr = models.CharField(max_length=200, blank=True, default="")
    changes = models.JSONField(blank=True, default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "contacts_auditlog"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["target_type", "target_id"], name="auditlog_target")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr}"


class OperatorAlert(models.Model):
    """Something operators must see (a paused sender, a failed archival): an admin banner until
    acknowledged, and an email to ADMINS when raised."""

    key = models.CharField(max_length=128, unique=True)  # one open alert per cause
    level = models.CharField(max_length=16, default="error")
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "messaging_operatoralert"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.text[:80]


class Pace(models.Model):
    """The shared limiter's state for one thing Wharf paces (a sender number, the email or SMS
    channel): its GCRA theoretical arrival time (see core/pacing.py)."""

    key = models.CharField(max_length=64, primary_key=True)
    tat = models.DateTimeField()

    def __str__(self) -> str:
        return f"pace of {self.key}"


class DeadLetterQueue(models.Model):
    """No table: the admin's handle on the dead-letter queues in SQS (core/queues.py, read and
    replayed at Core > Dead letters), and the permission to list, replay and delete their messages."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("manage_dead_letters", "Can list, replay and delete dead letters")]
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"

    def __str__(self) -> str:
        return "dead letters"


class SystemSection(models.Model):
    """No table: the permission to see the admin's System section listed in its index and side bar
    (config/admin_site.py), given to administrators who are not superusers. Each page listed there
    still asks for its own permission."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [("view_system", "Can see the System section of the admin")]
        verbose_name = "system section"

    def __str__(self) -> str:
        return "system section"

from django.db import models


class MessageDay(models.Model):
    """How many analytics events of one kind a day had: messages received (inbound) and each status
    Meta reported for outbound messages, per sender number and, for failures, Meta's error code.

    Rows are derived: dashboard.rollups makes a day's rows again from messaging's AnalyticsEvent
    rows, so they may be deleted and rebuilt at any time while the events are kept.
    """

    day = models.DateField()
    phone_number_id = models.BigIntegerField(null=True, blank=True)  # messaging.PhoneNumber's id
    direction = models.CharField(max_length=8)  # inbound, outbound
    status = models.CharField(max_length=16)  # received; sent, delivered, read, played, deleted, failed
    error_code = models.BigIntegerField(null=True, blank=True)
    error_title = models.CharField(max_length=255, blank=True, default="")  # Meta's, from the messages
    count = models.PositiveIntegerField()

    class Meta:
        default_permissions = ()
        permissions = [("view_dashboard", "Can view the dashboard")]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "phone_number_id", "direction", "status", "error_code"],
                nulls_distinct=False,
                name="messageday_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.count} {self.direction} {self.status}"


class OptOutDay(models.Model):
    """How many contacts opted out of a channel on a day (and have not opted in again since)."""

    day = models.DateField()
    channel = models.CharField(max_length=16)  # contacts.Channel
    count = models.PositiveIntegerField()

    class Meta:
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["day", "channel"], name="optoutday_unique")]

    def __str__(self) -> str:
        return f"{self.day}: {self.count} opted out of {self.channel}"

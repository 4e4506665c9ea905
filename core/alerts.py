"""Operator alerts: something people must act on (a sender paused by error 190, a sync that
cannot authenticate). An alert is a row per cause (`key`) shown as a banner on every admin page
until someone acknowledges it, and an email to ADMINS when it is raised.

Raising an alert that is already open only logs: a worker that meets the same error on every
message of a batch sends one email, not thousands. Raising it again after it was acknowledged
reopens the row and emails again. The email leaves after the alert's transaction commits and a
mail server that refuses it is logged, never raised to the caller (a send worker).
"""

from __future__ import annotations

import logging

from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_log_record
from core.models import AuditLog, OperatorAlert

logger = logging.getLogger(__name__)

LEVELS = ("warning", "error")


def _email(alert: OperatorAlert) -> None:
    try:
        mail_admins(subject=f"[{alert.level}] {alert.text[:120]}", message=alert.text)
    except Exception:
        logger.exception("Could not email ADMINS about operator alert %s", alert.key)


@transaction.atomic
def operator_alert_raise(*, key: str, text: str, level: str = "error") -> OperatorAlert:
    """The open alert for `key`, created or reopened (and emailed) if there was none."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    alert, created = OperatorAlert.objects.select_for_update().get_or_create(
        key=key, defaults={"text": text, "level": level}
    )
    logger.log(logging.ERROR if level == "error" else logging.WARNING, "Operator alert %s: %s", key, text)
    if not created and alert.acknowledged_at is None:
        return alert
    if not created:
        alert.text, alert.level = text, level
        alert.created_at, alert.acknowledged_at, alert.acknowledged_by = timezone.now(), None, None
        alert.save(update_fields=["text", "level", "created_at", "acknowledged_at", "acknowledged_by"])
    transaction.on_commit(lambda: _email(alert))
    return alert


@transaction.atomic
def operator_alert_acknowledge(
    *, alert: OperatorAlert, actor: Actor, source: str = AuditLog.Source.ADMIN
) -> OperatorAlert:
    """Takes the banner down; acknowledging an acknowledged alert changes nothing."""
    alert = OperatorAlert.objects.select_for_update().get(pk=alert.pk)
    if alert.acknowledged_at is not None:
        return alert
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = actor if actor is not None and actor.is_authenticated else None
    alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    audit_log_record(
        actor=actor,
        source=source,
        action="operator_alert.acknowledge",
        target=alert,
        changes={"key": alert.key, "text": alert.text},
    )
    return alert


def operator_alerts_open() -> list[OperatorAlert]:
    return list(OperatorAlert.objects.filter(acknowledged_at__isnull=True).order_by("-created_at")[:20])


def operator_alert_acknowledge_key(*, key: str, actor: Actor, source: str = AuditLog.Source.ADMIN) -> bool:
    """Acknowledges the open alert for `key`, if any: the operator fixed its cause (resumed the
    paused sender). True if one was open."""
    alert = OperatorAlert.objects.filter(key=key, acknowledged_at__isnull=True).first()
    if alert is None:
        return False
    operator_alert_acknowledge(alert=alert, actor=actor, source=source)
    return True

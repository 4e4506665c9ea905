"""The audit log's one writer: every service records who changed what, through which door."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models

from core.models import AuditLog

Actor = AbstractBaseUser | None


def audit_log_record(
    *,
    actor: Actor,
    source: str,
    action: str,
    target: models.Model | None = None,
    target_repr: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditLog:
    """One row per write. Bulk writes have no single target and name what they touched instead."""
    return AuditLog.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        source=source,
        action=action,
        target_type=ContentType.objects.get_for_model(target) if target is not None else None,
        target_id=str(target.pk) if target is not None else "",
        target_repr=(str(target) if target is not None else target_repr)[:200],
        changes=changes or {},
    )


def audit_log_record_many(
    *,
    actor: Actor,
    source: str,
    action: str,
    targets: Sequence[models.Model],
    changes: dict[str, Any] | None = None,
) -> list[AuditLog]:
    """One row per target of a bulk write, inserted in one statement, so each target's history
    (its rows by `target_type`, `target_id`) has the change too."""
    if not targets:
        return []
    rows = [
        AuditLog(
            actor=actor if actor is not None and actor.is_authenticated else None,
            source=source,
            action=action,
            target_type=ContentType.objects.get_for_model(target),
            target_id=str(target.pk),
            target_repr=str(target)[:200],
            changes=changes or {},
        )
        for target in targets
    ]
    return AuditLog.objects.bulk_create(rows)

"""Writes to many contacts at once (delete, tag, untag, opt out), audited as one row each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction

from contacts.models import Channel, Contact
from contacts.services.cleaning import contact_fields_clean
from contacts.services.contact import channel_fields, opt_source
from core.audit import Actor, audit_log_record


def _bulk_audit(*, ids: list[int], actor: Actor, source: str, action: str, **changes: Any) -> None:
    audit_log_record(
        actor=actor,
        source=source,
        action=action,
        target_repr=f"{len(ids)} contact{'s' if len(ids) != 1 else ''}",
        changes={**changes, "ids": ids},
    )


def _bulk_update(
    queryset: models.QuerySet[Contact], *, set_sql: str, where_sql: str, params: Sequence[Any]
) -> list[int]:
    """One UPDATE ... RETURNING id over the queryset's rows, whatever their number.

    `where_sql` states the condition on the row itself, so PostgreSQL checks it again on a row
    that a concurrent transaction changed first instead of overwriting that change.
    """
    select_sql, select_params = queryset.order_by().values("id").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE contacts_contact SET {set_sql}, updated_at = now()"
            f" WHERE ({where_sql}) AND id IN ({select_sql}) RETURNING id",
            [*params, *select_params],
        )
        return sorted(id_ for (id_,) in cursor.fetchall())


@transaction.atomic
def contacts_delete(*, queryset: models.QuerySet[Contact], actor: Actor, source: str) -> int:
    ids = sorted(queryset.order_by().select_for_update().values_list("id", flat=True))
    if not ids:
        return 0
    queryset.order_by().delete()
    _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.delete")
    return len(ids)


@transaction.atomic
def contacts_tag(
    *, queryset: models.QuerySet[Contact], tags: Iterable[str], actor: Actor, source: str
) -> int:
    """Appends the tags a contact lacks, in SQL; returns how many contacts gained one."""
    tags = contact_fields_clean(tags=tags)["tags"]
    if not tags:
        raise ValidationError({"tags": "Give at least one tag."})
    ids = _bulk_update(
        queryset,
        set_sql="tags = tags || ARRAY(SELECT t FROM unnest(%s::varchar(64)[]) WITH ORDINALITY AS u(t, n)"
        " WHERE t <> ALL(tags) ORDER BY n)",
        where_sql="NOT tags @> %s::varchar(64)[]",
        params=[tags, tags],
    )
    if ids:
        _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.tag", tags=tags)
    return len(ids)


@transaction.atomic
def contacts_untag(
    *, queryset: models.QuerySet[Contact], tags: Iterable[str], actor: Actor, source: str
) -> int:
    tags = contact_fields_clean(tags=tags)["tags"]
    if not tags:
        raise ValidationError({"tags": "Give at least one tag."})
    ids = _bulk_update(
        queryset,
        set_sql="tags = ARRAY(SELECT t FROM unnest(tags) WITH ORDINALITY AS u(t, n)"
        " WHERE t <> ALL(%s::varchar(64)[]) ORDER BY n)",
        where_sql="tags && %s::varchar(64)[]",
        params=[tags, tags],
    )
    if ids:
        _bulk_audit(ids=ids, actor=actor, source=source, action="contacts.untag", tags=tags)
    return len(ids)


@transaction.atomic
def contacts_opt_out(
    *, queryset: models.QuerySet[Contact], reason: str = "", actor: Actor, source: str
) -> int:
    """Opts out those not opted out yet; returns how many that was."""
    opt_out_source = opt_source(reason, source)
    ids = _bulk_update(
        queryset,
        set_sql="opted_out_at = now(), opt_out_source = %s",
        where_sql="opted_out_at IS NULL",
        params=[opt_out_source],
    )
    if ids:
        _bulk_audit(
            ids=ids, actor=actor, source=source, action="contacts.opt_out", opt_out_source=opt_out_source
        )
    return len(ids)


@transaction.atomic
def contacts_channel_opt_out(
    *, queryset: models.QuerySet[Contact], channel: str, reason: str = "", actor: Actor, source: str
) -> int:
    """Opts those not opted out yet out of one channel; returns how many that was."""
    if Channel(channel) == Channel.WHATSAPP:
        return contacts_opt_out(queryset=queryset, reason=reason, actor=actor, source=source)
    at_field, source_field = channel_fields(channel)
    opt_out_source = opt_source(reason, source)
    ids = _bulk_update(
        queryset,
        set_sql=f"{at_field} = now(), {source_field} = %s",
        where_sql=f"{at_field} IS NULL",
        params=[opt_out_source],
    )
    if ids:
        _bulk_audit(
            ids=ids,
            actor=actor,
            source=source,
            action=f"contacts.{channel}_opt_out",
            **{source_field: opt_out_source},
        )
    return len(ids)

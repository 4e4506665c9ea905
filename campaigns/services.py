"""Campaigns: every recipient sent to exactly once, whatever happens in between.

The record is per recipient, never a checkpoint. The protocol:

1. Launch. `campaign_start` moves the campaign to running and, in the same transaction, writes
   one `pending` Recipient per contact of the audience with one INSERT ... SELECT (unique
   (campaign, contact), ON CONFLICT DO NOTHING: a second start adds nobody twice).
2. Feed. A feeder task (`campaign_feed`) tops up the campaign's share of the outgoing queue to a
   couple of seconds of its rate (one second of its cap when it has one), in chunks. One chunk is
   one transaction: the campaign row read FOR SHARE and seen running, pending recipients taken
   FOR UPDATE SKIP LOCKED, one queued WhatsApp message per recipient inserted through
   messaging.bulk (the outbound pipeline's own rows: one send path, one limiter), and each
   recipient set `queued` with its message's id. A crash anywhere rolls the chunk back whole.
   Feeders run as a chain of short tasks, each carrying the campaign's current `feed_token`; a
   duplicate or redelivered task holds an old token and does nothing. Beat's `campaigns_tick`
   starts due scheduled campaigns, restarts a chain whose next run is overdue, and finishes
   campaigns with nothing left to send.
3. Send. The outgoing worker sends each message at most once (messaging/outbound/__init__.py).
4. Pause and cancel. One transaction takes the campaign row FOR UPDATE (so no chunk is half
   fed), changes the status, then locks the campaign's messages still `queued` or `sending` and
   deletes those with no open SendAttempt, putting their recipients back to pending (pause) or
   cancelled (cancel). Locking first waits for a drain's claim or attempt start on those rows, and
   the delete's new snapshot sees the attempts they committed; a drain that claimed a deleted
   message finds its claim gone when it starts the attempt and skips it (outbound's claim check).
   So a message is either under way (its attempt is open: it finishes) or gone, never both, and no
   new request starts once the pause commits. A message with no open attempt was never accepted by
   Meta (outbound's invariant: a retry is queued only after Meta refused or the connection
   failed), so deleting it loses no send. One a drain hands back to the queue later (a sender
   paused mid-batch) is withdrawn again by the next tick.
5. Resume feeds exactly the pending recipients again.

Every recipient thus has at most one message ever linked that left for Meta; its status
(from statuses or the send's answer) is the recipient's progress.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from datetime import timedelta
from functools import partial
from typing import Any

from celery import shared_task
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.channels import (
    CHANNELS,
    campaign_channel_send,
    channel_claims_release,
    channel_claims_sweep,
    channel_content_check,
    channel_failures_window,
)
from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_task
from campaigns.selectors import campaign_failures
from contacts.models import Contact
from contacts.placeholders import placeholders_check, placeholders_render
from contacts.reachability import (
    NO_ADDRESS,
    OPTED_OUT,
    contact_address_sql,
    contact_reachable_sql,
    contact_unreachable_sql,
)
from contacts.services.cleaning import phone_normalise
from core.audit import Actor, audit_log_record
from core.json_input import json_check, text_problem
from core.models import AuditLog
from core.params import int_param
from core.queues import task_publish
from messaging.bulk import BulkEntry, TemplateBatch, template_batch_prepare, template_messages_queue
from messaging.models import Message, SendAttempt
from messaging.templates import SENDABLE, template_slot_values, template_slots

logger = logging.getLogger(__name__)

_C = Campaign.Status
_R = Recipient.Status

CHUNK_MAX = 1000  # recipients per feeding transaction
FEED_INTERVAL_S = 1.0  # a feeder runs this often while recipients are pending
FEED_IDLE_S = 5.0  # ... and this often while only sends in flight are left
FEED_AHEAD_S = 2.0  # an uncapped campaign keeps this many seconds of its sender's rate queued
FEED_LEASE_S = 60.0  # a feeder not heard of for this long is restarted by the tick
AUTO_PAUSE_WINDOW = 200  # the latest settled sends the failure share is taken over
AUTO_PAUSE_MIN = 20  # ... once there are at least this many

FILTER_KEYS = ("language", "attributes", "created_after", "created_before", "opted_in")

_CONTACT = Contact._meta.db_table
_RECIPIENT = Recipient._meta.db_table
_MESSAGE = Message._meta.db_table
_AUDIENCE = Campaign.audience_contacts.through._meta.db_table

SENT_STATUSES = ("sent", "delivered", "read", "played", "deleted")
DELIVERED_STATUSES = ("delivered", "read", "played")
READ_STATUSES = ("read", "played")


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise ValidationError({field: message})


# -- content --------------------------------------------------------------------------------------


def campaign_template_batch(campaign: Campaign) -> TemplateBatch:
    _require(
        campaign.phone_number_id is not None, "phone_number", "A WhatsApp campaign needs a sender number."
    )
    _require(campaign.template_id is not None, "template", "A WhatsApp campaign needs a template.")
    return template_batch_prepare(
        phone_number=campaign.phone_number,
        name=campaign.template.name,
        language=campaign.template.language,
        parameters=campaign.template_parameters or {},
    )


def campaign_content_check(*, campaign: Campaign) -> None:
    """The checks a campaign's content passes before it can start; ValidationError names the field."""
    if campaign.channel == Campaign.Channel.WHATSAPP:
        parameters = campaign.template_parameters or {}
        _require(isinstance(parameters, dict), "template_parameters", "An object of lists by component.")
        for key, items in parameters.items():
            _require(isinstance(items, list), "template_parameters", f"{key}: a list of parameters.")
            for item in items:
                if isinstance(item, str):
                    placeholders_check(item, "template_parameters")
        campaign_template_batch(campaign)
        if campaign.rate_limit_per_s is not None:
            limit = campaign.phone_number.rate_limit_per_s
            _require(
                0 < campaign.rate_limit_per_s <= limit,
                "rate_limit_per_s",
                f"Between 1 and the sender's limit ({limit}/s).",
            )
        return
    channel_content_check(campaign)


def _start_problems(campaign: Campaign) -> dict[str, list[str]]:
    """What stops the campaign from starting, by field, in the words an operator acts on."""
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    if campaign.channel == Campaign.Channel.WHATSAPP:
        if campaign.phone_number_id is None:
            add("phone_number", "Choose a sender number.")
        if campaign.template_id is None or campaign.template.status != SENDABLE:
            add("template", "Choose an approved template.")
        elif isinstance(campaign.template_parameters or {}, dict):
            values = template_slot_values(template=campaign.template, parameters=campaign.template_parameters)
            for slot in template_slots(template=campaign.template):
                if not values.get(slot.key, "").strip():
                    add("template_parameters", f"Fill parameter {slot.label[:1].upper()}{slot.label[1:]}.")
    elif campaign.channel == Campaign.Channel.EMAIL and not campaign.subject.strip():
        add("subject", "Write a subject.")
    if campaign.channel != Campaign.Channel.WHATSAPP and not campaign.body.strip():
        add("body", "Write a body.")
    try:
        campaign_content_check(campaign=campaign)
    except ValidationError as error:  # its first refusal, unless said above in plainer words
        said = set(problems) | ({"template.components"} if "template_parameters" in problems else set())
        for field, messages in error.message_dict.items():
            if field not in said and not ({"phone_number", "template"} & set(problems)):
                for message in messages:
                    add(field, message)
    if not campaign_audience_exists(campaign=campaign):
        add("audience", "The audience is empty.")
    return problems


def campaign_start_problems(*, campaign: Campaign) -> list[str]:
    """Why the campaign cannot start now (nothing: it can). The one rule: `campaign_start` refuses
    with these, and the console shows them on a draft, which may be saved incomplete."""
    return [message for messages in _start_problems(campaign).values() for message in messages]


# -- audience -------------------------------------------------------------------------------------


def _address_sql(channel: str) -> str:
    return contact_address_sql(CHANNELS[channel], "c")


def _unreachable_sql(channel: str) -> str:
    return contact_unreachable_sql(CHANNELS[channel], "c")


def audience_filters_clean(filters: Any) -> dict[str, Any]:
    _require(isinstance(filters, dict), "audience_filters", "Must be an object.")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    _require(
        not unknown,
        "audience_filters",
        f"Unknown filter {', '.join(unknown)}: one of {', '.join(FILTER_KEYS)}.",
    )
    if "attributes" in filters:
        _require(
            isinstance(filters["attributes"], dict), "audience_filters", "attributes: an object of values."
        )
    if "language" in filters:
        _require(isinstance(filters["language"], str), "audience_filters", "language: a string.")
    if "opted_in" in filters:
        _require(isinstance(filters["opted_in"], bool), "audience_filters", "opted_in: true or false.")
    for key in ("created_after", "created_before"):
        if key in filters:
            from django.utils.dateparse import parse_datetime

            _require(
                isinstance(filters[key], str) and parse_datetime(filters[key]) is not None,
                "audience_filters",
                f"{key}: an ISO 8601 date and time.",
            )
    return filters


def _audience_sql(campaign: Campaign) -> tuple[str, list[Any]]:
    """The WHERE clause over contacts `c` that makes the audience, with its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    either: list[str] = []
    if campaign.audience_tags:
        either.append("c.tags && %s::varchar[]")
        params.append(list(campaign.audience_tags))
    if campaign.pk and campaign.audience_contacts.exists():
        either.append(f"c.id IN (SELECT contact_id FROM {_AUDIENCE} WHERE campaign_id = %s)")
        params.append(campaign.pk)
    if either:
        clauses.append("(" + " OR ".join(either) + ")")
    filters = campaign.audience_filters or {}
    if filters.get("language"):
        clauses.append("c.language = %s")
        params.append(filters["language"])
    if filters.get("attributes"):
        clauses.append("c.attributes @> %s::jsonb")
        params.append(json.dumps(filters["attributes"]))
    if filters.get("created_after"):
        clauses.append("c.created_at >= %s::timestamptz")
        params.append(filters["created_after"])
    if filters.get("created_before"):
        clauses.append("c.created_at < %s::timestamptz")
        params.append(filters["created_before"])
    if filters.get("opted_in") is not None:
        clauses.append(f"c.opted_in_at IS {'NOT ' if filters['opted_in'] else ''}NULL")
    clauses.append(contact_reachable_sql(CHANNELS[campaign.channel], "c"))
    return " AND ".join(clauses), params


def campaign_audience_count(*, campaign: Campaign) -> int:
    where, params = _audience_sql(campaign)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {_CONTACT} c WHERE {where}", params)
        return cursor.fetchone()[0]


def campaign_audience_exists(*, campaign: Campaign) -> bool:
    where, params = _audience_sql(campaign)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_CONTACT} c WHERE {where})", params)
        return cursor.fetchone()[0]


def campaign_audience_preview(*, campaign: Campaign, limit: int = 20) -> list[Contact]:
    where, params = _audience_sql(campaign)
    return list(
        Contact.objects.raw(
            f"SELECT c.* FROM {_CONTACT} c WHERE {where} ORDER BY c.id LIMIT %s", [*params, limit]
        )
    )


def campaign_audience_csv_set(*, campaign: Campaign, file, actor: Actor, source: str) -> dict[str, int]:
    """The explicit list from a CSV with a `phone`, `email` or `id` column (one contact a line):
    matched to contacts, which replace the list. Returns matched and unmatched line counts."""
    import csv
    import io

    _require(campaign.status == _C.DRAFT, "status", "Only a draft campaign's audience can change.")
    text = (
        io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
        if not isinstance(file, io.TextIOBase)
        else file
    )
    reader = csv.DictReader(text)
    try:
        columns = [name.strip().lower() for name in reader.fieldnames or []]
        column = next((name for name in ("id", "phone", "email") if name in columns), None)
        _require(column is not None, "file", "The CSV needs a header line with an id, phone or email column.")
        original = (reader.fieldnames or [])[columns.index(column)]
        values = [(row.get(original) or "").strip() for row in reader]
    except UnicodeDecodeError:
        raise ValidationError({"file": 'Not UTF-8 text: save the file as "CSV UTF-8".'}) from None
    except csv.Error as error:
        raise ValidationError({"file": f"Not a CSV file: {error}."}) from None
    # A value PostgreSQL cannot even compare (a NUL character) matches no contact.
    values = [value for value in values if value and text_problem(value) is None]
    if column == "phone":
        normalised = []
        for value in values:
            try:
                normalised.append(phone_normalise(value))
            except ValidationError:
                normalised.append(value)
        values = normalised
    if column == "id":
        # ASCII digits that fit the column (int_param): int() also reads "²".
        values = [value for value in values if int_param(value) is not None]
    found: set[int] = set()
    for start in range(0, len(values), 10000):
        part = values[start : start + 10000]
        lookup = {"id": "id__in", "phone": "phone__in", "email": "email__in"}[column]
        found.update(Contact.objects.filter(**{lookup: part}).values_list("id", flat=True))
    through = Campaign.audience_contacts.through
    with transaction.atomic():
        # Locked until commit: a contact deleted meanwhile would break the list's foreign key.
        found = set(
            Contact.objects.select_for_update(no_key=True)
            .filter(pk__in=sorted(found))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        through.objects.filter(campaign_id=campaign.pk).delete()
        through.objects.bulk_create(
            [through(campaign_id=campaign.pk, contact_id=pk) for pk in sorted(found)], batch_size=5000
        )
        audit_log_record(
            actor=actor,
            source=source,
            action="campaign.audience_csv",
            target=campaign,
            changes={"lines": len(values), "matched": len(found)},
        )
    return {"lines": len(values), "matched": len(found), "unmatched": len(values) - len(found)}


# -- create and change ----------------------------------------------------------------------------

EDITABLE = (
    "name",
    "channel",
    "phone_number",
    "template",
    "template_parameters",
    "subject",
    "body",
    "audience_tags",
    "audience_filters",
    "scheduled_at",
    "rate_limit_per_s",
    "failure_pause_pct",
)


def _fields_apply(campaign: Campaign, fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(EDITABLE) - {"audience_contacts"})
    _require(not unknown, unknown[0] if unknown else "", "Not a field of a campaign.")
    for name, value in fields.items():
        if name != "audience_contacts":
            setattr(campaign, name, value)
    _require(bool(campaign.name and campaign.name.strip()), "name", "This field is required.")
    _require(campaign.channel in Campaign.Channel.values, "channel", "One of WHATSAPP, EMAIL, SMS.")
    json_check(campaign.template_parameters, field="template_parameters")
    json_check(campaign.audience_filters, field="audience_filters")
    audience_filters_clean(campaign.audience_filters or {})
    _require(
        isinstance(campaign.audience_tags, list) and all(isinstance(t, str) for t in campaign.audience_tags),
        "audience_tags",
        "A list of tags.",
    )
    _require(
        campaign.failure_pause_pct is not None and 0 <= campaign.failure_pause_pct <= 100,
        "failure_pause_pct",
        "Between 0 and 100.",
    )
    if campaign.template_id is not None and campaign.phone_number_id is not None:
        _require(
            campaign.template.waba_id == campaign.phone_number.waba_id,
            "template",
            f"Template {campaign.template} is not in the WABA of {campaign.phone_number}.",
        )


def _audience_contacts_lock(ids: list[int]) -> None:
    """The contacts of an explicit audience, locked against deletion until the list is saved (a
    deleted one would break the list's foreign key at commit); ValidationError names the missing."""
    wanted = set(ids)
    found = set(
        Contact.objects.select_for_update(no_key=True)
        .filter(pk__in=wanted)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    missing = sorted(wanted - found)
    _require(
        not missing,
        "audience_contacts",
        f"No such contact: {', '.join(str(pk) for pk in missing[:10])}{' …' if len(missing) > 10 else ''}.",
    )


def campaign_create(
    *, actor: Actor, source: str, audience_contacts: list[int] | None = None, **fields
) -> Campaign:
    campaign = Campaign(created_by=actor if actor is not None and actor.is_authenticated else None)
    _fields_apply(campaign, fields)
    with transaction.atomic():
        campaign.save()
        if audience_contacts:
            _audience_contacts_lock(audience_contacts)
            campaign.audience_contacts.set(audience_contacts)
        audit_log_record(actor=actor, source=source, action="campaign.create", target=campaign)
    return campaign


# A campaign under way is changed only by its controls (pause, resume, cancel); one that finished is
# history: read-only, deletable with the delete permission (its messages stay with their contacts).
UNDER_WAY = (_C.SCHEDULED, _C.RUNNING, _C.PAUSED)
DELETABLE = (_C.DRAFT, _C.COMPLETED, _C.CANCELLED, _C.FAILED)


def campaign_update(
    *, campaign: Campaign, actor: Actor, source: str, audience_contacts: list[int] | None = None, **fields
) -> Campaign:
    """A draft's fields; the row is read locked so that a start committed meanwhile is seen and
    only the fields given are written."""
    with transaction.atomic():
        status = _locked(campaign).status
        _require(
            status == _C.DRAFT,
            "status",
            f"A {status} campaign cannot be changed: only a draft can"
            + (" (pause, resume or cancel it instead)." if status in UNDER_WAY else "."),
        )
        _fields_apply(campaign, fields)
        campaign.save(update_fields=[*(name for name in fields if name != "audience_contacts"), "updated_at"])
        if audience_contacts is not None:
            _audience_contacts_lock(audience_contacts)
            campaign.audience_contacts.set(audience_contacts)
        audit_log_record(
            actor=actor,
            source=source,
            action="campaign.update",
            target=campaign,
            changes={"fields": sorted(fields)},
        )
    return campaign


def campaign_delete(*, campaign: Campaign, actor: Actor, source: str) -> None:
    """A draft, or a finished campaign with its recipients; never one under way (read locked: a
    start or resume waits, and one that committed first is seen)."""
    with transaction.atomic():
        locked = _locked(campaign)
        _require(
            locked.status in DELETABLE,
            "status",
            f"A {locked.status} campaign cannot be deleted: cancel it first.",
        )
        audit_log_record(actor=actor, source=source, action="campaign.delete", target=locked)
        locked.delete()


# -- start, pause, resume, cancel -----------------------------------------------------------------


def _locked(campaign: Campaign) -> Campaign:
    return (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("phone_number", "template")
        .get(pk=campaign.pk)
    )


def _refresh(campaign: Campaign, fresh: Campaign) -> Campaign:
    for field in Campaign._meta.concrete_fields:
        setattr(campaign, field.attname, getattr(fresh, field.attname))
    return campaign


def _feed_enqueue(campaign_id: int, token: str, countdown: float | None = None) -> None:
    task_publish(
        campaign_feed_task,
        args=(campaign_id, token),
        countdown=countdown,
        what=f"the feeder of campaign {campaign_id}",
        fallback="the tick",
    )


def _feed_schedule(campaign_id: int, *, countdown: float = 0.0) -> None:
    """A new token and the task that carries it, after the caller's commit: older tasks stop."""
    token = uuid.uuid4().hex
    now = timezone.now()
    Campaign.objects.filter(pk=campaign_id).update(
        feed_token=token, feed_at=now + timedelta(seconds=countdown), updated_at=now
    )
    transaction.on_commit(partial(_feed_enqueue, campaign_id, token, countdown or None))


_MATERIALISE_SQL = """
    INSERT INTO {recipient} (campaign_id, contact_id, address, status, provider_message_id,
        error_code, error_title, claimed_by, attempts, updated_at)
    SELECT %s, c.id, {address}, 'pending', '', '', '', '', 0, now()
    FROM {contact} c WHERE {where} ORDER BY c.id
    ON CONFLICT (campaign_id, contact_id) DO NOTHING
"""


def campaign_recipients_materialise(*, campaign: Campaign) -> int:
    """One pending recipient per contact of the audience, in one statement; returns how many."""
    where, params = _audience_sql(campaign)
    sql = _MATERIALISE_SQL.format(
        recipient=_RECIPIENT, address=_address_sql(campaign.channel), contact=_CONTACT, where=where
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [campaign.pk, *params])
        return cursor.rowcount


def campaign_start(*, campaign: Campaign, actor: Actor, source: str, now_: bool = False) -> Campaign:
    """Start a draft (or a scheduled campaign, `now_`): scheduled when its start time is ahead,
    else running, its recipients written and its feeder enqueued, all in one transaction; refused
    with `campaign_start_problems`."""
    problems = _start_problems(campaign)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        locked = _locked(campaign)
        _require(
            locked.status in (_C.DRAFT, _C.SCHEDULED),
            "status",
            f"A {locked.status} campaign cannot be started.",
        )
        now = timezone.now()
        if not now_ and locked.scheduled_at is not None and locked.scheduled_at > now:
            locked.status = _C.SCHEDULED
            locked.save(update_fields=["status", "updated_at"])
            audit_log_record(
                actor=actor,
                source=source,
                action="campaign.schedule",
                target=locked,
                changes={"scheduled_at": locked.scheduled_at.isoformat()},
            )
            return _refresh(campaign, locked)
        count = campaign_recipients_materialise(campaign=locked)
        locked.total_recipients = count  # none before: a campaign starts once
        locked.status, locked.started_at, locked.status_reason = _C.RUNNING, now, ""
        locked.save(update_fields=["status", "started_at", "status_reason", "total_recipients", "updated_at"])
        if locked.total_recipients == 0:
            _finish(locked, status=_C.COMPLETED, reason="The audience has no contact to send to.")
        else:
            _feed_schedule(locked.pk)
        audit_log_record(
            actor=actor, source=source, action="campaign.start", target=locked, changes={"recipients": count}
        )
    logger.info("campaign %s started: %d recipients", campaign.pk, count, extra={"campaign_id": campaign.pk})
    return _refresh(campaign, Campaign.objects.get(pk=campaign.pk))


_ATTEMPT = SendAttempt._meta.db_table

# First the rows, locked: a claim or an attempt being started on one of them finishes first, and
# none starts until commit. Then, in a new statement (a new snapshot, which sees those attempts),
# the messages with no request under way: queued, or claimed by a drain that has not started an
# attempt (its attempt will find the claim gone and skip them, as after a sweep).
_WITHDRAW_LOCK_SQL = f"""
    SELECT m.id FROM {_MESSAGE} m JOIN {_RECIPIENT} r ON r.message_id = m.id
    WHERE r.campaign_id = %s AND m.status IN ('queued', 'sending')
    ORDER BY m.id FOR UPDATE OF m
"""
_WITHDRAW_SQL = f"""
    WITH withdrawn AS (
        DELETE FROM {_MESSAGE} m
        WHERE m.id = ANY(%(ids)s) AND m.status IN ('queued', 'sending')
            AND NOT EXISTS (SELECT 1 FROM {_ATTEMPT} a WHERE a.message_id = m.id AND a.outcome = '')
        RETURNING m.id
    ), attempts AS (
        DELETE FROM {_ATTEMPT} WHERE message_id IN (SELECT id FROM withdrawn)
    )
    UPDATE {_RECIPIENT} SET status = %(status)s, message_id = NULL, updated_at = now()
    WHERE message_id IN (SELECT id FROM withdrawn)
"""


def _withdraw(campaign: Campaign, *, status: str) -> int:
    """In the caller's transaction: the campaign's messages for which no request is under way,
    deleted, their recipients set to `status`; returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(_WITHDRAW_LOCK_SQL, [campaign.pk])
        ids = [pk for (pk,) in cursor.fetchall()]
        if not ids:
            return 0
        cursor.execute(_WITHDRAW_SQL, {"ids": ids, "status": status})
        return cursor.rowcount


def campaign_pause(*, campaign: Campaign, actor: Actor, source: str, reason: str = "") -> Campaign:
    """No new send starts once this returns; sends in flight finish (see the module's header)."""
    with transaction.atomic():
        locked = _locked(campaign)
        _require(
            locked.status in (_C.RUNNING, _C.SCHEDULED),
            "status",
            f"A {locked.status} campaign cannot be paused.",
        )
        locked.status, locked.paused_at, locked.status_reason = _C.PAUSED, timezone.now(), reason[:255]
        locked.feed_token = ""
        locked.save(update_fields=["status", "paused_at", "status_reason", "feed_token", "updated_at"])
        withdrawn = _withdraw(locked, status=_R.PENDING)
        withdrawn += channel_claims_release(locked, status=_R.PENDING)
        audit_log_record(
            actor=actor,
            source=source,
            action="campaign.pause",
            target=locked,
            changes={"withdrawn": withdrawn} | ({"reason": reason} if reason else {}),
        )
    return _refresh(campaign, locked)


def campaign_resume(*, campaign: Campaign, actor: Actor, source: str) -> Campaign:
    """Continue with exactly the recipients still pending."""
    campaign_content_check(campaign=campaign)
    with transaction.atomic():
        locked = _locked(campaign)
        _require(locked.status == _C.PAUSED, "status", f"A {locked.status} campaign cannot be resumed.")
        if locked.started_at is None:  # paused while scheduled: it starts, or is scheduled, again
            locked.status = _C.DRAFT
            locked.save(update_fields=["status", "updated_at"])
            audit_log_record(actor=actor, source=source, action="campaign.resume", target=locked)
        else:
            locked.status, locked.paused_at, locked.status_reason = _C.RUNNING, None, ""
            locked.save(update_fields=["status", "paused_at", "status_reason", "updated_at"])
            _feed_schedule(locked.pk)
            audit_log_record(actor=actor, source=source, action="campaign.resume", target=locked)
    if locked.status == _C.DRAFT:
        return campaign_start(campaign=_refresh(campaign, locked), actor=actor, source=source)
    return _refresh(campaign, Campaign.objects.get(pk=campaign.pk))


def campaign_cancel(*, campaign: Campaign, actor: Actor, source: str) -> Campaign:
    """Stop sending: sends in flight finish, every other recipient is cancelled, and the report
    is written once nothing is in flight."""
    with transaction.atomic():
        locked = _locked(campaign)
        _require(
            locked.status in (_C.DRAFT, _C.SCHEDULED, _C.RUNNING, _C.PAUSED),
            "status",
            f"A {locked.status} campaign cannot be cancelled.",
        )
        withdrawn = _withdraw(locked, status=_R.CANCELLED)
        withdrawn += channel_claims_release(locked, status=_R.CANCELLED)
        cancelled = Recipient.objects.filter(campaign=locked, status=_R.PENDING).update(
            status=_R.CANCELLED, updated_at=timezone.now()
        )
        _finish(locked, status=_C.CANCELLED, reason="")
        audit_log_record(
            actor=actor,
            source=source,
            action="campaign.cancel",
            target=locked,
            changes={"cancelled": withdrawn + cancelled},
        )
    return _refresh(campaign, Campaign.objects.get(pk=campaign.pk))


def _finish(campaign: Campaign, *, status: str, reason: str) -> None:
    """A final status, and the report task after commit (in the caller's transaction)."""
    now = timezone.now()
    Campaign.objects.filter(pk=campaign.pk).update(
        status=status, status_reason=reason[:255], finished_at=now, feed_token="", updated_at=now
    )
    campaign.status, campaign.finished_at = status, now
    transaction.on_commit(partial(_report_enqueue, campaign_report_task, campaign.pk))


def _report_enqueue(task, campaign_id: int) -> None:
    task_publish(task, args=(campaign_id,), what=f"the report of campaign {campaign_id}", fallback="the tick")


# -- feeding --------------------------------------------------------------------------------------


def _backlog(campaign: Campaign) -> int:
    """The campaign's messages queued and not claimed yet."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {_MESSAGE} m JOIN {_RECIPIENT} r ON r.message_id = m.id"
            " WHERE m.status = 'queued' AND m.phone_number_id = %s AND r.campaign_id = %s",
            [campaign.phone_number_id, campaign.pk],
        )
        return cursor.fetchone()[0]


_UNREACHABLE_SINCE_START = {
    NO_ADDRESS: "The contact's WhatsApp number was removed after the campaign started.",
    OPTED_OUT: "The contact opted out after the campaign started.",
}

_CHUNK_SQL = f"""
    SELECT r.id, r.contact_id, r.address, c.name, c.phone, c.email, c.wa_id, c.language,
        c.attributes, {{unreachable}} AS unreachable
    FROM {_RECIPIENT} r JOIN {_CONTACT} c ON c.id = r.contact_id
    WHERE r.campaign_id = %s AND r.status = 'pending'
    ORDER BY r.id LIMIT %s
    FOR UPDATE OF r SKIP LOCKED
"""

_LINK_SQL = f"""
    UPDATE {_RECIPIENT} r SET status = v.status, message_id = v.message_id, error_code = v.code,
        error_title = v.title, updated_at = now()
    FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[])
        AS v(id, status, message_id, code, title)
    WHERE r.id = v.id
"""


def campaign_parameters_render(
    *, campaign: Campaign, contact: dict[str, Any]
) -> tuple[dict[str, list[Any]], str]:
    """The contact's values of the template's parameters (`contact_values`' shape), and the first
    empty one as an error to show (the send refuses it; a preview shows the rest)."""
    values: dict[str, list[Any]] = {}
    error = ""
    for key, items in (campaign.template_parameters or {}).items():
        rendered = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, str):
                text = placeholders_render(item, contact).strip()
                if not text and not error:
                    error = f"Parameter {index + 1} of the {key} is empty for this contact."
                rendered.append(text)
            else:
                rendered.append(item)
        values[key] = rendered
    return values, error


def campaign_chunk_feed(*, campaign: Campaign, batch: TemplateBatch, limit: int) -> int | None:
    """Queue up to `limit` pending recipients' messages in one transaction; None when the campaign
    is not running (paused or cancelled meanwhile), else how many recipients were taken."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT status FROM {Campaign._meta.db_table} WHERE id = %s FOR SHARE", [campaign.pk]
            )
            row = cursor.fetchone()
            if row is None or row[0] != _C.RUNNING:
                return None
            cursor.execute(
                _CHUNK_SQL.format(unreachable=_unreachable_sql(campaign.channel)), [campaign.pk, limit]
            )
            rows = cursor.fetchall()
        if not rows:
            return 0
        ids, statuses, codes, titles = [], [], [], []
        entries: list[BulkEntry] = []
        queued_positions: list[int] = []
        for (
            recipient_id,
            contact_id,
            address,
            name,
            phone,
            email,
            wa_id,
            language,
            attributes,
            unreachable,
        ) in rows:
            contact = {
                "name": name,
                "phone": phone,
                "email": email,
                "wa_id": wa_id,
                "language": language,
                "attributes": attributes if isinstance(attributes, dict) else json.loads(attributes or "{}"),
            }
            ids.append(recipient_id)
            if unreachable is not None:
                statuses.append(_R.SKIPPED)
                codes.append(unreachable)
                titles.append(_UNREACHABLE_SINCE_START[unreachable])
                continue
            values, error = campaign_parameters_render(campaign=campaign, contact=contact)
            if error:
                statuses.append(_R.FAILED)
                codes.append("parameter")
                titles.append(error[:255])
                continue
            statuses.append(_R.QUEUED)
            codes.append("")
            titles.append("")
            queued_positions.append(len(ids) - 1)
            entries.append(BulkEntry(contact_id=contact_id, to=address, values=values))
        message_ids: list[int | None] = [None] * len(ids)
        for position, message_id in zip(
            queued_positions,
            template_messages_queue(batch=batch, entries=entries, created_by=campaign.created_by),
            strict=True,
        ):
            message_ids[position] = message_id
        with connection.cursor() as cursor:
            cursor.execute(_LINK_SQL, [ids, statuses, message_ids, codes, titles])
    return len(rows)


# The latest settled sends: among the latest recipients fed (recipients are fed in id order), read
# backwards along the (campaign, status, id) index, so the cost does not grow with the campaign.
_WINDOW_SQL = f"""
    SELECT count(*) FILTER (WHERE status = 'failed'), count(*) FROM (
        SELECT m.status FROM (
            SELECT id, message_id FROM {_RECIPIENT}
            WHERE campaign_id = %(campaign)s AND status = 'queued' ORDER BY id DESC LIMIT %(scan)s
        ) latest JOIN {_MESSAGE} m ON m.id = latest.message_id
        WHERE m.status NOT IN ('queued', 'sending')
        ORDER BY latest.id DESC LIMIT %(window)s
    ) settled
"""


def campaign_failures_check(*, campaign: Campaign) -> bool:
    """Pause the campaign when more than its `failure_pause_pct` of the latest settled sends
    failed; True if this call paused it."""
    if not campaign.failure_pause_pct:
        return False
    if campaign.channel == Campaign.Channel.WHATSAPP:
        with connection.cursor() as cursor:
            cursor.execute(
                _WINDOW_SQL,
                {"campaign": campaign.pk, "scan": AUTO_PAUSE_WINDOW * 5, "window": AUTO_PAUSE_WINDOW},
            )
            failed, settled = cursor.fetchone()
    else:
        failed, settled = channel_failures_window(campaign, window=AUTO_PAUSE_WINDOW)
    if settled < AUTO_PAUSE_MIN or failed * 100 <= campaign.failure_pause_pct * settled:
        return False
    top = campaign_failures(campaign=campaign)[:1]
    cause = f"; most often {top[0]['code']} {top[0]['title']}" if top else ""
    reason = (
        f"Paused automatically: {failed} of the latest {settled} sends failed "
        f"({failed * 100 // settled} %, threshold {campaign.failure_pause_pct} %){cause}"
    )
    try:
        campaign_pause(campaign=campaign, actor=None, source=AuditLog.Source.SYSTEM, reason=reason)
    except ValidationError:
        return False  # paused or cancelled meanwhile
    logger.warning("campaign %s: %s", campaign.pk, reason, extra={"campaign_id": campaign.pk})
    return True


def _in_flight(campaign: Campaign) -> bool:
    return (
        Recipient.objects.filter(campaign=campaign)
        .filter(
            Q(status=_R.PENDING)
            | Q(status=_R.SENDING)
            | Q(message__status__in=[Message.Status.QUEUED, Message.Status.SENDING])
        )
        .exists()
    )


def campaign_feed(*, campaign_id: int, token: str) -> str:
    """One step of a campaign's feeder chain (see the module's header): top up its queue, check
    its failures, finish it or schedule the next step. Returns what it did."""
    now = timezone.now()
    leased = Campaign.objects.filter(pk=campaign_id, status=_C.RUNNING, feed_token=token).update(
        feed_at=now + timedelta(seconds=FEED_LEASE_S), updated_at=now
    )
    if not leased:
        return "stale"
    campaign = Campaign.objects.select_related("phone_number", "template", "created_by").get(pk=campaign_id)
    fed = 0
    countdown = FEED_INTERVAL_S
    if campaign.channel != Campaign.Channel.WHATSAPP:
        sent = campaign_channel_send(campaign=campaign)
        if sent is None:
            return "stopped"
        fed = sum(sent.values()) - sent["released"]
        if fed:
            countdown = 0.0  # the round took its second: the next one at once
    else:
        try:
            batch = campaign_template_batch(campaign)
        except ValidationError as error:
            campaign_pause(
                campaign=campaign,
                actor=None,
                source=AuditLog.Source.SYSTEM,
                reason=f"Paused: {'; '.join(error.messages)}",
            )
            return "paused"
        rate = campaign.phone_number.rate_limit_per_s
        ahead_s = FEED_AHEAD_S
        if campaign.rate_limit_per_s:
            rate, ahead_s = min(rate, campaign.rate_limit_per_s), FEED_INTERVAL_S
        want = math.ceil(rate * ahead_s) - _backlog(campaign)
        while want > 0:
            taken = campaign_chunk_feed(campaign=campaign, batch=batch, limit=min(want, CHUNK_MAX))
            if taken is None:
                return "stopped"
            if taken == 0:
                break
            fed += taken
            want -= taken
    if campaign_failures_check(campaign=campaign):
        return "auto-paused"
    pending = Recipient.objects.filter(campaign=campaign, status=_R.PENDING).exists()
    if not pending and not _in_flight(campaign):
        with transaction.atomic():
            locked = _locked(campaign)
            if locked.status == _C.RUNNING and locked.feed_token == token:
                _finish(locked, status=_C.COMPLETED, reason="")
                return "completed"
        return "stopped"
    if not pending:
        countdown = FEED_IDLE_S
    with transaction.atomic():
        if Campaign.objects.filter(pk=campaign_id, status=_C.RUNNING, feed_token=token).exists():
            _feed_schedule(campaign_id, countdown=countdown)
    return f"fed {fed}"


def campaigns_tick() -> dict[str, int]:
    """Beat's poll: start due scheduled campaigns, restart feeders overdue, withdraw what a drain
    handed back to a paused or cancelled campaign's queue, and write reports left unwritten."""
    now = timezone.now()
    result = {"started": 0, "restarted": 0, "withdrawn": 0, "reports": 0}
    result |= {f"claims_{key}": value for key, value in channel_claims_sweep().items()}
    for campaign in Campaign.objects.filter(status=_C.SCHEDULED, scheduled_at__lte=now).order_by(
        "scheduled_at"
    ):
        try:
            campaign_start(campaign=campaign, actor=None, source=AuditLog.Source.SYSTEM, now_=True)
            result["started"] += 1
        except ValidationError as error:
            with transaction.atomic():
                locked = _locked(campaign)
                if locked.status == _C.SCHEDULED:
                    _finish(locked, status=_C.FAILED, reason=f"Could not start: {'; '.join(error.messages)}")
    overdue = Campaign.objects.filter(status=_C.RUNNING).filter(
        Q(feed_at__isnull=True) | Q(feed_at__lt=now - timedelta(seconds=FEED_INTERVAL_S * 10))
    )
    for campaign in overdue:
        with transaction.atomic():
            locked = _locked(campaign)
            if locked.status == _C.RUNNING and (
                locked.feed_at is None or locked.feed_at < now - timedelta(seconds=FEED_INTERVAL_S * 10)
            ):
                _feed_schedule(locked.pk)
                result["restarted"] += 1
    held = Campaign.objects.filter(
        Q(status=_C.PAUSED) | Q(status=_C.CANCELLED, finished_at__gte=now - timedelta(hours=1))
    )
    for campaign in held:
        with transaction.atomic():
            locked = _locked(campaign)
            if locked.status in (_C.PAUSED, _C.CANCELLED):
                result["withdrawn"] += _withdraw(
                    locked, status=_R.PENDING if locked.status == _C.PAUSED else _R.CANCELLED
                )
    unreported = Campaign.objects.filter(
        status__in=[_C.COMPLETED, _C.CANCELLED, _C.FAILED],
        report_written_at__isnull=True,
        finished_at__lt=now - timedelta(seconds=60),
    )
    for campaign in unreported:
        _report_enqueue(campaign_report_task, campaign.pk)
        result["reports"] += 1
    return result


@shared_task(name="campaigns.campaign_feed")
def campaign_feed_task(campaign_id: int, token: str) -> str:
    """One step of a campaign's feeder chain; a duplicate (an old token) does nothing."""
    return campaign_feed(campaign_id=campaign_id, token=token)

"""The queued outbound row, built the same way for a message sent alone (`message_send`) and for
many queued at once (`template_messages_queue`): the worker cannot tell them apart.

Ids are taken from the table's sequence before the INSERT, so the Graph body already carries
the message's id as `biz_opaque_callback_data` (how Meta's statuses name a message whose wamid
we never learnt, see step 5 of messaging/outbound/__init__.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import connection

from messaging.models import Message, PhoneNumber
from messaging.outbound.content import Built
from messaging.statuses import PLACEHOLDER_PREFIX


def message_ids_take(count: int) -> list[int]:
    """`count` new Message ids, in order."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Message._meta.db_table, count],
        )
        return [row[0] for row in cursor.fetchall()]


def outbound_message_build(
    *,
    pk: int,
    kind: str,
    built: Built,
    to: str,
    contact_id: int,
    phone_number: PhoneNumber,
    now: datetime,
    reply_to_wamid: str = "",
    created_by=None,
    idempotency_key: str = "",
) -> Message:
    """The unsaved row of a queued outbound message: a placeholder wamid until Meta names it, and
    the Graph request body as its payload."""
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if reply_to_wamid:
        payload["context"] = {"message_id": reply_to_wamid}
    payload.update({"type": kind, kind: built.body, "biz_opaque_callback_data": str(pk)})
    return Message(
        pk=pk,
        wamid=f"{PLACEHOLDER_PREFIX}{uuid.uuid4()}",
        direction=Message.Direction.OUTBOUND,
        type=kind,
        status=Message.Status.QUEUED,
        contact_id=contact_id,
        phone_number=phone_number,
        text=built.text,
        payload=payload,
        timestamp=now,
        context_wamid=reply_to_wamid,
        target_wamid=built.target_wamid,
        media_key=built.media_key,
        media_mime_type=built.media_mime_type,
        media_size=built.media_size,
        media_filename=built.media_filename,
        media_state=Message.MediaState.STORED if built.media_key else Message.MediaState.NONE,
        created_by=created_by,
        idempotency_key=idempotency_key,
    )

"""Many template messages queued at once, for campaigns: the same checks as `message_send`, made
once for the batch, and the messages written with one INSERT.

The rows are the ones `message_send` writes (queued, a placeholder wamid, the Graph body as
payload with the message's id as `biz_opaque_callback_data`), so the outgoing worker sends them
with the same claim, limiter and attempt protocol (messaging/outbound/); there is no second
path to Meta. Ids are taken from the table's sequence first, so the callback data is in the row
as inserted. The caller's transaction holds the INSERT: a caller that links each message to its
own record in that transaction knows, after commit, that each record has exactly one message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from messaging.conversations import conversations_outbound_prepare
from messaging.models import Message, PhoneNumber
from messaging.outbound.content import TEMPLATE_KIND, Built, template_build
from messaging.outbound.drain import outgoing_wake
from messaging.outbound.rows import message_ids_take, outbound_message_build


@dataclass(frozen=True)
class TemplateBatch:
    """A template checked against Meta's rules for one sender, ready to take per-contact values."""

    phone_number: PhoneNumber
    name: str
    language: str
    keys: tuple[str, ...]  # "header", "body", "button.0" ... in the order of the components
    text: str


def _component_order(key: str) -> tuple[int, str]:
    return {"header": (0, ""), "body": (1, "")}.get(key, (2, key.rjust(8)))


def template_components(values: dict[str, list[Any]]) -> list[dict]:
    """The Graph API's `components` for parameters by component key: a text becomes a text
    parameter, an object (a media header's) is passed as it is."""
    components = []
    for key, items in sorted(values.items(), key=lambda item: _component_order(item[0])):
        parameters = [
            item if isinstance(item, dict) else {"type": "text", "text": str(item)} for item in items
        ]
        if key.startswith("button."):
            index = key.split(".", 1)[1]
            components.append({"type": "button", "sub_type": "url", "index": index, "parameters": parameters})
        else:
            components.append({"type": key, "parameters": parameters})
    return components


def template_batch_prepare(
    *, phone_number: PhoneNumber, name: str, language: str, parameters: dict[str, list[Any]]
) -> TemplateBatch:
    """Check the template (approved, in the sender's WABA) and the number of parameters of each
    component; ValidationError names the field, as `message_send`'s."""
    if phone_number.paused_at is not None:
        reason = phone_number.paused_reason or "by an operator"
        raise ValidationError(
            {"phone_number_id": f"Sender {phone_number} is paused ({reason}): resume it first."}
        )
    if not isinstance(parameters, dict) or not all(isinstance(v, list) for v in parameters.values()):
        raise ValidationError(
            {"template.components": "Parameters are lists by component (header, body, button.N)."}
        )
    content = {"name": name, "language": {"code": language}, "components": template_components(parameters)}
    built = template_build(content, phone_number=phone_number)
    return TemplateBatch(
        phone_number=phone_number, name=name, language=language, keys=tuple(parameters), text=built.text
    )


@dataclass(frozen=True)
class BulkEntry:
    contact_id: int
    to: str
    values: dict[str, list[Any]]  # the batch's keys, each with this contact's values


def template_messages_queue(*, batch: TemplateBatch, entries: list[BulkEntry], created_by=None) -> list[int]:
    """Queue one template message per entry, in the caller's transaction; returns their ids in the
    entries' order, and wakes the outgoing worker after commit."""
    if not entries:
        return []
    ids = message_ids_take(len(entries))
    now = timezone.now()
    rows = []
    for pk, entry in zip(ids, entries, strict=True):
        template: dict[str, Any] = {"name": batch.name, "language": {"code": batch.language}}
        if entry.values:
            template["components"] = template_components(entry.values)
        rows.append(
            outbound_message_build(
                pk=pk,
                kind=TEMPLATE_KIND,
                built=Built(template, text=batch.text),
                to=entry.to,
                contact_id=entry.contact_id,
                phone_number=batch.phone_number,
                now=now,
                created_by=created_by,
            )
        )
    conversations_outbound_prepare(messages=rows, reply=False)  # a campaign is nobody's answer
    Message.objects.bulk_create(rows, batch_size=1000)
    transaction.on_commit(outgoing_wake)
    return ids

"""Messages, statuses, campaigns and archive runs for the dashboard's tests, written the way
production writes them: inbound messages through a stored webhook body applied by messaging, and
statuses through messaging.statuses.status_record, so the analytics events are messaging's own."""

import json
from datetime import UTC, date, datetime, time, timedelta

from archival.models import ArchiveBatch
from campaigns.models import Campaign, Recipient
from contacts.models import Contact
from messaging.inbound.apply import inbound_payload_apply
from messaging.inbound.events import inbound_event_record
from messaging.models import Message, PhoneNumber
from messaging.statuses import status_record
from tests.factories import ContactFactory, MessageFactory
from tests.messaging.webhook_helpers import envelope

RE_ENGAGEMENT = (131047, "Re-engagement message")
UNDELIVERABLE = (131026, "Message undeliverable")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def customer_writes(*, number: PhoneNumber, wa_id: str, when: datetime, wamid: str) -> Message:
    body = envelope(
        {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": number.display_phone_number,
                "phone_number_id": number.phone_number_id,
            },
            "contacts": [{"profile": {"name": f"Customer {wa_id[-4:]}"}, "wa_id": wa_id}],
            "messages": [
                {"from": wa_id, "id": wamid, "timestamp": str(int(when.timestamp())), "type": "text",
                 "text": {"body": "hello"}}
            ],
        }
    )  # fmt: skip
    event, _created = inbound_event_record(body=json.dumps(body).encode())
    inbound_payload_apply(event=event)
    return Message.objects.get(wamid=wamid)


def status(message: Message, name: str, when: datetime, error: tuple[int, str] | None = None) -> str:
    payload: dict = {"id": message.wamid, "status": name, "timestamp": str(int(when.timestamp()))}
    if error is not None:
        payload["errors"] = [{"code": error[0], "title": error[1], "message": error[1]}]
    return status_record(wamid=message.wamid, status=name, at=when, payload=payload)


def business_sends(
    *,
    number: PhoneNumber,
    when: datetime,
    reached: str = "sent",
    error: tuple[int, str] | None = None,
    contact: Contact | None = None,
) -> Message:
    """An outbound message and Meta's statuses for it, a minute apart: up to `reached` (sent,
    delivered, read), or sent then failed with `error`."""
    message = MessageFactory(
        direction=Message.Direction.OUTBOUND,
        status=Message.Status.QUEUED,
        phone_number=number,
        contact=contact or ContactFactory(),
        timestamp=when,
    )
    steps = ["sent", "delivered", "read"]
    for index, name in enumerate(steps[: steps.index(reached) + 1]):
        status(message, name, when + timedelta(minutes=index))
    if error is not None:
        status(message, "failed", when + timedelta(minutes=1), error)
    return message


def campaign_with(
    *, name: str, number: PhoneNumber, started: datetime, reached: list[str], failed: int = 0
) -> Campaign:
    """A WhatsApp campaign with one recipient per entry of `reached` and `failed` failed ones."""
    campaign = Campaign.objects.create(
        name=name, phone_number=number, status=Campaign.Status.COMPLETED, started_at=started,
        total_recipients=len(reached) + failed,
    )  # fmt: skip
    for step in [*reached, *["failed"] * failed]:
        contact = ContactFactory()
        message = business_sends(
            number=number,
            when=started,
            contact=contact,
            reached="sent" if step == "failed" else step,
            error=UNDELIVERABLE if step == "failed" else None,
        )
        Recipient.objects.create(
            campaign=campaign, contact=contact, address=contact.phone, message=message,
            status=Recipient.Status.QUEUED,
        )  # fmt: skip
    return campaign


def archive_run(*, when: datetime, messages: int, size: int) -> ArchiveBatch:
    return ArchiveBatch.objects.create(
        kind=ArchiveBatch.Kind.MESSAGES,
        day=(when - timedelta(days=91)).date(),
        state=ArchiveBatch.State.DELETED,
        record_count=messages,
        deleted_count=messages,
        bytes=size,
        deleted_at=when,
    )

"""One builder for the queued outbound row: a template queued alone by the send service and the
same template queued in bulk (campaigns) make the same row."""

import pytest
from django.forms.models import model_to_dict

from messaging.bulk import BulkEntry, template_batch_prepare, template_messages_queue
from messaging.models import Message, Template
from messaging.outbound.send import message_send
from tests.factories import ContactFactory, PhoneNumberFactory, UserFactory

pytestmark = pytest.mark.django_db

DIFFERENT = {"id", "wamid", "timestamp", "created_at", "updated_at", "payload"}


def test_a_template_queued_alone_and_in_bulk_makes_the_same_row():
    sender = PhoneNumberFactory(waba_id="4242")
    Template.objects.create(
        waba_id="4242",
        name="ready",
        language="en",
        status="APPROVED",
        components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} is ready."}],
    )
    user = UserFactory()
    contact = ContactFactory(phone="+447700900777", wa_id="447700900777")
    values = {"body": ["Ann", "A-17"]}

    alone = message_send(
        phone_number=sender,
        contact=contact,
        kind="template",
        content={
            "name": "ready",
            "language": {"code": "en"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": v} for v in values["body"]]}
            ],
        },
        actor=user,
        source="api",
    )
    batch = template_batch_prepare(phone_number=sender, name="ready", language="en", parameters=values)
    [pk] = template_messages_queue(
        batch=batch,
        entries=[BulkEntry(contact_id=contact.pk, to="447700900777", values=values)],
        created_by=user,
    )
    bulk = Message.objects.get(pk=pk)
    alone.refresh_from_db()

    assert {k: v for k, v in model_to_dict(alone).items() if k not in DIFFERENT} == {
        k: v for k, v in model_to_dict(bulk).items() if k not in DIFFERENT
    }
    assert alone.payload.pop("biz_opaque_callback_data") == str(alone.pk)
    assert bulk.payload.pop("biz_opaque_callback_data") == str(bulk.pk)
    assert alone.payload == bulk.payload
    assert alone.wamid.startswith("wharf-") and bulk.wamid.startswith("wharf-")

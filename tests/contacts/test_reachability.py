"""Reachable on a channel: one rule, in Python (before a send), as a queryset filter and as the
SQL a campaign's audience is selected with; the three agree for every channel and case."""

import pytest
from django.db import connection
from django.utils import timezone

from contacts.models import OPT_OUT_FIELDS, Channel, Contact
from contacts.reachability import (
    NO_ADDRESS,
    OPTED_OUT,
    contact_address,
    contact_address_sql,
    contact_reachable,
    contact_reachable_q,
    contact_reachable_sql,
    contact_unreachable_sql,
)
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

NO_ADDRESS_FIELDS = {
    Channel.WHATSAPP: [{"phone": None, "wa_id": ""}, {"phone": "", "wa_id": ""}, {"phone": "+", "wa_id": ""}],
    Channel.SMS: [{"phone": None, "wa_id": "15550001111"}, {"phone": ""}],
    Channel.EMAIL: [{"email": ""}],
}


def sql_answers(channel: Channel, contact: Contact) -> tuple[str | None, str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {contact_unreachable_sql(channel)}, {contact_address_sql(channel)},"
            f" {contact_reachable_sql(channel)}"
            " FROM contacts_contact c WHERE c.id = %s",
            [contact.pk],
        )
        return cursor.fetchone()


@pytest.mark.parametrize("channel", list(Channel))
def test_python_queryset_and_sql_agree_on_every_case(channel):
    expected: dict[int, str | None] = {}
    first = NO_ADDRESS_FIELDS[channel][0]  # phone and wa_id are unique: "" only once each
    for fields in NO_ADDRESS_FIELDS[channel]:
        expected[ContactFactory(**fields).pk] = NO_ADDRESS
    opted_out_too = ContactFactory(**{**first, "wa_id": ""}, **{OPT_OUT_FIELDS[channel][0]: timezone.now()})
    expected[opted_out_too.pk] = NO_ADDRESS  # an address is looked for first
    expected[ContactFactory(**{OPT_OUT_FIELDS[channel][0]: timezone.now()}).pk] = OPTED_OUT
    expected[ContactFactory().pk] = None
    expected[ContactFactory(phone=None, wa_id="15550002222").pk] = (
        None if channel == Channel.WHATSAPP else (NO_ADDRESS if channel == Channel.SMS else None)
    )
    other = next(c for c in Channel if c != channel)  # another channel's opt-out changes nothing
    expected[ContactFactory(**{OPT_OUT_FIELDS[other][0]: timezone.now()}).pk] = None

    reachable_ids = set(Contact.objects.filter(contact_reachable_q(channel)).values_list("id", flat=True))
    for contact in Contact.objects.filter(pk__in=expected):
        reason, address, reachable = sql_answers(channel, contact)
        assert contact_reachable(contact, channel) == reason == expected[contact.pk], (channel, contact.pk)
        assert contact_address(contact, channel) == address
        assert (contact.pk in reachable_ids) == (reason is None) == reachable


def test_whatsapp_writes_to_the_whatsapp_id_else_the_phone_without_its_plus():
    assert (
        contact_address(Contact(phone="+447700900123", wa_id="447700900999"), Channel.WHATSAPP)
        == "447700900999"
    )
    assert contact_address(Contact(phone="+447700900123", wa_id=""), Channel.WHATSAPP) == "447700900123"

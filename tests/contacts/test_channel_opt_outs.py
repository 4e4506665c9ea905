"""Each channel's own opt-out: services, the reachable filter, the API's output and the admin."""

import pytest
from django.core.exceptions import ValidationError

from contacts.models import Channel, Contact
from contacts.reachability import contact_reachable_q
from contacts.services.contact import contact_channel_opt_in, contact_channel_opt_out
from core.models import AuditLog
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("channel", "field"),
    [("email", "email_opted_out_at"), ("sms", "sms_opted_out_at"), ("whatsapp", "opted_out_at")],
)
def test_opting_out_of_one_channel_leaves_the_others(channel, field):
    contact = ContactFactory()

    contact_channel_opt_out(contact=contact, channel=channel, actor=None, source=AuditLog.Source.SYSTEM)
    contact_channel_opt_out(contact=contact, channel=channel, actor=None, source=AuditLog.Source.SYSTEM)

    contact.refresh_from_db()
    opted = {
        name for name in ("opted_out_at", "email_opted_out_at", "sms_opted_out_at") if getattr(contact, name)
    }
    assert opted == {field}
    assert contact.is_opted_out_of(channel)
    assert AuditLog.objects.filter(target_id=str(contact.pk), action__endswith="opt_out").count() == 1


def test_opting_back_in_lifts_only_that_channel_and_is_audited(admin_user):
    contact = ContactFactory()
    for channel in ("email", "sms"):
        contact_channel_opt_out(contact=contact, channel=channel, reason="STOP", actor=None, source="webhook")

    contact_channel_opt_in(
        contact=contact, channel="sms", reason="asked by phone", actor=admin_user, source="admin"
    )

    contact.refresh_from_db()
    assert contact.sms_opted_out_at is None and contact.sms_opt_out_source == ""
    assert contact.email_opted_out_at is not None and contact.email_opt_out_source == "STOP"
    log = AuditLog.objects.get(action="contact.sms_opt_in")
    assert (log.actor, log.changes["sms_opt_out_source"]) == (admin_user, ["STOP", ""])


def test_an_unknown_channel_is_refused():
    with pytest.raises(ValueError):
        contact_channel_opt_out(contact=ContactFactory(), channel="fax", actor=None, source="system")
    with pytest.raises(ValidationError):
        contact_channel_opt_out(
            contact=ContactFactory(), channel="email", reason="x" * 65, actor=None, source="api"
        )


def test_reachable_means_an_address_and_no_opt_out_on_that_channel():
    both = ContactFactory()
    no_email = ContactFactory(email="")
    no_phone = ContactFactory(phone=None, wa_id="15550001111")
    email_out = ContactFactory()
    contact_channel_opt_out(contact=email_out, channel="email", actor=None, source="system")

    def reachable(channel):
        return set(Contact.objects.filter(contact_reachable_q(channel)))

    assert reachable(Channel.EMAIL) == {both, no_phone}
    assert reachable(Channel.SMS) == {both, no_email, email_out}
    assert reachable(Channel.WHATSAPP) == {both, no_email, no_phone, email_out}


def test_the_api_and_the_admin_show_each_channels_opt_out(api_client, admin_client):
    contact = ContactFactory()
    contact_channel_opt_out(contact=contact, channel="sms", reason="STOP", actor=None, source="webhook")

    body = api_client("contacts.view_contact").get(f"/api/v1/contacts/{contact.pk}/").json()
    page = admin_client.get(f"/admin/contacts/contact/{contact.pk}/change/")

    assert body["sms_opt_out_source"] == "STOP" and body["sms_opted_out_at"]
    assert body["email_opted_out_at"] is None and body["email_opt_out_source"] == ""
    assert page.status_code == 200
    assert b"SMS opted out at" in page.content


def test_the_api_opts_out_of_and_back_into_one_channel(api_client):
    contact = ContactFactory()
    client = api_client("contacts.change_contact")
    url = f"/api/v1/contacts/{contact.pk}/"

    out = client.post(url + "opt-out/", {"channel": "email", "reason": "asked by phone"}, format="json")
    back = client.post(url + "opt-in/", {"channel": "email"}, format="json")
    bad = client.post(url + "opt-out/", {"channel": "fax"}, format="json")

    assert out.status_code == 200
    assert out.json()["email_opt_out_source"] == "asked by phone" and out.json()["is_opted_out"] is False
    assert back.json()["email_opted_out_at"] is None
    assert (bad.status_code, list(bad.json())) == (400, ["channel"])
    assert [log.source for log in AuditLog.objects.filter(target_id=str(contact.pk))] == ["api", "api"]


def test_admin_actions_opt_the_selection_out_of_email_or_sms(admin_client):
    contacts = ContactFactory.create_batch(3)
    ids = [str(contacts[0].pk), str(contacts[1].pk)]

    for name in ("opt_out_email", "opt_out_email", "opt_out_sms"):
        admin_client.post("/admin/contacts/contact/", {"action": name, "_selected_action": ids})

    assert set(Contact.objects.filter(email_opted_out_at__isnull=False)) == set(contacts[:2])
    assert set(Contact.objects.filter(sms_opted_out_at__isnull=False)) == set(contacts[:2])
    assert not Contact.objects.filter(opted_out_at__isnull=False).exists()
    assert Contact.objects.get(pk=contacts[0].pk).email_opt_out_source == "admin"
    logs = AuditLog.objects.filter(action__in=["contacts.email_opt_out", "contacts.sms_opt_out"])
    assert sorted(log.action for log in logs) == ["contacts.email_opt_out", "contacts.sms_opt_out"]

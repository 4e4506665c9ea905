"""Email through a real SMTP server on loopback: headers, the unsubscribe link, SMTP's refusals."""

import re
import smtplib

import pytest
from django.core import signing
from django.core.mail import get_connection

from contacts.models import Channel
from core.models import AuditLog
from devstack.stack import free_port
from messaging.channels import ChannelError, email_send, unsubscribe_token, unsubscribe_url
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def send(contact, **kwargs):
    values = {"subject": "Spring sale", "body": "Half price on Friday.", "reference": "cr-42"} | kwargs
    return email_send(contact=contact, **values)


def test_an_email_arrives_with_its_ids_and_the_unsubscribe_header_and_link(smtp_server, settings):
    contact = ContactFactory(email="ana@example.com")

    message_id = send(contact)

    [message] = smtp_server.messages
    assert message["To"] == "ana@example.com"
    assert message["From"] == settings.DEFAULT_FROM_EMAIL
    assert message["Subject"] == "Spring sale"
    assert message["Message-ID"] == message_id
    assert re.fullmatch(r"<[^<>@\s]+@localhost>", message_id)
    assert message["X-Wharf-Reference"] == "cr-42"
    url = unsubscribe_url(contact=contact)
    assert url.startswith("https://wharf.test/unsubscribe/")
    assert message["List-Unsubscribe"].strip() == f"<{url}>"  # folded: longer than a line
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = message.get_content()
    assert body.startswith("Half price on Friday.")
    assert url in body
    assert smtp_server.envelopes[0].rcpt_tos == ["ana@example.com"]


def test_an_html_alternative_carries_the_link_too(smtp_server):
    contact = ContactFactory()

    send(contact, html="<p>Half price</p>")

    [message] = smtp_server.messages
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<p>Half price</p>" in html
    assert unsubscribe_url(contact=contact).replace("&", "&amp;") in html
    assert unsubscribe_url(contact=contact) in message.get_body(preferencelist=("plain",)).get_content()


def test_one_connection_can_carry_many_emails(smtp_server):
    contacts = ContactFactory.create_batch(3)
    with get_connection() as connection:
        ids = [send(contact, connection=connection) for contact in contacts]

    assert len(set(ids)) == 3
    assert [m["Message-ID"] for m in smtp_server.messages] == ids


def test_no_address_and_opted_out_are_refused_before_sending(smtp_server):
    with pytest.raises(ChannelError) as no_address:
        send(ContactFactory(email=""))
    opted_out = ContactFactory()
    opted_out.email_opted_out_at = opted_out.created_at
    with pytest.raises(ChannelError) as refused:
        send(opted_out)

    assert (no_address.value.code, no_address.value.retryable) == ("no_address", False)
    assert (refused.value.code, refused.value.retryable, refused.value.request_left) == (
        "opted_out",
        False,
        False,
    )
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("reply", "code", "retryable"),
    [("550 5.1.1 No such user", "smtp_550", False), ("451 4.3.0 Try again later", "smtp_451", True)],
)
def test_a_refused_recipient_maps_to_its_smtp_code(smtp_server, reply, code, retryable):
    contact = ContactFactory()
    smtp_server.refuse[contact.email] = reply

    with pytest.raises(ChannelError) as error:
        send(contact)

    assert (error.value.code, error.value.retryable, error.value.request_left) == (code, retryable, False)
    assert reply.split(" ", 1)[1] in error.value.detail
    assert smtp_server.messages == []


@pytest.mark.parametrize(("reply", "retryable"), [("554 5.6.0 Rejected", False), ("452 4.3.1 Full", True)])
def test_a_refused_message_body_maps_to_its_smtp_code(smtp_server, reply, retryable):
    smtp_server.data_reply = reply

    with pytest.raises(ChannelError) as error:
        send(ContactFactory())

    assert error.value.code == f"smtp_{reply[:3]}"
    assert error.value.retryable is retryable
    assert error.value.request_left is False


def test_a_server_that_refuses_connections_is_retryable_and_nothing_left(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()

    with pytest.raises(ChannelError) as error:
        send(ContactFactory())

    assert (error.value.code, error.value.retryable, error.value.request_left) == ("connection", True, False)
    assert isinstance(error.value.__cause__, OSError)


def test_a_header_with_a_line_break_is_refused():
    with pytest.raises(ChannelError) as error:
        send(ContactFactory(), subject="Sale\nBcc: everyone@example.com")

    assert (error.value.code, error.value.retryable) == ("invalid", False)


def test_the_console_backend_needs_no_server(settings, capsys):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    message_id = send(ContactFactory())

    assert f"Message-ID: {message_id}" in capsys.readouterr().out


# -- the unsubscribe link --------------------------------------------------------------------------


def path_of(url: str) -> str:
    return url.removeprefix("https://wharf.test")


def test_get_asks_and_changes_nothing(client):
    contact = ContactFactory()

    response = client.get(path_of(unsubscribe_url(contact=contact)))

    assert response.status_code == 200
    assert b'<form method="post">' in response.content
    contact.refresh_from_db()
    assert contact.email_opted_out_at is None


def test_post_opts_the_contact_out_of_email_only_once_and_audited(client):
    contact = ContactFactory()
    path = path_of(unsubscribe_url(contact=contact))

    first = client.post(path)
    second = client.post(path)

    assert first.status_code == second.status_code == 200
    assert b"You are unsubscribed" in first.content
    contact.refresh_from_db()
    assert contact.email_opted_out_at is not None
    assert contact.email_opt_out_source == "unsubscribe link"
    assert contact.opted_out_at is None and contact.sms_opted_out_at is None
    [log] = AuditLog.objects.filter(action="contact.email_opt_out")
    assert (log.source, log.target_id) == (AuditLog.Source.UNSUBSCRIBE, str(contact.pk))
    assert b"You are unsubscribed" in client.get(path).content


def test_one_click_post_from_a_mail_client_without_csrf_opts_out(smtp_server):
    from django.test import Client

    contact = ContactFactory()
    send(contact)
    url = smtp_server.messages[0]["List-Unsubscribe"].strip().strip("<>")

    response = Client(enforce_csrf_checks=True).post(
        path_of(url), data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.email_opted_out_at is not None
    with pytest.raises(ChannelError, match="opted_out"):
        send(contact)


def test_a_tampered_or_foreign_token_is_refused(client):
    contact = ContactFactory()
    token = unsubscribe_token(contact=contact, channel=Channel.EMAIL)
    forged = signing.Signer(salt="another purpose").sign_object({"c": contact.pk, "ch": "email"})

    for bad in (token[:-2] + "xx", forged, "nothing"):
        response = client.post(f"/unsubscribe/{bad}/")
        assert response.status_code == 400
    contact.refresh_from_db()
    assert contact.email_opted_out_at is None


def test_a_deleted_contact_is_not_found(client):
    contact = ContactFactory()
    path = path_of(unsubscribe_url(contact=contact))
    contact.delete()

    assert client.post(path).status_code == 404


def test_smtp_errors_keep_their_types():
    assert issubclass(smtplib.SMTPRecipientsRefused, OSError)


def test_a_channel_error_survives_pickling():
    import pickle

    error = ChannelError(code="smtp_451", title="Later", detail="4.3.0", retryable=True, request_left=False)

    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes

    assert (copy.code, copy.title, copy.detail, copy.retryable, copy.request_left) == (
        "smtp_451",
        "Later",
        "4.3.0",
        True,
        False,
    )
    assert str(copy) == str(error)

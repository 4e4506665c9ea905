"""Email to one contact through Django's email backend, with RFC 8058 one-click unsubscribe.

Every message carries an unsubscribe link (appended to the body, and in the `List-Unsubscribe`
header with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, so mail clients show their own
button and POST to it), a Message-ID made here (the id returned, kept as the provider's id) and
the caller's reference in `X-Wharf-Reference`. The link holds a signed token naming the contact and
the channel; it does not expire, as RFC 8058 asks of links in messages people keep.

Errors: SMTP's 4xx replies are retryable and 5xx are not; a connection that could not be opened
(refused, unknown host, TLS or login failure) sent nothing; a timeout or a dropped connection
after the message started to leave may have sent it (`request_left`).
"""

from __future__ import annotations

import smtplib
from contextlib import suppress
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core import signing
from django.core.mail import BadHeaderError, EmailMultiAlternatives, get_connection
from django.urls import reverse
from django.utils.html import escape

from contacts.models import Channel, Contact
from messaging.channels.errors import ChannelError, contact_reachable_check

UNSUBSCRIBE_SALT = "wharf.channels.unsubscribe"
REFERENCE_HEADER = "X-Wharf-Reference"


def unsubscribe_token(*, contact: Contact, channel: str) -> str:
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object({"c": contact.pk, "ch": Channel(channel).value})


def unsubscribe_token_read(token: str) -> tuple[int, Channel]:
    """The contact id and channel a token names; raises signing.BadSignature for any other string."""
    try:
        value = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
        return int(value["c"]), Channel(value["ch"])
    except (TypeError, KeyError, ValueError) as error:
        raise signing.BadSignature(str(error)) from None


def unsubscribe_url(*, contact: Contact, channel: str = Channel.EMAIL) -> str:
    token = unsubscribe_token(contact=contact, channel=channel)
    return settings.PUBLIC_BASE_URL + reverse("unsubscribe", args=[token])


def email_send(
    *,
    contact: Contact,
    subject: str,
    body: str,
    reference: str,
    html: str = "",
    from_email: str | None = None,
    connection=None,
) -> str:
    """Sends one email to contact.email; returns its Message-ID ("<...@domain>").

    `html`, if given, goes as an alternative to the plain `body`, the link appended to both.
    `connection` is an open backend connection to reuse across sends (get_connection()); without
    one, each call opens and closes its own.
    """
    contact_reachable_check(contact=contact, channel=Channel.EMAIL)
    from_email = from_email or settings.DEFAULT_FROM_EMAIL
    url = unsubscribe_url(contact=contact, channel=Channel.EMAIL)
    message_id = make_msgid(domain=parseaddr(from_email)[1].rpartition("@")[2] or "localhost")
    message = EmailMultiAlternatives(
        subject=subject,
        body=f"{body.rstrip()}\n\n-- \nTo stop these emails, unsubscribe: {url}\n",
        from_email=from_email,
        to=[contact.email],
        headers={
            "Message-ID": message_id,
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            REFERENCE_HEADER: str(reference),
        },
    )
    if html:
        link = f'<p><a href="{escape(url)}">Unsubscribe</a></p>'
        message.attach_alternative(f"{html}\n{link}", "text/html")
    try:
        message.message()  # builds it, so a bad header is refused before anything opens
    except (BadHeaderError, ValueError) as error:
        raise ChannelError(
            code="invalid", title="The email cannot be built.", detail=str(error), retryable=False
        ) from error
    backend = connection or get_connection(fail_silently=False)
    try:
        opened = backend.open()
    except OSError as error:
        raise _error(error, left=False) from error
    try:
        backend.send_messages([message])
    except OSError as error:
        raise _error(error, left=True) from error
    finally:
        if opened and connection is None:
            with suppress(OSError):
                backend.close()
    return message_id


def _error(error: OSError, *, left: bool) -> ChannelError:
    """ChannelError for what smtplib or the socket raised; `left`: the message was on its way."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()), (550, b"recipient refused"))
        return _reply_error(code, reply)
    if isinstance(error, smtplib.SMTPResponseException):
        return _reply_error(error.smtp_code, error.smtp_error)
    if isinstance(error, TimeoutError):
        return ChannelError(
            code="timeout", title="The mail server did not answer in time.", retryable=True, request_left=left
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return ChannelError(
            code="connection",
            title="The mail server closed the connection.",
            detail=str(error),
            retryable=True,
            request_left=left,
        )
    return ChannelError(
        code="connection",
        title="The mail server cannot be reached.",
        detail=str(error),
        retryable=True,
        request_left=left,
    )


def _reply_error(code: int, reply: bytes | str) -> ChannelError:
    """An SMTP refusal: nothing was sent, and 4xx may pass later while 5xx will not."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return ChannelError(
        code=f"smtp_{code}",
        title=f"The mail server refused the message ({code}).",
        detail=text,
        retryable=400 <= code < 500,
    )

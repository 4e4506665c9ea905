"""Meta's webhook endpoint: the handshake, signatures, sizes, rejected bodies, and deduplication."""

import json
import logging
import threading

import pytest
from django.db import connection
from django.test import Client

from messaging.inbound.events import inbound_events_drain, inbound_events_wake
from messaging.models import InboundEvent, Message
from tests.messaging.webhook_helpers import WEBHOOK_URL, sign, text_body, webhook_post

VERIFY = {"hub.mode": "subscribe", "hub.verify_token": "test-verify-token", "hub.challenge": "1158201444"}


def test_verification_answers_with_the_challenge_as_plain_text(client):
    response = client.get(WEBHOOK_URL, VERIFY)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {**VERIFY, "hub.verify_token": "wrong"},
        {**VERIFY, "hub.verify_token": ""},
        {**VERIFY, "hub.mode": "unsubscribe"},
        {"hub.challenge": "1158201444"},
        {},
    ],
)
def test_verification_is_refused_without_the_token(client, params):
    response = client.get(WEBHOOK_URL, params)

    assert response.status_code == 403
    assert b"1158201444" not in response.content


def test_verification_is_refused_when_no_token_is_configured(client, settings):
    settings.WHATSAPP_VERIFY_TOKEN = ""

    assert client.get(WEBHOOK_URL, {**VERIFY, "hub.verify_token": ""}).status_code == 403


@pytest.mark.django_db
def test_an_unsigned_delivery_is_refused_stored_nowhere_and_logged(client, caplog):
    caplog.set_level(logging.WARNING, logger="messaging.inbound.webhook")

    response = webhook_post(client, text_body(wamid="wamid.unsigned", text="hi"), signature=None)

    assert response.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert "missing signature" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [
        sign(text_body(wamid="wamid.forged", text="hi"), secret="another-secret"),
        sign(text_body(wamid="wamid.other", text="hi")),  # a valid signature of another body
        sign(text_body(wamid="wamid.forged", text="hi")).removeprefix("sha256="),  # no prefix
        "sha1=" + "0" * 40,
        "sha256=",
        "sha256=ünïcödé",
    ],
)
def test_a_wrong_signature_is_refused_and_neither_secret_nor_signature_is_logged(client, caplog, signature):
    caplog.set_level(logging.DEBUG)

    response = webhook_post(client, text_body(wamid="wamid.forged", text="hi"), signature=signature)

    assert response.status_code == 403
    assert InboundEvent.objects.count() == 0
    assert "invalid signature" in caplog.text
    assert "test-app-secret" not in caplog.text
    if given := signature.removeprefix("sha256="):
        assert given not in caplog.text


@pytest.mark.django_db
def test_no_delivery_is_accepted_when_no_app_secret_is_configured(client, settings):
    body = text_body(wamid="wamid.nosecret", text="hi")
    signature = sign(body, secret="")
    settings.WHATSAPP_APP_SECRET = ""

    assert webhook_post(client, body, signature=signature).status_code == 403
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_body_over_5_mib_is_refused_with_413(client):
    body = json.dumps({"object": "whatsapp_business_account", "pad": "x" * (5 * 1024 * 1024)}).encode()

    response = webhook_post(client, body)

    assert response.status_code == 413
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    body = text_body(wamid="wamid.declared", text="hi")

    response = client.post(
        WEBHOOK_URL,
        data=body,
        content_type="application/json",
        headers={"X-Hub-Signature-256": sign(body)},
        CONTENT_LENGTH="1001",
    )

    assert response.status_code == 413
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b'{"a": NaN}',
        b'{"a": 1e999}',
        b"\xff\xfe{}",
        b"{",
    ],
)
def test_a_signed_body_that_is_not_a_json_object_is_400_and_kept_as_rejected(client, body):
    response = webhook_post(client, body)

    assert response.status_code == 400
    assert "error" in response.json()
    event = InboundEvent.objects.get()
    assert event.state == InboundEvent.State.REJECTED
    assert bytes(event.body) == body
    assert event.payload is None


@pytest.mark.django_db
def test_a_signed_json_object_is_stored_pending_and_answered_at_once(
    client, django_capture_on_commit_callbacks
):
    body = text_body(wamid="wamid.HBgMNDQ3NzAwOTAwMTIzFQIAEhgUM0E", text="Hello")

    with django_capture_on_commit_callbacks() as callbacks:
        response = webhook_post(client, body)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    event = InboundEvent.objects.get()
    assert event.state == InboundEvent.State.PENDING
    assert bytes(event.body) == body
    assert event.payload == json.loads(body)
    assert event.attempts == 0 and event.processed_at is None
    assert callbacks == [inbound_events_wake]  # the wake comes after the commit, not in it


@pytest.mark.django_db
def test_an_identical_body_again_is_200_stored_once_and_woken_once(
    client, django_capture_on_commit_callbacks
):
    body = text_body(wamid="wamid.again", text="Hello")

    with django_capture_on_commit_callbacks() as callbacks:
        statuses = [webhook_post(client, body).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert InboundEvent.objects.count() == 1
    assert callbacks == [inbound_events_wake]


@pytest.mark.django_db
def test_a_rejected_body_again_is_400_and_stored_once(client):
    assert [webhook_post(client, b"<xml/>").status_code for _ in range(2)] == [400, 400]
    assert InboundEvent.objects.count() == 1


@pytest.mark.django_db
def test_text_that_jsonb_cannot_hold_is_replaced_in_the_payload_and_kept_in_the_body(client):
    body = (
        b'{"a": "x\\u0000y", "b\\ud800": "\\udfff", "emoji": "\\ud83d\\ude00",'
        b' "n": [1.5, -0, 10000000000000000000000]}'
    )

    response = webhook_post(client, body)

    assert response.status_code == 200
    event = InboundEvent.objects.get()
    assert event.payload == {
        "a": "x\ufffdy",
        "b\ufffd": "\ufffd",
        "emoji": "\U0001f600",
        "n": [1.5, 0, 10000000000000000000000],
    }
    assert bytes(event.body) == body


def test_other_methods_are_not_allowed(client):
    assert client.put(WEBHOOK_URL, data=b"{}").status_code == 405
    assert client.delete(WEBHOOK_URL).status_code == 405


def test_the_same_body_three_times_concurrently_is_stored_once(transactional_db):
    body = text_body(wamid="wamid.concurrent", text="Hello")
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(webhook_post(Client(), body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == [200, 200, 200]
    assert InboundEvent.objects.filter(state=InboundEvent.State.PENDING).count() == 1
    assert inbound_events_drain().processed == 1
    assert Message.objects.filter(wamid="wamid.concurrent").count() == 1

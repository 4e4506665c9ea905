"""Logs as production writes them (LOG_FORMAT=json through core.logging's configuration, at DEBUG):
JSON lines with the request's or the task's id and the message's, and never a secret, through an
API send that reaches the sandbox Graph API, Meta's webhook, and SNS's inbound SMS post."""

import base64
import io
import json
import logging
import logging.config
import re

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from core.logging import REDACTED, logging_config
from messaging.inbound.events import inbound_events_process_task
from messaging.models import InboundEvent, Message
from messaging.outbound.drain import outbound_send_task
from tests.factories import ContactFactory, PhoneNumberFactory
from tests.messaging.test_channels_sms_inbound import TOPIC as SNS_TOPIC
from tests.messaging.test_channels_sms_inbound import notification as sms_notification
from tests.messaging.test_channels_sms_inbound import signed as sns_signed
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID, text_body, webhook_post
from tests.stack import ACCESS_TOKEN, APP_SECRET, SMS_WEBHOOK_TOKEN

VERIFY_TOKEN = "test-verify-token"


def secrets() -> dict[str, str]:
    return {
        "access token": ACCESS_TOKEN,
        "app secret": APP_SECRET,
        "verify token": VERIFY_TOKEN,
        "SNS basic-auth password": SMS_WEBHOOK_TOKEN,
        "Django secret key": settings.SECRET_KEY,
    }


class Captured:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def leaks(self) -> list[str]:
        text = self.text()
        return [name for name, value in secrets().items() if value in text]


@pytest.fixture
def json_logs(settings):
    """The root logger configured as in production (JSON, both filters), at DEBUG, into a buffer;
    the session's configuration afterwards."""
    assert settings.WHATSAPP_VERIFY_TOKEN == VERIFY_TOKEN
    stream = io.StringIO()
    logging.config.dictConfig(logging_config(log_format="json", level="DEBUG", stream=stream))
    try:
        yield Captured(stream)
    finally:
        logging.config.dictConfig(settings.LOGGING)


@pytest.fixture
def sandbox(settings):
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0
    http = httpx.Client(base_url=settings.WHATSAPP_GRAPH_URL.rsplit("/", 1)[0] + "/sandbox/", timeout=10)
    http.post("reset").raise_for_status()
    http.post("config", json={"statuses": False}).raise_for_status()
    yield http
    http.post("reset")
    http.close()


def test_a_send_a_webhook_and_an_sns_post_log_json_lines_with_their_ids_and_no_secret(
    json_logs, sandbox, broker, api_client, client, settings
):
    settings.SMS_SNS_TOPIC_ARNS = [*settings.SMS_SNS_TOPIC_ARNS, SNS_TOPIC]  # the topic SNS posts from
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID, rate_limit_per_s=80)
    contact = ContactFactory(phone="+447700900123", wa_id="447700900123", last_inbound_at=timezone.now())

    # an API client sends; a worker's drain (run here, as Celery runs it) gives it to the Graph API
    api = api_client("messaging.add_message")
    answer = api.post(
        "/api/v1/messages/",
        {"contact": contact.pk, "type": "text", "text": {"body": "Hi"}},
        format="json",
        headers={"X-Request-ID": "req-send-1"},
    )
    assert answer.status_code == 201, answer.content
    assert answer["X-Request-ID"] == "req-send-1"
    drained = outbound_send_task.apply()
    message = Message.objects.get(pk=answer.json()["id"])
    assert message.status == Message.Status.SENT

    # Meta posts a message; a worker applies it
    webhook = webhook_post(client, text_body(wamid="wamid.logs-1", text="hello"))
    assert webhook.status_code == 200
    request_id = webhook["X-Request-ID"]
    processed = inbound_events_process_task.apply()
    event = InboundEvent.objects.get()
    assert event.state == InboundEvent.State.PROCESSED

    # Meta's verification handshake carries the verify token in the query
    handshake = client.get(
        "/webhooks/whatsapp/",
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"},
    )
    assert handshake.status_code == 200

    # SNS posts an inbound SMS, with the webhook's password in basic auth
    sms = client.post(
        "/webhooks/sms/",
        data=json.dumps(sns_signed(sms_notification("+447700900999", "hello by SMS"))),
        content_type="text/plain; charset=UTF-8",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"sns:{SMS_WEBHOOK_TOKEN}".encode()).decode(),
    )
    assert sms.status_code == 200, sms.content

    assert json_logs.leaks() == []
    lines = json_logs.lines()  # every line parses
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    requests = {
        (line.get("request_id"), line["message"]) for line in lines if line["logger"] == "wharf.request"
    }
    assert ("req-send-1", "POST /api/v1/messages/ 201") in {
        (rid, text.rsplit(" ", 2)[0]) for rid, text in requests
    }
    assert (request_id, "POST /webhooks/whatsapp/ 200") in {
        (rid, text.rsplit(" ", 2)[0]) for rid, text in requests
    }
    assert any(
        line.get("message_id") == message.pk
        and line.get("task_id") == drained.id
        and "sent" in line["message"]
        for line in lines
    ), lines
    assert any(
        line.get("inbound_event_id") == event.pk and line.get("task_id") == processed.id for line in lines
    ), lines
    assert {"GET /webhooks/whatsapp/ 200", "POST /webhooks/sms/ 200"} <= {
        text.rsplit(" ", 2)[0] for _, text in requests
    }


def test_secrets_given_to_a_log_call_in_any_form_are_redacted(json_logs, settings):
    settings.EMAIL_HOST_PASSWORD = "smtp-password-0123"
    logger = logging.getLogger("wharf.test")
    sns_url = f"https://sns:{SMS_WEBHOOK_TOKEN}@wharf.example.com/webhooks/sms/"

    logger.debug("calling Meta with %s", {"Authorization": f"Bearer {ACCESS_TOKEN}"})
    logger.info("subscribed %s", sns_url)
    logger.info("verify with hub.verify_token=%s&hub.challenge=1", VERIFY_TOKEN)
    logger.warning(
        "signing with " + APP_SECRET,
        extra={"url": sns_url, "secret_key": settings.SECRET_KEY, "data": {"args": [ACCESS_TOKEN]}},
    )
    logger.info("smtp login %s", settings.EMAIL_HOST_PASSWORD)
    logger.info("a header from elsewhere: Authorization: Bearer EAAunconfigured.token-123")
    logger.info('a body: {"password": "hunter2-hunter2"}')
    try:
        raise RuntimeError(f"could not reach {sns_url} with token {ACCESS_TOKEN}")
    except RuntimeError:
        logger.exception("a failure")

    text = json_logs.text()
    assert json_logs.leaks() == []
    assert "smtp-password-0123" not in text and "EAAunconfigured" not in text and "hunter2" not in text
    lines = json_logs.lines()
    assert len(lines) == 8
    assert lines[1]["message"] == f"subscribed https://sns:{REDACTED}@wharf.example.com/webhooks/sms/"
    assert lines[3]["url"] == f"https://sns:{REDACTED}@wharf.example.com/webhooks/sms/"
    assert lines[3]["data"] == {"args": [REDACTED]}
    assert "RuntimeError: could not reach" in lines[-1]["exc_info"]


def test_plain_text_under_the_development_stack_and_the_request_id_sent_back(db, client, settings):
    assert settings.LOG_FORMAT == "plain"  # DEVSTACK's default: `make run` stays readable

    response = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith a newline"})

    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])  # not the caller's: not a plain token

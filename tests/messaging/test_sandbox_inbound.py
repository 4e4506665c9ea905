"""The sandbox's `POST /sandbox/inbound`: a WhatsApp user writes, and the sandbox posts Meta's signed
`messages` webhook to Wharf over HTTP."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from devstack.sandbox import payloads
from messaging.inbound.events import inbound_events_drain
from messaging.models import Message, PhoneNumber
from tests.factories import PhoneNumberFactory
from tests.messaging.test_outbound_send import Sandbox
from tests.messaging.webhook_helpers import PHONE_NUMBER_ID


@pytest.fixture
def sandbox():
    sandbox = Sandbox(settings.WHATSAPP_GRAPH_URL)
    sandbox.post("reset")
    yield sandbox
    sandbox.post("reset")


@pytest.mark.django_db(transaction=True)
def test_a_user_writing_through_the_sandbox_arrives_as_metas_signed_webhook(
    live_server, sandbox, monkeypatch
):
    monkeypatch.setitem(
        connection.settings_dict, "CONN_MAX_AGE", 0
    )  # the live server's thread closes its own
    PhoneNumberFactory(phone_number_id=PHONE_NUMBER_ID)
    sandbox.config(
        webhook_url=f"{live_server.url}/webhooks/whatsapp/", app_secret=settings.WHATSAPP_APP_SECRET
    )

    answer = sandbox.post(
        "inbound",
        {
            "from": "+44 7700 900123",
            "text": "Is it open today?",
            "name": "Ada",
            "phone_number_id": PHONE_NUMBER_ID,
        },
    )

    assert answer["webhook_status"] == 200 and answer["wamid"].startswith("wamid.")
    assert inbound_events_drain().processed == 1
    message = Message.objects.get(wamid=answer["wamid"])
    assert (message.text, message.contact.wa_id, message.contact.name) == (
        "Is it open today?",
        "447700900123",
        "Ada",
    )
    assert (
        sandbox.http.get("config").json()["last_inbound"]["447700900123"] > 0
    )  # the window opened at "Meta"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"from": "+447700900123", "text": "hi"}, "webhook_url"),
        ({"from": "nobody", "text": "hi"}, "from"),
        ({"from": "+447700900123", "text": " "}, "text"),
    ],
)
def test_the_sandbox_refuses_an_inbound_message_it_cannot_deliver_with_metas_code_100(sandbox, body, problem):
    if problem != "webhook_url":
        sandbox.config(webhook_url="http://127.0.0.1:9/webhooks/whatsapp/", app_secret="secret")
    refused = sandbox.http.post("inbound", json=body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == 100 and problem in error["message"]


@pytest.mark.django_db
def test_make_runs_setup_makes_the_sandboxs_number_a_sender_once():
    call_command("sandbox_setup", stdout=StringIO())
    call_command("sandbox_setup", stdout=StringIO())

    number = PhoneNumber.objects.get()
    assert (number.phone_number_id, number.waba_id) == (
        payloads.DEFAULT_PHONE_NUMBER_ID,
        payloads.DEFAULT_WABA_ID,
    )

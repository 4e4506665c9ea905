"""SMS through boto3 over HTTP to the sandbox's AWS End User Messaging SMS, and the pace of channels."""

import itertools
from datetime import timedelta

import httpx
import pytest
from django.conf import settings

from core.models import AuditLog
from core.pacing import pace_clock_now, pace_wait
from messaging.channels import ChannelError, channel_slots_take, sms_send
from messaging.channels.sms import sms_client
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_an_sms_goes_through_boto3_to_the_sandbox_once(sms_sandbox):
    contact = ContactFactory(phone="+447700900123")

    message_id = sms_send(contact=contact, text="Half price on Friday", reference="cr-7")

    assert sms_sandbox.sent_to("+447700900123") == 1
    [sent] = [m for m in sms_sandbox.stats()["messages"] if m["message_id"] == message_id]
    assert sent["body"] == "Half price on Friday"
    assert sent["context"] == {"reference": "cr-7"}
    assert sent["type"] == "PROMOTIONAL"
    assert sent["origination"] == settings.SMS_ORIGINATION_IDENTITY


def test_the_message_type_can_be_chosen(sms_sandbox):
    contact = ContactFactory()

    message_id = sms_send(
        contact=contact, text="Your code is 1234", reference="x", message_type="transactional"
    )

    [sent] = [m for m in sms_sandbox.stats()["messages"] if m["message_id"] == message_id]
    assert sent["type"] == "TRANSACTIONAL"
    with pytest.raises(ValueError, match="message_type"):
        sms_send(contact=contact, text="hi", reference="x", message_type="MARKETING")


def test_no_phone_and_opted_out_are_refused_before_sending(sms_sandbox):
    no_phone = ContactFactory(phone=None, wa_id="447700900999")
    opted_out = ContactFactory()
    opted_out.sms_opted_out_at = opted_out.created_at

    for contact, code in ((no_phone, "no_address"), (opted_out, "opted_out")):
        with pytest.raises(ChannelError) as error:
            sms_send(contact=contact, text="hi", reference="x")
        assert (error.value.code, error.value.retryable, error.value.request_left) == (code, False, False)
    assert sms_sandbox.stats()["accepted"] == 0


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ThrottlingException", True),
        ("ServiceQuotaExceededException", True),
        ("InternalServerException", True),
        ("ValidationException", False),
        ("AccessDeniedException", False),
    ],
)
def test_aws_errors_map_to_channel_errors_without_botocore_retrying(sms_sandbox, code, retryable):
    contact = ContactFactory()
    sms_sandbox.config(failing={contact.phone: code})

    with pytest.raises(ChannelError) as error:
        sms_send(contact=contact, text="hi", reference="x")

    assert (error.value.code, error.value.retryable, error.value.request_left) == (code, retryable, False)
    assert sms_sandbox.stats()["refused"] == {code: 1}  # one request: botocore did not retry


def test_a_number_on_the_providers_opt_out_list_is_refused_and_opted_out_here(sms_sandbox):
    contact = ContactFactory()
    sms_sandbox.config(opted_out=[contact.phone])

    with pytest.raises(ChannelError) as error:
        sms_send(contact=contact, text="hi", reference="x")

    assert error.value.code == "DESTINATION_PHONE_NUMBER_OPTED_OUT"
    assert error.value.retryable is False
    contact.refresh_from_db()
    assert contact.sms_opted_out_at is not None
    assert contact.sms_opt_out_source == "provider opt-out list"
    assert AuditLog.objects.filter(action="contact.sms_opt_out", target_id=str(contact.pk)).count() == 1


def test_the_sandbox_refuses_what_aws_refuses(sms_sandbox):
    client = sms_client()
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as error:
        client.send_text_message(DestinationPhoneNumber="07700900123", MessageBody="hi")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Reason"] == "INVALID_PARAMETER"
    unsigned = httpx.post(
        settings.SMS_ENDPOINT_URL + "/",
        headers={"X-Amz-Target": "PinpointSMSVoiceV2.SendTextMessage"},
        json={"DestinationPhoneNumber": "+447700900123", "MessageBody": "hi"},
    )
    assert unsigned.status_code == 403
    assert unsigned.json()["__type"] == "MissingAuthenticationTokenException"


def test_an_unreachable_endpoint_is_retryable_and_nothing_left(settings):
    from devstack.stack import free_port

    settings.SMS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}/sms"

    with pytest.raises(ChannelError) as error:
        sms_send(contact=ContactFactory(), text="hi", reference="x")

    assert (error.value.code, error.value.retryable, error.value.request_left) == ("connection", True, False)


# -- the pace ------------------------------------------------------------------------------------


@pytest.fixture
def autocommit(transactional_db):
    """The limiter runs outside transactions, as in workers."""


def test_slots_are_one_step_apart_across_calls_and_channels_apart(autocommit):
    first = channel_slots_take(channel="sms", n=3, rate_per_s=20)
    second = channel_slots_take(channel="sms", n=2, rate_per_s=20)
    email = channel_slots_take(channel="email", n=1, rate_per_s=20)

    slots = first + second
    step = timedelta(milliseconds=50)
    assert all(later - earlier >= step for earlier, later in itertools.pairwise(slots))
    assert [later - earlier for earlier, later in itertools.pairwise(first)] == [step, step]
    assert email[0] < slots[-1]  # another channel, another schedule


def test_the_slower_of_the_setting_and_the_callers_rate_wins(autocommit, settings):
    settings.EMAIL_RATE_PER_S = 4

    slots = channel_slots_take(channel="email", n=2, rate_per_s=100)

    assert slots[1] - slots[0] == timedelta(milliseconds=250)


def test_waiting_for_a_slot_sleeps_until_it(autocommit):
    slots = channel_slots_take(channel="sms", n=2, rate_per_s=50)

    for slot in slots:
        pace_wait(slot)

    assert pace_clock_now() >= slots[-1]


def test_unknown_channels_and_empty_batches(autocommit):
    assert channel_slots_take(channel="email", n=0) == []
    with pytest.raises(ValueError, match="no pace"):
        channel_slots_take(channel="fax", n=1)
    with pytest.raises(ValueError, match="above 0"):
        channel_slots_take(channel="sms", n=1, rate_per_s=0)


# -- the sandbox's SMS controls ------------------------------------------------------------------


def test_the_sandbox_sms_controls(sms_sandbox):
    refused = sms_sandbox.http.post("sms/config", json={"failing": {"+447700900001": "NoSuchError"}})
    unknown = sms_sandbox.http.post("sms/config", json={"colour": "blue"})
    assert (refused.status_code, refused.json()["__type"]) == (400, "ValidationException")
    assert unknown.status_code == 400

    answer = sms_sandbox.http.post("sms/inbound", json={"from": "+447700900002", "text": " quit "}).json()
    sms_sandbox.http.post("sms/inbound", json={"from": "+447700900003", "text": "hello"})

    assert answer["posted"] is False  # no webhook URL configured
    assert answer["notification"]["Type"] == "Notification"
    assert '"messageBody": " quit "' in answer["notification"]["Message"]
    assert sms_sandbox.config()["opted_out"] == ["+447700900002"]
    assert sms_sandbox.stats()["inbound"] == 2
    sms_sandbox.http.post("sms/reset")
    assert sms_sandbox.config()["opted_out"] == [] and sms_sandbox.stats()["inbound"] == 0

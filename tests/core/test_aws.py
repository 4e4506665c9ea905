"""One boto3 client per service and configuration, whoever asks for it."""

from core.aws import aws_client, sqs_client
from messaging.channels.sms import sms_client


def test_every_client_comes_from_the_one_cache(settings):
    assert sqs_client() is aws_client("sqs")
    assert sqs_client().meta.endpoint_url == settings.AWS_ENDPOINT_URL
    assert sms_client() is aws_client(
        "pinpoint-sms-voice-v2",
        endpoint_url=settings.SMS_ENDPOINT_URL,
        timeout_s=settings.SMS_HTTP_TIMEOUT_S,
        total_attempts=1,
    )
    assert sms_client().meta.endpoint_url == settings.SMS_ENDPOINT_URL
    assert sms_client().meta.config.retries["total_max_attempts"] == 1


def test_the_sms_client_goes_to_aws_itself_without_its_endpoint_not_to_the_s3_emulator(settings):
    settings.SMS_ENDPOINT_URL = None
    settings.AWS_REGION = "eu-west-1"

    assert sms_client().meta.endpoint_url == "https://sms-voice.eu-west-1.amazonaws.com"


def test_a_changed_setting_gives_a_new_client(settings):
    before = sqs_client()
    settings.AWS_CLIENT_TIMEOUT_S = 1.5

    assert sqs_client() is not before and sqs_client().meta.config.read_timeout == 1.5

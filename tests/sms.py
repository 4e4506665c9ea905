"""The sandbox's AWS End User Messaging SMS for tests: the `sms_sandbox` fixture.

It talks to the sandbox started for the test session (SMS_ENDPOINT_URL), resetting its SMS
settings, counts and opt-out list before and after the test (WhatsApp's state is left alone).
"""

from __future__ import annotations

import httpx
import pytest
from django.conf import settings


class SmsSandbox:
    def __init__(self, endpoint: str):
        self.root = endpoint.removesuffix("/sms")
        self.http = httpx.Client(base_url=f"{self.root}/sandbox/", timeout=10)

    def config(self, **changes) -> dict:
        """Changes the given settings (webhook_url, failing, opted_out, keywords); returns them all."""
        response = self.http.post("sms/config", json=changes) if changes else self.http.get("sms/config")
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict:
        """{"accepted", "by_destination", "refused", "inbound", "messages"}."""
        return self.http.get("stats", params={"summary": 0}).json()["sms"]

    def sent_to(self, number: str) -> int:
        return self.stats()["by_destination"].get(number, 0)

    def inbound(self, *, origin: str, text: str, destination: str = "") -> dict:
        """A phone's SMS, posted to the configured webhook URL as SNS would."""
        response = self.http.post("sms/inbound", json={"from": origin, "to": destination, "text": text})
        return response.json()

    def reset(self) -> None:
        self.http.post("sms/reset")


@pytest.fixture
def sms_sandbox():
    sandbox = SmsSandbox(settings.SMS_ENDPOINT_URL)
    sandbox.reset()
    yield sandbox
    sandbox.reset()
    sandbox.http.close()

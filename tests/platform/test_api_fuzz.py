"""A bounded schemathesis pass over the live API schema (as drf-spectacular generates it), through
Django's WSGI application on PostgreSQL: every operation, with data that fits the schema and data
that does not, as a superuser and as a user holding a few permissions. Every check schemathesis
has for a single response must pass: no 5xx, every status and body as documented, schema-valid
input accepted and invalid input refused."""

import os
from dataclasses import dataclass

import pytest
import schemathesis
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from campaigns.models import Campaign
from config.wsgi import application
from messaging.models import Conversation
from tests.factories import ContactFactory, MessageFactory, PhoneNumberFactory, UserFactory

# Per operation, per kind of data (fitting the schema or not); the same examples on every run
# (derandomized), so a failure is the code's, not the draw's. More, drawn afresh each run:
# WHARF_API_FUZZ_EXAMPLES=200 make test ARGS=tests/platform/test_api_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("WHARF_API_FUZZ_EXAMPLES", "5"))
DERANDOMIZE = "WHARF_API_FUZZ_EXAMPLES" not in os.environ
# The objects every `{id}` of a path may name (one id for all: each operation meets a real object).
SEEDED_ID = 1_000_000_007  # beyond what the tables' sequences reach in a test
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.missing_required_header,
    checks.unsupported_method,
    checks.ignored_auth,
]
# A request the schema allows may still be refused for what no schema says (a phone number that
# is no number, a template that does not exist): 400 naming the field, as documented.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "409"]}
        }
    }
)
LIMITED = ("contacts.view_contact", "messaging.view_message", "campaigns.view_campaign")


@dataclass
class Found:
    operation: str
    case: str
    failure: str

    def __str__(self) -> str:
        return f"{self.case} ({self.operation}): {self.failure}"


@pytest.fixture
def api_schema(db):
    schema = schemathesis.openapi.from_dict(
        SchemaGenerator().get_schema(request=None, public=True), config=CONFIG
    )
    schema.app = application
    return schema


@pytest.fixture
def seeded(db):
    number = PhoneNumberFactory(phone_number_id="106540352242922")
    contact = ContactFactory(id=SEEDED_ID, last_inbound_at=timezone.now())
    MessageFactory(id=SEEDED_ID, contact=contact, phone_number=number)
    Campaign.objects.create(id=SEEDED_ID, name="Spring")
    Conversation.objects.create(id=SEEDED_ID, contact=contact, phone_number=number)


@pytest.fixture(autouse=True)
def unthrottled(monkeypatch):
    """The pass sends more requests a minute than a user may: the limits would answer it 429."""
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "100000/min", "user": "100000/min"})


def _failures(error: BaseException) -> str:
    """schemathesis's failures on one line: what failed, why, the answer and how to send it again."""
    wanted = ("- ST", "Invalid component", "Received", "Documented", "[", "`", "curl")
    lines = [line.strip()[:300] for line in str(error).splitlines() if line.strip().startswith(wanted)]
    return " | ".join(lines)


def token_for(user) -> str:
    return f"Token {Token.objects.create(user=user).key}"


def operation_pass(operation, *, headers: dict, found: list[Found], **fixed) -> None:
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode, **fixed))
        def run(case):
            try:
                case.call_and_validate(headers=headers, checks=CHECKS)
            except (AssertionError, FailureGroup) as error:
                found.append(Found(operation.label, f"{case.method} {case.formatted_path}", _failures(error)))

        try:
            run()
        except Unsatisfiable:  # nothing of the operation's to make invalid (its only input is fixed)
            assert mode == GenerationMode.NEGATIVE


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["superuser", "limited"])
def test_every_operation_answers_as_its_schema_says(api_schema, seeded, who):
    user = (
        UserFactory(is_superuser=True, is_staff=True)
        if who == "superuser"
        else UserFactory(permissions=LIMITED)
    )
    headers = {"Authorization": token_for(user)}
    found: list[Found] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operation_pass(operation, headers=headers, found=found)
        if "{id}" in operation.path:
            operation_pass(operation, headers=headers, found=found, path_parameters={"id": SEEDED_ID})
    assert not found, "\n".join(str(item) for item in found[:25]) + f"\n({len(found)} in all)"

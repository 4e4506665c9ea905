"""Property tests: whatever a JSON field of the contacts, campaigns and messages APIs holds (NUL
characters, lone surrogates, nesting of any depth, numbers of any size), the answer is a 2xx or a
4xx naming what it refused, never a 5xx."""

import json

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import ContactFactory, PhoneNumberFactory

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "{{name}}", "{{attributes.code|x}}", "²"]),
)
number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**400, 1e308, -1e308, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
)
leaf = st.one_of(st.none(), st.booleans(), number, text)
value = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=12,
)
SOURCE_DEPTHS = st.sampled_from([63, 64, 65, 200, 999, 1000, 3000])


def body_text(body: dict, field: str, hostile: object, depth: int | None) -> str:
    """The body as JSON text with `hostile` at `field` (a dotted path), wrapped `depth` lists deep."""
    marker = "__HOSTILE__"
    node = body
    *parents, last = field.split(".")
    for name in parents:
        node = node.setdefault(name, {})
    node[last] = marker
    inner = json.dumps(hostile)
    if depth is not None:
        inner = "[" * depth + inner + "]" * depth
    return json.dumps(body).replace(json.dumps(marker), inner)


def never_a_server_error(answer) -> None:
    assert answer.status_code < 500, answer.content[:300]
    if answer.status_code == 400:
        assert answer.json(), "a refusal says what it refused"


@pytest.fixture
def superuser_client(admin_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin_user).key}")
    return client


@pytest.fixture
def ready(db):
    """A sender and a contact whose window is open, so that sends reach the content's checks."""
    PhoneNumberFactory(phone_number_id="106540352242922")
    return ContactFactory(last_inbound_at=timezone.now(), attributes={"code": "A1"})


@pytest.mark.django_db
@FUZZ
@given(
    field=st.sampled_from(["attributes", "attributes.plan", "attributes.plan.tier"]),
    hostile=value,
    depth=st.one_of(st.none(), SOURCE_DEPTHS),
    method=st.sampled_from(["post", "patch"]),
)
def test_contact_json_fields(superuser_client, ready, field, hostile, depth, method):
    url = "/api/v1/contacts/" if method == "post" else f"/api/v1/contacts/{ready.pk}/"
    body = body_text({"phone": "+447400123456"}, field, hostile, depth)
    answer = getattr(superuser_client, method)(url, body, content_type="application/json")
    never_a_server_error(answer)


@pytest.mark.django_db
@FUZZ
@given(
    field=st.sampled_from(
        [
            "template_parameters",
            "template_parameters.body",
            "audience_filters",
            "audience_filters.attributes",
            "audience_filters.attributes.plan",
            "audience_contacts",
            "rate_limit_per_s",
            "failure_pause_pct",
            "audience_tags",
            "template",
        ]
    ),
    hostile=value,
    depth=st.one_of(st.none(), SOURCE_DEPTHS),
)
def test_campaign_json_fields(superuser_client, ready, field, hostile, depth):
    body = body_text({"name": "Spring"}, field, hostile, depth)
    answer = superuser_client.post("/api/v1/campaigns/", body, content_type="application/json")
    never_a_server_error(answer)
    if answer.status_code == 201:
        audience = superuser_client.get(f"/api/v1/campaigns/{answer.json()['id']}/audience/")
        never_a_server_error(audience)


KIND_FIELDS = [
    "text",
    "text.body",
    "text.preview_url",
    "interactive",
    "interactive.footer.text",
    "interactive.body.text",
    "interactive.action.buttons",
    "template",
    "template.components",
    "image",
    "image.link",
    "image.caption",
    "location",
    "location.latitude",
    "location.name",
    "contacts",
    "reaction",
    "reaction.emoji",
]
BASE_CONTENT = {
    "text": {"body": "Hello"},
    "interactive": {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {"buttons": [{"reply": {"id": "a", "title": "A"}}]},
    },
    "template": {"name": "none", "language": "en"},
    "image": {"link": "https://example.com/a.jpg"},
    "location": {"latitude": 1, "longitude": 2},
    "contacts": [{"name": {"formatted_name": "Ada"}}],
    "reaction": {"message_id": "wamid.x", "emoji": "👍"},
}


@pytest.mark.django_db
@FUZZ
@given(field=st.sampled_from(KIND_FIELDS), hostile=value, depth=st.one_of(st.none(), SOURCE_DEPTHS))
def test_message_content_fields(superuser_client, ready, field, hostile, depth):
    kind = field.split(".")[0]
    base = {"contact": ready.pk, "type": kind, kind: json.loads(json.dumps(BASE_CONTENT[kind]))}
    if isinstance(base[kind], list) and "." in field:
        return
    body = body_text(base, field, hostile, depth)
    answer = superuser_client.post("/api/v1/messages/", body, content_type="application/json")
    never_a_server_error(answer)

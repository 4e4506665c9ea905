"""Property tests: whatever a signed body holds, the webhook answers 200 or 400 (never a 5xx), and
the drain processes every stored event without an error: arbitrary bytes, arbitrary JSON, webhook
shapes with junk in any place, and the kind fixtures with parts replaced or removed."""

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging.inbound.events import inbound_events_drain
from messaging.models import InboundEvent
from tests.messaging.webhook_helpers import webhook_post

FIXTURES = [
    json.loads(path.read_text()) for path in sorted((Path(__file__).parent / "fixtures").glob("*.json"))
]
KINDS = [
    "text", "image", "video", "audio", "document", "sticker", "location", "contacts", "interactive",
    "button", "reaction", "order", "system", "request_welcome", "unsupported", "edit", "revoke", "errors",
    "unknown_kind",
]  # fmt: skip
FIELDS = [
    "messages", "message_template_status_update", "message_template_quality_update",
    "template_category_update", "phone_number_quality_update", "account_update", "user_preferences",
    "calls", "history", "smb_message_echoes", "security", "a_field_nobody_knows",
]  # fmt: skip
STATUSES = ["sent", "delivered", "read", "played", "failed", "deleted", "warning"]

text = st.one_of(st.text(max_size=30), st.sampled_from(["", "\x00", "a\ud800b", "\udfff", "STOP", " start "]))
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
any_json = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=15,
)


def maybe(strategy):
    """Mostly the plausible value, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, any_json)


wa_id = st.sampled_from(["447400123456", "15551234567", "", "not-a-number", "1" * 40])
timestamp = st.one_of(st.integers(min_value=0, max_value=2**40).map(str), st.integers(), st.just("soon"))
message = st.builds(
    lambda base, kind, content, extra: {
        **base,
        "type": kind,
        **({kind: content} if isinstance(kind, str) else {}),
        **extra,
    },
    st.fixed_dictionaries(
        {"from": maybe(wa_id), "id": maybe(text.map(lambda s: f"wamid.{s}")), "timestamp": maybe(timestamp)}
    ),
    maybe(st.sampled_from(KINDS)),
    any_json,
    st.dictionaries(st.sampled_from(["context", "referral", "errors", "identity"]), any_json, max_size=2),
)
status = st.fixed_dictionaries(
    {
        "id": maybe(text.map(lambda s: f"wamid.{s}")),
        "status": maybe(st.sampled_from(STATUSES)),
        "timestamp": maybe(timestamp),
        "recipient_id": maybe(wa_id),
    },
    optional={"errors": any_json, "conversation": any_json, "pricing": any_json},
)
metadata = st.fixed_dictionaries(
    {
        "display_phone_number": maybe(wa_id),
        "phone_number_id": maybe(st.sampled_from(["109876543210987", "x"])),
    }
)
contact = st.fixed_dictionaries(
    {"profile": maybe(st.fixed_dictionaries({"name": text})), "wa_id": maybe(wa_id)}
)
value = st.fixed_dictionaries(
    {"messaging_product": maybe(st.just("whatsapp")), "metadata": maybe(metadata)},
    optional={
        "contacts": maybe(st.lists(contact, max_size=2)),
        "messages": maybe(st.lists(message, max_size=3)),
        "statuses": maybe(st.lists(status, max_size=3)),
        "errors": any_json,
        "event": maybe(text),
    },
)
webhook = st.fixed_dictionaries(
    {
        "object": maybe(st.just("whatsapp_business_account")),
        "entry": maybe(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "id": maybe(text),
                        "time": maybe(st.integers()),
                        "changes": maybe(
                            st.lists(
                                st.fixed_dictionaries(
                                    {"field": maybe(st.sampled_from(FIELDS)), "value": maybe(value)}
                                ),
                                max_size=3,
                            )
                        ),
                    }
                ),
                max_size=2,
            )
        ),
    }
)


def _paths(node, path=()):
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*path, key))


@st.composite
def mutated_fixture(draw):
    """A kind fixture with up to three of its parts replaced by anything, or removed."""
    payload = copy.deepcopy(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(payload))[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(any_json)
    return payload


def encoded(payload) -> bytes:
    return json.dumps(payload).encode()


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def deliver_and_drain(client, body: bytes) -> None:
    response = webhook_post(client, body)

    assert response.status_code in (200, 400), response.content
    inbound_events_drain()
    troubled = InboundEvent.objects.exclude(
        state__in=[InboundEvent.State.PROCESSED, InboundEvent.State.REJECTED]
    )
    assert not troubled.exists(), [(event.last_error, event.payload) for event in troubled]


@pytest.mark.django_db
@FUZZ
@given(body=st.binary(max_size=300))
def test_any_signed_bytes(client, body):
    deliver_and_drain(client, body)


@pytest.mark.django_db
@FUZZ
@given(payload=any_json)
def test_any_signed_json(client, payload):
    deliver_and_drain(client, encoded(payload))


@pytest.mark.django_db
@FUZZ
@given(payload=webhook)
def test_webhook_shapes_with_junk_anywhere(client, payload):
    deliver_and_drain(client, encoded(payload))


@pytest.mark.django_db
@FUZZ
@given(payload=mutated_fixture())
def test_kind_fixtures_with_parts_replaced_or_removed(client, payload):
    deliver_and_drain(client, encoded(payload))

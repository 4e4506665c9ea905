import hashlib
import json
import os
from urllib.parse import urlsplit

import factory
import httpx
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from contacts.models import Contact
from messaging.models import InboundEvent, Label, Message, PhoneNumber


class UserFactory(factory.django.DjangoModelFactory):
    """A user with no usable password (tests log in with force_login) and the permissions given,
    as in UserFactory(permissions=["contacts.view_contact"])."""

    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(None)

    @factory.post_generation
    def permissions(self, create, extracted, **kwargs):
        for name in extracted or ():
            app_label, codename = name.split(".")
            self.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


class ContactFactory(factory.django.DjangoModelFactory):
    """Rows made directly, as fixtures; the code under test writes through the services."""

    class Meta:
        model = Contact

    phone = factory.Sequence(lambda n: f"+447400{n:06d}")  # UK mobiles, valid for phonenumbers
    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    language = "en"


def sandbox_root() -> str:
    """The test session's sandbox (tests/stack.py), whatever a test makes of the settings."""
    parts = urlsplit(os.environ["WHATSAPP_GRAPH_URL"])
    return f"{parts.scheme}://{parts.netloc}"


def sandbox_received(*wamids: str) -> None:
    """Tell the sandbox that users sent these messages, whose webhooks a test posts to Wharf itself:
    Meta marks read only messages it delivered to the business."""
    httpx.post(f"{sandbox_root()}/sandbox/received", json={"wamids": list(wamids)}).raise_for_status()


def sandbox_number_register(phone_number_id: str) -> None:
    """Make the number one the sandbox knows, as Meta knows the business's numbers."""
    httpx.post(
        f"{sandbox_root()}/sandbox/numbers", json={"phone_number_id": phone_number_id}
    ).raise_for_status()


class PhoneNumberFactory(factory.django.DjangoModelFactory):
    """A sender number, registered at the sandbox as it would be at Meta (pass `at_meta=False` for
    one Meta does not know)."""

    class Meta:
        model = PhoneNumber
        django_get_or_create = ("phone_number_id",)
        skip_postgeneration_save = True

    phone_number_id = factory.Sequence(lambda n: f"10{n:013d}")
    display_phone_number = factory.Sequence(lambda n: f"1555{n:07d}")
    verified_name = "Wharf Test"
    waba_id = "102290129340398"

    @factory.post_generation
    def at_meta(self, create, extracted, **kwargs):
        if create and extracted is not False:  # its WABA and display number stay the sandbox's own
            sandbox_number_register(self.phone_number_id)


class LabelFactory(factory.django.DjangoModelFactory):
    """A label of the catalogue: LabelFactory(name="vip"), or several with labels_make("vip", "refund")."""

    class Meta:
        model = Label
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"label-{n}")
    colour = Label.Colour.BLUE


def labels_make(*names: str) -> list[Label]:
    return [LabelFactory(name=name) for name in names]


class MessageFactory(factory.django.DjangoModelFactory):
    """An inbound text by default; pass direction="outbound", status=... for a sent one."""

    class Meta:
        model = Message

    wamid = factory.Sequence(lambda n: f"wamid.TEST{n:012d}")
    direction = Message.Direction.INBOUND
    type = "text"
    status = factory.LazyAttribute(
        lambda m: Message.Status.RECEIVED if m.direction == Message.Direction.INBOUND else Message.Status.SENT
    )
    contact = factory.SubFactory(ContactFactory)
    phone_number = factory.SubFactory(PhoneNumberFactory)
    text = factory.Sequence(lambda n: f"message {n}")
    timestamp = factory.LazyFunction(timezone.now)


def payload_fields(payload) -> list[str]:
    """The `field` of every change in a webhook body, as the inbound event records them."""
    if not isinstance(payload, dict):
        return []
    changes = [change for entry in payload.get("entry", []) for change in entry.get("changes", [])]
    return sorted({change.get("field", "") for change in changes})


class InboundEventFactory(factory.django.DjangoModelFactory):
    """A stored webhook body; `payload` is what the body says (give one, the body follows)."""

    class Meta:
        model = InboundEvent

    payload = factory.Sequence(
        lambda n: {"object": "whatsapp_business_account", "entry": [{"id": str(n), "changes": []}]}
    )
    body = factory.LazyAttribute(lambda e: json.dumps(e.payload).encode())
    body_sha256 = factory.LazyAttribute(lambda e: hashlib.sha256(e.body).hexdigest())
    fields = factory.LazyAttribute(lambda e: payload_fields(e.payload))

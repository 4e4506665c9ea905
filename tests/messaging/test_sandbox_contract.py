"""A third-party client against the sandbox: pywa, as an integrator would use it with Meta.

pywa knows only graph.facebook.com; its HTTP client here carries a transport that sends those
requests to the sandbox the test session started. Whatever pywa sends must be accepted, whatever
the sandbox answers or posts must be what pywa can read: every kind of message, templates, media
up and down, marks as read, and every status webhook the sandbox posts.
"""

import json
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from pywa import WhatsApp
from pywa.errors import WhatsAppError
from pywa.types import (
    Button,
    Contact,
    MessageStatus,
    MessageStatusType,
    Section,
    SectionList,
    SectionRow,
    URLButton,
)
from pywa.types import templates as templates_
from pywa.types.base_update import RawUpdate
from pywa.types.templates import TemplateLanguage

from devstack.sandbox import payloads
from tests.messaging.test_sandbox import sandbox_root
from tests.messaging.test_sandbox_send import FILES, configure, files, receiver, stats  # noqa: F401
from tests.waiting import wait_until

NUMBER = payloads.DEFAULT_PHONE_NUMBER_ID
WA_ID = "447700900123"
PNG = FILES["/a.png"][1]


class ToSandbox(httpx.HTTPTransport):
    """Sends what is addressed to graph.facebook.com to the sandbox instead, over plain HTTP."""

    def __init__(self, root: str):
        super().__init__()
        self.root = urlsplit(root)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.facebook.com":
            request.url = request.url.copy_with(scheme="http", host=self.root.hostname, port=self.root.port)
            request.headers["Host"] = self.root.netloc
        return super().handle_request(request)


@pytest.fixture
def wa(receiver):  # noqa: F811 - the fixture of tests.messaging.test_sandbox_send
    """pywa's client for the sandbox's own number and WABA; statuses go to `receiver`."""
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()
    configure(
        webhook_url=receiver.url,
        app_secret=settings.WHATSAPP_APP_SECRET,
        status_delays_ms={"sent": 0, "delivered": 50, "read": 100},
    )
    with httpx.Client(transport=ToSandbox(sandbox_root()), timeout=10) as session:
        yield WhatsApp(
            phone_id=NUMBER,
            token=settings.WHATSAPP_ACCESS_TOKEN,
            session=session,
            waba_id=payloads.DEFAULT_WABA_ID,
            app_secret=settings.WHATSAPP_APP_SECRET,
        )
    httpx.post(f"{sandbox_root()}/sandbox/reset").raise_for_status()


def inbound(text: str) -> str:
    """A user writes to the number through the sandbox; the wamid of their message."""
    answer = httpx.post(f"{sandbox_root()}/sandbox/inbound", json={"from": f"+{WA_ID}", "text": text})
    answer.raise_for_status()
    return answer.json()["wamid"]


def statuses_settled() -> None:
    wait_until(lambda: stats()["webhooks"]["pending"] == 0, interval=0.02, message="the statuses posted")


def status_bodies(receiver) -> list[bytes]:  # noqa: F811
    return [
        raw for _, raw in receiver.posts if "statuses" in json.loads(raw)["entry"][0]["changes"][0]["value"]
    ]


def test_every_kind_of_message_pywa_sends_is_accepted_and_gets_statuses_pywa_reads(
    wa,
    files,  # noqa: F811
    receiver,  # noqa: F811
):
    from_user = inbound("Hello, I would like a table")
    uploaded = {
        kind: wa.upload_media(
            media=FILES[path][1], mime_type=FILES[path][0].split(";")[0], filename=f"a{path[2:]}"
        )
        for kind, path in (
            ("image", "/a.png"),
            ("video", "/a.mp4"),
            ("audio", "/a.ogg"),
            ("document", "/a.pdf"),
            ("sticker", "/a.webp"),
        )
    }
    sent = [
        wa.send_message(to=WA_ID, text="Hello from pywa"),
        wa.send_message(to=int(WA_ID), text="A number as a JSON number"),
        wa.send_message(to=WA_ID, text="A reply", reply_to_message_id=from_user),
        wa.send_image(to=WA_ID, image=f"{files}/a.png", caption="By link"),
        wa.send_image(to=WA_ID, image=uploaded["image"].id, caption="By id"),
        wa.send_video(to=WA_ID, video=f"{files}/a.mp4"),
        wa.send_video(to=WA_ID, video=uploaded["video"].id),
        wa.send_audio(to=WA_ID, audio=f"{files}/a.ogg"),
        wa.send_audio(to=WA_ID, audio=uploaded["audio"].id),
        wa.send_document(to=WA_ID, document=f"{files}/a.pdf", filename="menu.pdf"),
        wa.send_document(to=WA_ID, document=uploaded["document"].id, filename="menu.pdf"),
        wa.send_sticker(to=WA_ID, sticker=f"{files}/a.webp"),
        wa.send_sticker(to=WA_ID, sticker=uploaded["sticker"].id),
        wa.send_location(to=WA_ID, latitude=51.5, longitude=-0.12, name="The shop"),
        wa.send_contact(
            to=WA_ID, contact=Contact(name=Contact.Name(formatted_name="Ana Lima", first_name="Ana"))
        ),
        wa.send_reaction(to=WA_ID, emoji="👍", message_id=from_user),
        wa.send_message(
            to=WA_ID,
            text="Which time?",
            buttons=[Button(title="Seven", callback_data="7"), Button(title="Eight", callback_data="8")],
        ),
        wa.send_message(
            to=WA_ID,
            text="Which table?",
            buttons=SectionList(
                button_title="Tables",
                sections=[Section(title="Inside", rows=[SectionRow(title="Window", callback_data="t1")])],
            ),
        ),
        wa.send_message(
            to=WA_ID, text="Our menu", buttons=URLButton(title="Menu", url="https://example.com/menu")
        ),
        wa.send_template(to=WA_ID, name="hello_world", language=TemplateLanguage.ENGLISH_US),
    ]
    wamids = [message.id for message in sent]
    assert all(wamid.startswith("wamid.") for wamid in wamids)
    assert len(set(wamids)) == len(sent) == stats()["accepted"]

    statuses_settled()
    parsed: list[MessageStatus] = []
    wa.on_message_status()(lambda _, status: parsed.append(status))
    bodies = status_bodies(receiver)
    for raw in bodies:
        assert wa.webhook_update_handler(raw) == ("ok", 200)
    # every status webhook pywa was given became a MessageStatus: none failed to parse
    assert len(parsed) == len(bodies) >= len(sent)
    by_status = {(status.id, status.status) for status in parsed}
    for wamid in wamids:
        assert (wamid, MessageStatusType.SENT) in by_status
    for status in parsed:
        assert status.from_user.wa_id == WA_ID
        assert status.from_user.bsuid == payloads.user_id_of(WA_ID)
        assert status.error is None
    sent_ones = [status for status in parsed if status.status == MessageStatusType.SENT]
    assert all(status.pricing is not None and status.conversation is not None for status in sent_ones)


def test_pywa_reads_failed_statuses_with_their_error_and_no_pricing(wa, files, receiver):  # noqa: F811
    wa.send_image(to=WA_ID, image=f"{files}/missing.png")  # accepted: Meta fetches the link later
    wa.send_reaction(to=WA_ID, emoji="👍", message_id="wamid.never-seen")

    wait_until(lambda: len(status_bodies(receiver)) >= 2, message="the failed statuses")
    statuses_settled()
    parsed = [MessageStatus.from_update(client=wa, update=raw_update(raw)) for raw in status_bodies(receiver)]

    assert sorted(status.error.code for status in parsed) == [131009, 131053]
    for status in parsed:
        assert status.status == MessageStatusType.FAILED
        assert (status.pricing, status.conversation) == (None, None)
        assert status.from_user.wa_id == WA_ID


def test_pywa_reads_each_status_of_a_batched_webhook(wa, receiver):  # noqa: F811
    configure(status_batch_max=10, status_delays_ms={"sent": 200, "delivered": None})
    wamids = {wa.send_message(to=to, text="hi").id for to in ("447700900123", "447700900124", "447700900125")}

    wait_until(
        lambda: sum(len(body_statuses(raw)) for raw in status_bodies(receiver)) >= 3, message="3 statuses"
    )
    parsed = []
    for raw in status_bodies(receiver):
        contacts = json.loads(raw)["entry"][0]["changes"][0]["value"]["contacts"]
        for index, entry in enumerate(body_statuses(raw)):
            contact = next(i for i, c in enumerate(contacts) if c["wa_id"] == entry["recipient_id"])
            status = MessageStatus.from_update(
                client=wa, update=raw_update(raw), status_idx=index, contact_idx=contact
            )
            assert status.from_user.wa_id == entry["recipient_id"]
            parsed.append(status.id)

    assert set(parsed) == wamids


def body_statuses(raw: bytes) -> list[dict]:
    return json.loads(raw)["entry"][0]["changes"][0]["value"]["statuses"]


def raw_update(raw: bytes) -> RawUpdate:
    return RawUpdate(raw, hmac_header=None, update_hash="")


def test_pywa_lists_and_reads_templates(wa):
    httpx.post(
        f"{sandbox_root()}/sandbox/templates",
        json={
            "name": "table_ready",
            "language": "en_US",
            "category": "UTILITY",
            "components": [{"type": "BODY", "text": "Your table for {{1}} is ready."}],
        },
    ).raise_for_status()

    templates = wa.get_templates()
    approved = wa.get_templates(statuses=["APPROVED"], languages=[TemplateLanguage.ENGLISH_US])

    assert {template.name for template in templates} == {"hello_world", "table_ready"}
    assert (templates.total_count, templates.message_template_count) == (2, 2)
    assert templates.message_template_limit > 0
    assert len(approved) == 2
    for template in templates:
        assert template.quality_score is not None
        assert template.language == TemplateLanguage.ENGLISH_US
        one = wa.get_template(template.id)
        assert (one.id, one.name, one.status) == (template.id, template.name, template.status)


def test_pywa_creates_and_deletes_templates(wa):
    configure(template_review_ms=600_000)
    positional = wa.create_template(
        template=templates_.Template(
            name="table_ready",
            category=templates_.TemplateCategory.UTILITY,
            language=TemplateLanguage.ENGLISH_US,
            parameter_format=templates_.ParamFormat.POSITIONAL,
            components=[
                templates_.HeaderText("Table {{1}}", "12"),
                templates_.BodyText("Your table for {{1}} is ready, {{2}}.", "four", "Ada"),
                templates_.FooterText(text="Wharf Bistro"),
                templates_.Buttons(buttons=[templates_.QuickReplyButton(text="On my way")]),
            ],
        )
    )
    named = wa.create_template(
        template=templates_.Template(
            name="table_ready",
            category=templates_.TemplateCategory.UTILITY,
            language=TemplateLanguage.GERMAN,
            parameter_format=templates_.ParamFormat.NAMED,
            components=[templates_.BodyText(text="Ihr Tisch ist bereit, {{name}}.", name="Ada")],
        )
    )

    assert (positional.status, named.status) == (templates_.TemplateStatus.PENDING,) * 2
    assert wa.get_template(positional.id).name == "table_ready"
    with pytest.raises(WhatsAppError) as refused:  # the same name and language again
        wa.create_template(
            template=templates_.Template(
                name="table_ready",
                category=templates_.TemplateCategory.UTILITY,
                language=TemplateLanguage.GERMAN,
                components=[templates_.BodyText(text="Bereit.")],
            )
        )
    assert (refused.value.code, refused.value.subcode) == (100, 2388024)
    assert refused.value.user_title == "Message template already exists"
    assert wa.delete_template(template_name="table_ready", template_id=named.id).success
    assert {template.language for template in wa.get_templates() if template.name == "table_ready"} == {
        TemplateLanguage.ENGLISH_US
    }
    assert wa.delete_template(template_name="table_ready").success
    assert [template.name for template in wa.get_templates()] == ["hello_world"]


def test_pywa_uploads_reads_downloads_and_deletes_media(wa, tmp_path):
    media = wa.upload_media(media=PNG, mime_type="image/png", filename="front.png")

    url = wa.get_media_url(media.id)
    downloaded = wa.download_media(url=url.url, path=tmp_path, filename="front.png")

    assert (url.id, url.mime_type, url.file_size) == (media.id, "image/png", len(PNG))
    assert downloaded.read_bytes() == PNG
    assert wa.get_media_bytes(url.url) == PNG
    assert wa.delete_media(media.id)


def test_pywa_marks_a_received_message_read_and_is_refused_for_its_own(wa):
    from_user = inbound("Is my table booked?")
    own = wa.send_message(to=WA_ID, text="Yes").id

    assert wa.mark_message_as_read(message_id=from_user)
    with pytest.raises(WhatsAppError) as refused:
        wa.mark_message_as_read(message_id=own)

    assert refused.value.code == 100
    assert stats()["read_wamids"] == [from_user]


def test_pywa_reads_the_business_numbers_and_their_standing(wa):
    httpx.post(
        f"{sandbox_root()}/sandbox/numbers/{NUMBER}/quality",
        json={"quality_rating": "YELLOW", "messaging_limit": "TIER_10K"},
    ).raise_for_status()

    number = wa.get_business_phone_number()
    listed = wa.get_business_phone_numbers()

    assert (number.id, number.quality_rating, number.status) == (NUMBER, "YELLOW", "CONNECTED")
    assert number.whatsapp_business_manager_messaging_limit == "TIER_10K"
    assert number.throughput == {"level": "STANDARD"}
    assert (number.name_status, number.code_verification_status, number.platform_type) == (
        "APPROVED",
        "VERIFIED",
        "CLOUD_API",
    )
    assert number.display_phone_number == "+1 555-000-0001" and number.verified_name
    assert NUMBER in {each.id for each in listed}
    assert {each.quality_rating for each in listed if each.id == NUMBER} == {"YELLOW"}

import mimetypes
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from devstack.numbers import sandbox_number_ensure
from devstack.sandbox import payloads
from messaging.models import PhoneNumber

CALL_OUTCOMES = ("missed", "completed")
COMPLETED_CALL_S = 95


class Command(BaseCommand):
    help = (
        "Post a signed, Meta-shaped `messages` webhook to this platform's own endpoint, as if a "
        "WhatsApp user had written to one of its numbers; with --image, the file is first put in the "
        "sandbox Graph API so that the media fetch finds it there. With --call, `calls` webhooks "
        "instead: the user's call rings (connect) and ends missed or completed (terminate)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from", dest="sender", required=True, help="the sender's number, e.g. +447400123456"
        )
        parser.add_argument("--text", default="", help="the message text (the caption with --image)")
        parser.add_argument("--name", default="", help="the sender's WhatsApp profile name")
        parser.add_argument("--image", type=Path, help="an image file to send")
        parser.add_argument(
            "--call",
            choices=CALL_OUTCOMES,
            help="post a call from the user instead of a message: missed, or completed after 95 s",
        )
        parser.add_argument(
            "--phone-number-id",
            help="the receiving number's phone_number_id (default: the first sender number's)",
        )
        parser.add_argument("--url", default=settings.SANDBOX_WEBHOOK_URL, help="the webhook endpoint")

    def handle(self, *args, sender, text, name, image, call, phone_number_id, url, **options):
        wa_id = payloads.wa_id_from_phone(sender)
        if not wa_id:
            raise CommandError(f"--from {sender!r} has no digits")
        if not text and image is None and call is None:
            raise CommandError("give --text, --image or both, or --call")
        if not settings.WHATSAPP_APP_SECRET:
            raise CommandError("WHATSAPP_APP_SECRET is not set: the webhook could not be signed")
        number = self._receiving_number(phone_number_id)
        if call is not None:
            self._call(outcome=call, wa_id=wa_id, name=name, number=number, url=url)
            return
        if image is None:
            message = payloads.text_message(wa_id=wa_id, text=text)
        else:
            message = self._image_message(wa_id=wa_id, path=image, caption=text, phone_number_id=number[0])
        body = payloads.messages_body(
            messages=[message], profile_name=name, phone_number_id=number[0], display_phone_number=number[1]
        )
        self._post(url=url, body=body, what=f"{message['type']} {message['id']} from {wa_id}")

    def _post(self, *, url: str, body: dict, what: str) -> None:
        try:
            response = payloads.webhook_post(url=url, body=body, app_secret=settings.WHATSAPP_APP_SECRET)
        except httpx.HTTPError as error:
            raise CommandError(f"could not reach {url}: {error}") from error
        self.stdout.write(f"posted {what} to {url}")
        self.stdout.write(f"answer: {response.status_code} {response.text.strip()}")
        if response.is_error:
            raise CommandError(f"the webhook answered {response.status_code}")

    def _call(self, *, outcome: str, wa_id: str, name: str, number: tuple[str, str], url: str) -> None:
        """The user's call as Meta reports it: a connect, then its terminate."""
        call_id = payloads.call_id_new()
        started = int(time.time())
        duration = COMPLETED_CALL_S if outcome == "completed" else 0
        ring = 20 if outcome == "missed" else 5
        connect = payloads.call_connect(call_id=call_id, wa_id=wa_id, business=number[1], timestamp=started)
        terminate = payloads.call_terminate(
            call_id=call_id,
            wa_id=wa_id,
            business=number[1],
            ended=started + ring + duration,
            duration_s=duration,
        )
        for event in (connect, terminate):
            body = payloads.calls_body(
                calls=[event],
                wa_id=wa_id,
                profile_name=name,
                phone_number_id=number[0],
                display_phone_number=number[1],
            )
            self._post(url=url, body=body, what=f"call {event['event']} {call_id} from {wa_id}")

    def _receiving_number(self, phone_number_id: str | None) -> tuple[str, str]:
        """(phone_number_id, display number) of the number written to: the one given, else the first
        PhoneNumber; with none, the sandbox's own number, made a PhoneNumber so that it is routed."""
        if phone_number_id:
            number = PhoneNumber.objects.filter(phone_number_id=phone_number_id).first()
            display = number.display_phone_number if number else payloads.DEFAULT_DISPLAY_PHONE_NUMBER
            return phone_number_id, display
        number = PhoneNumber.objects.order_by("id").first()
        if number is None:
            number, _made = sandbox_number_ensure()
            self.stdout.write(f"sender number {number.display_phone_number} (the sandbox's) added")
        return number.phone_number_id, number.display_phone_number

    def _image_message(self, *, wa_id: str, path: Path, caption: str, phone_number_id: str) -> dict:
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from error
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        sandbox = _sandbox_root()
        try:
            response = httpx.post(
                f"{sandbox}/sandbox/media",
                params={"phone_number_id": phone_number_id},
                files={"file": (path.name, content, mime_type)},
                timeout=settings.WHATSAPP_HTTP_TIMEOUT_S,
            )
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise CommandError(
                f"could not put the image in the sandbox at {sandbox} (WHATSAPP_GRAPH_URL): {error}"
            ) from error
        media = response.json()
        self.stdout.write(f"sandbox media {media['id']} ({media['mime_type']}, {media['file_size']} bytes)")
        return payloads.media_message(
            wa_id=wa_id,
            kind="image",
            media_id=media["id"],
            mime_type=media["mime_type"],
            sha256=payloads.sha256_base64(content),
            caption=caption,
        )


def _sandbox_root() -> str:
    """The sandbox's own root: WHATSAPP_GRAPH_URL without its version."""
    parts = urlsplit(settings.WHATSAPP_GRAPH_URL)
    return f"{parts.scheme}://{parts.netloc}"

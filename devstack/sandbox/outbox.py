"""What the sandbox knows about the messages it is sent: its settings, its counts, its limits, templates.

The throughput rule is Meta's limit as a sliding window per phone number id: at most `limit`
requests are admitted in any one-second span, timed on arrival under one lock, so that
concurrent requests are counted exactly; the request that would be the `limit + 1`-th answers
130429 and takes no place in the window. Arrival times carry the network's and the threads'
jitter: a client that sends exactly `limit` a second, evenly, will see some pairs `limit` apart
arrive a little under a second apart. `rate_window_ms` shortens the span for tests that want
to forgive that jitter; by default it is the full second.

Every request that passes validation is counted against its number's window first (a refused
131047 or 131026 still used Meta's throughput); only then come the pair spacing (131056: one
recipient from one number, no closer than `pair_spacing_ms`), the undeliverable recipients
(131026) and the 24-hour window (131047, free-form messages only). A request that passes all of
them is accepted: counted, given a wamid, and — when a fault says so — its answer lost on the
way back, as if Meta sent it and the connection broke.

The sandbox knows its numbers as Meta knows a business's: its own (DEFAULT_PHONE_NUMBER_ID), those
registered (`POST /sandbox/numbers`) and those the settings name (`waba_ids`,
`display_phone_numbers`, `rate_limits`); a call for any other id is Meta's unknown object. It
knows the wamids it issued and those of the messages users sent (`POST /sandbox/inbound`, or
`POST /sandbox/received` for a webhook posted by other means): only those of received messages
can be marked read. Numbers and wamids stay across `reset()`, as media do: they are the
account's history, not a setting.

"Never twice" is provable from `sends_by_callback`: every accepted send is counted by its
`biz_opaque_callback_data` (Wharf puts its own message id there), and `duplicates` counts the
accepted sends whose callback data had been accepted before. Sends without it are never counted
as duplicates: two identical texts to one person can both be meant.
"""

from __future__ import annotations

import bisect
import random
import re
import secrets
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

from devstack.sandbox.errors import GraphApiError, invalid_parameter
from devstack.sandbox.payloads import (
    DEFAULT_DISPLAY_PHONE_NUMBER,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_VERIFIED_NAME,
    DEFAULT_WABA_ID,
    wamid_new,
)

DEFAULT_RATE_LIMIT_PER_S = 80
SERVICE_WINDOW_S = 24 * 3600
STATUS_NAMES = ("sent", "delivered", "read")
READS_KEPT = 1000  # the latest marks-as-read (and typing indicators) listed by wamid in the stats
WAMIDS_KEPT = 500_000  # the wamids issued and received the sandbox remembers, the oldest forgotten first
TEMPLATE_LIMIT = 250  # templates a WABA may have (Meta's limit for a business not yet verified)
# The fields of a template Meta lists by default, and every field it knows (others are refused).
TEMPLATE_FIELDS_DEFAULT = ("name", "parameter_format", "components", "language", "status", "category", "id")
TEMPLATE_FIELDS = (
    *TEMPLATE_FIELDS_DEFAULT,
    "quality_score",
    "rejected_reason",
    "previous_category",
    "correct_category",
    "sub_category",
    "library_template_name",
    "message_send_ttl_seconds",
    "cta_url_link_tracking_opted_out",
    "degrees_of_freedom_spec",
)
ERROR_DOCS = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
# Titles of the codes a failed status may carry (`fail_after_accept`).
FAILED_TITLES = {
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "Meta chose not to deliver.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages",
    131053: "Media upload error",
    131009: "Parameter value is not valid",
    131000: "Something went wrong",
}


@dataclass
class OutboundSettings:
    """What `POST /sandbox/config` sets; each key given replaces that setting whole."""

    webhook_url: str = ""  # where statuses are posted; empty: none are
    app_secret: str = ""  # signs them (X-Hub-Signature-256)
    rate_limit_per_s: int = DEFAULT_RATE_LIMIT_PER_S  # for numbers not in rate_limits
    rate_limits: dict[str, int] = field(default_factory=dict)  # phone_number_id → messages/s
    rate_window_ms: int = 1000  # the span the limit counts over; shorter forgives arrival jitter
    pair_spacing_ms: int = 0  # 0: no pair limit (131056)
    waba_ids: dict[str, str] = field(default_factory=dict)  # phone_number_id → WABA (templates, webhooks)
    display_phone_numbers: dict[str, str] = field(default_factory=dict)
    undeliverable: list[str] = field(default_factory=list)  # wa_ids answered 131026
    fail_after_accept: dict[str, int] = field(default_factory=dict)  # wa_id → code of a failed status
    window_closed: list[str] = field(default_factory=list)  # wa_ids whose 24-hour window is closed
    last_inbound: dict[str, float] = field(default_factory=dict)  # wa_id → Unix time of their last message
    window_open_by_default: bool = True  # for wa_ids in neither list
    statuses: bool = True  # post status webhooks at all
    status_delays_ms: dict[str, int | None] = field(
        default_factory=lambda: {"sent": 200, "delivered": 500, "read": 1500}
    )  # after acceptance; None skips that status (and the ones after it)
    status_batch_max: int = 1  # statuses of one number due together share a webhook, up to this many
    messages_5xx_rate: float = 0.0  # share of sends answered 500 (131000) before anything is sent
    messages_drop_rate: float = 0.0  # share of accepted sends whose connection is closed unanswered
    messages_drop_next: int = 0  # the next N accepted sends are dropped so
    template_review_ms: int = 3000  # a created template's review: APPROVED or REJECTED after this

    def rate_limit(self, phone_number_id: str) -> int:
        return self.rate_limits.get(phone_number_id, self.rate_limit_per_s)

    def waba_id(self, phone_number_id: str) -> str:
        return self.waba_ids.get(phone_number_id, DEFAULT_WABA_ID)

    def display_phone_number(self, phone_number_id: str) -> str:
        return self.display_phone_numbers.get(phone_number_id, DEFAULT_DISPLAY_PHONE_NUMBER)

    def window_open(self, wa_id: str, now: float) -> bool:
        if wa_id in self.window_closed:
            return False
        if wa_id in self.last_inbound:
            return now - self.last_inbound[wa_id] < SERVICE_WINDOW_S
        return self.window_open_by_default

    def as_dict(self) -> dict:
        return {item.name: getattr(self, item.name) for item in fields(self)}

    def updated(self, changes: dict) -> OutboundSettings:
        """A copy with `changes` (JSON) applied; 100 naming the first key or value that does not fit."""
        known = {item.name for item in fields(self)}
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise invalid_parameter(
                    f"Unknown sandbox setting {key!r}; known: {', '.join(sorted(known))}."
                )
            try:
                values[key] = _setting_value(key, value)
            except (TypeError, ValueError, AttributeError) as error:
                raise invalid_parameter(f"Invalid sandbox setting {key!r}: {error}") from None
        return replace(self, **values)


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value))


def _setting_value(key: str, value: Any) -> Any:
    if key == "webhook_url":
        url = str(value or "")
        if url and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("an http or https URL, or empty for no webhooks")
        return url
    if key == "app_secret":
        return str(value or "")
    if key in (
        "rate_limit_per_s",
        "rate_window_ms",
        "pair_spacing_ms",
        "status_batch_max",
        "messages_drop_next",
        "template_review_ms",
    ):
        number = int(value)
        if number < (1 if key in ("rate_limit_per_s", "rate_window_ms", "status_batch_max") else 0):
            raise ValueError(f"{number} is too small")
        return number
    if key in ("messages_5xx_rate", "messages_drop_rate"):
        share = float(value)
        if not 0 <= share <= 1:
            raise ValueError("a share is between 0 and 1")
        return share
    if key in ("window_open_by_default", "statuses"):
        if not isinstance(value, bool):
            raise TypeError("true or false")
        return value
    if key == "rate_limits":
        limits = {str(number): int(limit) for number, limit in dict(value).items()}
        if any(limit < 1 for limit in limits.values()):
            raise ValueError("a rate limit is at least 1")
        return limits
    if key in ("waba_ids", "display_phone_numbers"):
        return {str(number): str(other) for number, other in dict(value).items()}
    if key in ("undeliverable", "window_closed"):
        if not isinstance(value, list):
            raise TypeError("a list of phone numbers")
        return [_digits(phone) for phone in value]
    if key == "fail_after_accept":
        if isinstance(value, list):
            return {_digits(phone): 131026 for phone in value}
        return {_digits(phone): int(code) for phone, code in dict(value).items()}
    if key == "last_inbound":
        return {_digits(phone): float(at) for phone, at in dict(value).items()}
    if key == "status_delays_ms":
        delays = dict(value)
        unknown = set(delays) - set(STATUS_NAMES)
        if unknown:
            raise ValueError(f"statuses are {', '.join(STATUS_NAMES)}, not {', '.join(sorted(unknown))}")
        return {name: None if delays.get(name) is None else int(delays[name]) for name in STATUS_NAMES}
    raise ValueError("not settable")


@dataclass
class SandboxTemplate:
    id: str
    waba_id: str
    name: str
    language: str
    status: str = "APPROVED"
    category: str = "UTILITY"
    components: list[dict] = field(default_factory=list)
    parameter_format: str = "POSITIONAL"
    rejected_reason: str = "NONE"
    created_at: int = field(default_factory=lambda: int(time.time()))

    def as_meta(self, fields: tuple[str, ...] = TEMPLATE_FIELDS_DEFAULT) -> dict:
        """As `GET /{waba_id}/message_templates` lists it: the `fields` asked for that have a value,
        and always the id."""
        values = {
            "name": self.name,
            "parameter_format": self.parameter_format,
            "components": self.components,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "quality_score": {"score": "UNKNOWN", "date": self.created_at},  # no sends rated yet
            "rejected_reason": self.rejected_reason,
            "id": self.id,
        }
        return {name: values[name] for name in (*fields, "id") if name in values}

    def component(self, kind: str) -> dict | None:
        return next((item for item in self.components if str(item.get("type", "")).upper() == kind), None)


def template_fields(asked: str | None) -> tuple[str, ...]:
    """The `fields` argument of a template read: Meta's default set when absent, 100 naming a field
    Meta does not know."""
    if not asked:
        return TEMPLATE_FIELDS_DEFAULT
    names = tuple(dict.fromkeys(name.strip() for name in asked.split(",") if name.strip()))
    for name in names:
        if name not in TEMPLATE_FIELDS:
            raise invalid_parameter(
                f"Tried accessing nonexisting field ({name}) on node type (WhatsAppBusinessHSM)"
            )
    return names


@dataclass(frozen=True)
class SandboxNumber:
    """A business phone number the sandbox knows, as registered at Meta."""

    phone_number_id: str
    display_phone_number: str = DEFAULT_DISPLAY_PHONE_NUMBER
    waba_id: str = DEFAULT_WABA_ID
    verified_name: str = DEFAULT_VERIFIED_NAME

    def as_dict(self) -> dict:
        return {
            "phone_number_id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "waba_id": self.waba_id,
            "verified_name": self.verified_name,
        }


@dataclass(frozen=True)
class KnownWamid:
    """A wamid the sandbox issued (outbound) or saw a user send (inbound), and its business number
    ("" when a received one was recorded without it)."""

    direction: str
    phone_number_id: str


def hello_world_template() -> SandboxTemplate:
    """The sample every new WhatsApp Business Account has at Meta."""
    return SandboxTemplate(
        id="1000000000000001",
        waba_id=DEFAULT_WABA_ID,
        name="hello_world",
        language="en_US",
        category="UTILITY",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
            {
                "type": "BODY",
                "text": "Welcome and congratulations!! This message demonstrates your ability to send a "
                "WhatsApp message notification from the Cloud API, hosted by Meta. Thank you for taking "
                "the time to test with us.",
            },
            {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
        ],
    )


@dataclass
class Accepted:
    wamid: str
    wa_id: str
    drop: bool  # close the connection instead of answering
    conversation: dict
    pricing: dict


@dataclass
class Counters:
    messages: Counter = field(default_factory=Counter)  # phone_number_id → accepted sends
    reads: int = 0  # marks-as-read, typing indicators included
    read_wamids: deque = field(default_factory=lambda: deque(maxlen=READS_KEPT))  # in arrival order
    typing_wamids: deque = field(default_factory=lambda: deque(maxlen=READS_KEPT))
    rate_limited: int = 0
    pair_limited: int = 0
    errors: Counter = field(default_factory=Counter)  # code → error answers of the messages endpoint
    dropped: int = 0
    duplicates: int = 0
    sends_by_callback: Counter = field(default_factory=Counter)
    by_wamid: dict[str, dict] = field(default_factory=dict)
    # phone_number_id → {"first", "last": Unix times of its first and last accepted arrival,
    # "per_second": accepted sends by whole Unix second}: the achieved rate, for benchmarks.
    accepts: dict[str, dict] = field(default_factory=dict)


class Outbox:
    def __init__(self, settings: OutboundSettings):
        self._lock = threading.Lock()
        self._initial = settings
        self.settings = settings
        self._random = random.Random()
        default = SandboxNumber(DEFAULT_PHONE_NUMBER_ID)
        self._numbers: dict[str, SandboxNumber] = {default.phone_number_id: default}
        self._wamids: OrderedDict[str, KnownWamid] = OrderedDict()
        self._clear()

    def _clear(self) -> None:
        self.counters = Counters()
        self._windows: dict[str, deque[float]] = {}
        self._pair_last: dict[tuple[str, str], float] = {}
        self._conversations: dict[tuple[str, str], dict] = {}
        template = hello_world_template()
        self._templates: dict[str, SandboxTemplate] = {template.id: template}

    def reset(self) -> None:
        """Back to how the process started: settings, counts, limits and templates (media stay)."""
        with self._lock:
            self.settings = self._initial
            self._clear()

    def counters_reset(self) -> None:
        with self._lock:
            self.counters = Counters()

    def configure(self, changes: dict) -> OutboundSettings:
        with self._lock:
            self.settings = self.settings.updated(changes)
            return self.settings

    # -- numbers and wamids ---------------------------------------------------------------------

    def number_register(self, number: SandboxNumber) -> SandboxNumber:
        with self._lock:
            self._numbers[number.phone_number_id] = number
            return number

    def number_forget(self, phone_number_id: str) -> bool:
        with self._lock:
            return self._numbers.pop(phone_number_id, None) is not None

    def numbers(self) -> list[SandboxNumber]:
        with self._lock:
            return list(self._numbers.values())

    def number_known(self, phone_number_id: str) -> bool:
        settings = self.settings
        named = (settings.waba_ids, settings.display_phone_numbers, settings.rate_limits)
        return phone_number_id in self._numbers or any(phone_number_id in names for names in named)

    def number_ids(self) -> list[str]:
        """Every phone number id the sandbox knows: its own, those registered, those the settings name."""
        with self._lock:
            settings = self.settings
            named = (self._numbers, settings.waba_ids, settings.display_phone_numbers, settings.rate_limits)
            return list(dict.fromkeys(number for names in named for number in names))

    def verified_name(self, phone_number_id: str) -> str:
        number = self._numbers.get(phone_number_id)
        return number.verified_name if number is not None else DEFAULT_VERIFIED_NAME

    def display_phone_number(self, phone_number_id: str) -> str:
        number = self._numbers.get(phone_number_id)
        if phone_number_id in self.settings.display_phone_numbers or number is None:
            return self.settings.display_phone_number(phone_number_id)
        return number.display_phone_number

    def waba_id(self, phone_number_id: str) -> str:
        number = self._numbers.get(phone_number_id)
        if phone_number_id in self.settings.waba_ids or number is None:
            return self.settings.waba_id(phone_number_id)
        return number.waba_id

    def wamid_record(self, *, wamid: str, direction: str, phone_number_id: str) -> None:
        with self._lock:
            self._wamid_record(wamid, KnownWamid(direction, phone_number_id))

    def _wamid_record(self, wamid: str, known: KnownWamid) -> None:
        self._wamids[wamid] = known
        self._wamids.move_to_end(wamid)
        while len(self._wamids) > WAMIDS_KEPT:
            self._wamids.popitem(last=False)

    def wamid_known(self, wamid: str) -> KnownWamid | None:
        with self._lock:
            return self._wamids.get(wamid)

    # -- sending ---------------------------------------------------------------------------------

    def fault_5xx(self) -> None:
        with self._lock:
            failing = self._random.random() < self.settings.messages_5xx_rate
        if failing:
            raise GraphApiError(
                500, 131000, "Something went wrong", details="A fault injected in the sandbox."
            )

    def admit(
        self,
        *,
        phone_number_id: str,
        wa_id: str,
        to: str,
        kind: str,
        callback: str,
        category: str,
        arrived: float,
    ) -> Accepted:
        """Accept one send or raise Meta's error for it, counting either way (see the module's header).

        `arrived` is time.monotonic() when the view began, before parsing: what is timed is the
        request's arrival, not how long this process took to reach the lock. Concurrent requests
        may so reach it out of order by a little; the window keeps its times sorted.
        """
        with self._lock:
            now = arrived
            settings = self.settings
            span = settings.rate_window_ms / 1000
            window = self._windows.setdefault(phone_number_id, deque())
            while window and window[0] <= now - 2 * span:
                window.popleft()
            in_span = len(window) - bisect.bisect_right(window, now - span)
            if in_span >= settings.rate_limit(phone_number_id):
                self.counters.rate_limited += 1
                raise GraphApiError(
                    400,
                    130429,
                    "(#130429) Rate limit hit",
                    details=f"Cloud API message throughput of {settings.rate_limit(phone_number_id)}/s "
                    f"has been reached for phone number {phone_number_id}.",
                )
            bisect.insort(window, now)
            pair = (phone_number_id, wa_id)
            last = self._pair_last.get(pair)
            if settings.pair_spacing_ms and last is not None and now - last < settings.pair_spacing_ms / 1000:
                self.counters.pair_limited += 1
                raise GraphApiError(
                    400,
                    131056,
                    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    details="Too many messages sent from the sender phone number to the same recipient "
                    "phone number in a short period of time.",
                )
            if wa_id in settings.undeliverable:
                raise GraphApiError(
                    400,
                    131026,
                    "(#131026) Message Undeliverable",
                    details=f"Unable to deliver the message to {to}: the number is not on WhatsApp, or "
                    "has not accepted the latest terms, or uses an old WhatsApp version.",
                )
            if kind != "template" and not settings.window_open(wa_id, time.time()):
                raise GraphApiError(
                    400,
                    131047,
                    "(#131047) Re-engagement message",
                    details="Message failed to send because more than 24 hours have passed since the "
                    "customer last replied to this number.",
                )
            self._pair_last[pair] = now
            drop = settings.messages_drop_next > 0
            if drop:
                self.settings = replace(settings, messages_drop_next=settings.messages_drop_next - 1)
            elif settings.messages_drop_rate:
                drop = self._random.random() < settings.messages_drop_rate
            wamid = wamid_new()
            self._wamid_record(wamid, KnownWamid("outbound", phone_number_id))
            counters = self.counters
            counters.messages[phone_number_id] += 1
            counters.dropped += drop
            at = time.time() - (time.monotonic() - arrived)  # the arrival, as the window times it
            timing = counters.accepts.setdefault(
                phone_number_id, {"first": at, "last": at, "per_second": Counter()}
            )
            timing["first"], timing["last"] = min(timing["first"], at), max(timing["last"], at)
            timing["per_second"][int(at)] += 1
            if callback:
                counters.duplicates += callback in counters.sends_by_callback
                counters.sends_by_callback[callback] += 1
            counters.by_wamid[wamid] = {
                "phone_number_id": phone_number_id,
                "to": wa_id,
                "type": kind,
                "biz_opaque_callback_data": callback,
                "dropped": drop,
            }
            conversation = self._conversation(phone_number_id, wa_id, category)
            return Accepted(
                wamid=wamid, wa_id=wa_id, drop=drop, conversation=conversation, pricing=_pricing(category)
            )

    def _conversation(self, phone_number_id: str, wa_id: str, category: str) -> dict:
        """Meta's conversation of a status: one id per (number, recipient, category) for 24 hours."""
        now = int(time.time())
        key = (phone_number_id, wa_id, category)
        conversation = self._conversations.get(key)
        if conversation is None or int(conversation["expiration_timestamp"]) <= now:
            conversation = {
                "id": secrets.token_hex(16),
                "expiration_timestamp": str(now + SERVICE_WINDOW_S),
                "origin": {"type": category},
            }
            self._conversations[key] = conversation
        return conversation

    def media_record(self, *, wamid: str, media: dict) -> None:
        """What fetching a sent message's link found (type, size, sha256), kept with the send."""
        with self._lock:
            if wamid in self.counters.by_wamid:
                self.counters.by_wamid[wamid]["media"] = media

    def read_record(self, *, wamid: str, typing: bool) -> None:
        """A mark-as-read Meta accepted (with a typing indicator when `typing`)."""
        with self._lock:
            self.counters.reads += 1
            self.counters.read_wamids.append(wamid)
            if typing:
                self.counters.typing_wamids.append(wamid)

    def error_count(self, code: int) -> None:
        with self._lock:
            self.counters.errors[code] += 1

    def stats(self, *, summary: bool = False) -> dict:
        with self._lock:
            counters = self.counters
            answer = {
                "messages": dict(counters.messages),
                "accepted": sum(counters.messages.values()),
                "reads": counters.reads,
                "typing": len(counters.typing_wamids),
                "rate_limited": counters.rate_limited,
                "pair_limited": counters.pair_limited,
                "errors": {str(code): count for code, count in counters.errors.items()},
                "dropped": counters.dropped,
                "duplicates": counters.duplicates,
                "accepts": {
                    number: {
                        "first": timing["first"],
                        "last": timing["last"],
                        "per_second": {str(second): n for second, n in sorted(timing["per_second"].items())},
                    }
                    for number, timing in counters.accepts.items()
                },
            }
            if not summary:
                answer["sends_by_callback"] = dict(counters.sends_by_callback)
                answer["by_wamid"] = dict(counters.by_wamid)
                answer["read_wamids"] = list(counters.read_wamids)
                answer["typing_wamids"] = list(counters.typing_wamids)
            return answer

    # -- templates -------------------------------------------------------------------------------

    def templates_define(self, templates: list[SandboxTemplate]) -> None:
        """Add templates; one with the same WABA, name and language (or id) is replaced."""
        with self._lock:
            for template in templates:
                for known in list(self._templates.values()):
                    same = (known.waba_id, known.name, known.language) == (
                        template.waba_id,
                        template.name,
                        template.language,
                    )
                    if same or known.id == template.id:
                        del self._templates[known.id]
                self._templates[template.id] = template

    def templates_clear(self) -> None:
        with self._lock:
            self._templates = {}

    def templates_of(self, waba_id: str) -> list[SandboxTemplate]:
        """A WABA's templates in the order they were defined."""
        with self._lock:
            return [template for template in self._templates.values() if template.waba_id == waba_id]

    def templates_all(self) -> list[SandboxTemplate]:
        with self._lock:
            return list(self._templates.values())

    def template_get(self, template_id: str) -> SandboxTemplate | None:
        """A template by its id, as `GET /{template-id}` reads it."""
        with self._lock:
            return self._templates.get(template_id)

    def template_delete(self, template_id: str) -> bool:
        with self._lock:
            return self._templates.pop(template_id, None) is not None

    def template_status_set(
        self, template_id: str, status: str, reason: str = "NONE"
    ) -> SandboxTemplate | None:
        with self._lock:
            template = self._templates.get(template_id)
            if template is not None:
                rejected_reason = reason if status == "REJECTED" else "NONE"
                template = replace(template, status=status, rejected_reason=rejected_reason)
                self._templates[template_id] = template
            return template

    def template_add(self, template: SandboxTemplate) -> bool:
        """A created template; False when its WABA has that name in that language already (Meta's
        2388024: a template is one name in several languages, each made once)."""
        with self._lock:
            for known in self._templates.values():
                if (known.waba_id, known.name, known.language) == (
                    template.waba_id,
                    template.name,
                    template.language,
                ):
                    return False
            self._templates[template.id] = template
            return True

    def templates_delete(self, *, waba_id: str, name: str, template_id: str = "") -> list[SandboxTemplate]:
        """Meta's delete: every language of the name, or only the one with that id."""
        with self._lock:
            doomed = [
                template
                for template in self._templates.values()
                if template.waba_id == waba_id
                and template.name == name
                and (not template_id or template.id == template_id)
            ]
            for template in doomed:
                del self._templates[template.id]
            return doomed

    def template_find(self, *, phone_number_id: str, name: str, language: str) -> SandboxTemplate | None:
        """The template a number may send: from its WABA when `waba_ids` maps it, else from any WABA."""
        with self._lock:
            waba_id = self.settings.waba_ids.get(phone_number_id)
            for template in self._templates.values():
                same = template.name == name and template.language == language
                if same and (waba_id is None or template.waba_id == waba_id):
                    return template
            return None


def template_id_new() -> str:
    return str(10**15 + secrets.randbelow(9 * 10**15))


def _pricing(category: str) -> dict:
    """Meta's per-message pricing: service messages inside the window are free."""
    if category == "service":
        return {
            "billable": False,
            "pricing_model": "PMP",
            "category": "service",
            "type": "free_customer_service",
        }
    return {"billable": True, "pricing_model": "PMP", "category": category, "type": "regular"}

"""Business phone numbers as the Graph API reads them, and their standing at Meta.

- `GET /{version}/{phone-number-id}` (answered through media.py's `GET /{id}`): one number,
  the `fields` asked for (Meta's default set without them; a field Meta does not know is its
  error 100), always with the id.
- `GET /{version}/{waba_id}/phone_numbers`: the WABA's numbers, `{"data": [...], "paging":
  {"cursors": {"before", "after"}, "next"}}`, `limit` (default 25) and the `after`/`before`
  cursors; `next` only when there is more. A WABA no number or template of the sandbox belongs
  to is Meta's unknown object.
- `POST /sandbox/numbers/<id>/quality` `{"quality_rating", "messaging_limit", "throughput",
  "event"}` (each optional): the number's standing changes and Meta's signed
  `phone_number_quality_update` webhook is posted to the configured URL. The event is FLAGGED
  when the rating turns RED, UNFLAGGED when it leaves RED, UPGRADE or DOWNGRADE when the limit
  moves, THROUGHPUT_UPGRADE when the throughput turns HIGH; `event` names another.

Every number starts as a connected number of a verified business does: quality GREEN, messaging
limit TIER_1K (1,000 customers in 24 hours), STANDARD throughput. `POST /sandbox/reset` puts
them back.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import httpx
import phonenumbers
from flask import Blueprint, current_app, request

from devstack.sandbox import payloads
from devstack.sandbox.calls import graph_call, sandbox_outbox
from devstack.sandbox.errors import invalid_parameter, unknown_object
from devstack.sandbox.paging import edge_page

blueprint = Blueprint("numbers", __name__)
logger = logging.getLogger(__name__)

QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "NA", "UNKNOWN")
# From the lowest to the highest: a move to the right is an UPGRADE.
MESSAGING_LIMITS = (
    "TIER_NOT_SET",
    "TIER_50",
    "TIER_250",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    "TIER_UNLIMITED",
)
THROUGHPUT_LEVELS = ("STANDARD", "HIGH")
EVENTS = ("DOWNGRADE", "FLAGGED", "ONBOARDING", "THROUGHPUT_UPGRADE", "UNFLAGGED", "UPGRADE")
DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)
FIELDS = frozenset(
    {
        *DEFAULT_FIELDS,
        "account_mode",
        "certificate",
        "conversational_automation",
        "country_code",
        "country_dial_code",
        "eligibility_for_api_business_global_search",
        "health_status",
        "is_official_business_account",
        "is_on_biz_app",
        "is_pin_enabled",
        "is_preverified_number",
        "last_onboarded_time",
        "messaging_limit_tier",
        "name_status",
        "new_certificate",
        "new_name_status",
        "quality_score",
        "search_visibility",
        "status",
        "webhook_configuration",
        "whatsapp_business_manager_messaging_limit",
    }
)


@dataclass(frozen=True)
class Standing:
    quality_rating: str = "GREEN"
    messaging_limit: str = "TIER_1K"
    throughput: str = "STANDARD"


class Standings:
    """Each number's standing, GREEN / TIER_1K / STANDARD until changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._standings: dict[str, Standing] = {}

    def get(self, phone_number_id: str) -> Standing:
        with self._lock:
            return self._standings.get(phone_number_id, Standing())

    def change(self, phone_number_id: str, **changes: str) -> tuple[Standing, Standing]:
        with self._lock:
            old = self._standings.get(phone_number_id, Standing())
            new = replace(old, **changes)
            self._standings[phone_number_id] = new
            return old, new

    def reset(self) -> None:
        with self._lock:
            self._standings = {}


def sandbox_standings() -> Standings:
    return current_app.extensions["sandbox_standings"]


def number_fields(asked: str | None) -> tuple[str, ...]:
    if not asked:
        return DEFAULT_FIELDS
    names = tuple(dict.fromkeys(name.strip() for name in asked.split(",") if name.strip()))
    for name in names:
        if name not in FIELDS:
            raise invalid_parameter(
                f"Tried accessing nonexisting field ({name}) on node type (WhatsAppBusinessPhoneNumber)"
            )
    return names


def _international(digits: str) -> tuple[str, str, str]:
    """`12015550123` → ("+1 201-555-0123", "US", "1"), as Meta shows a number."""
    try:
        number = phonenumbers.parse(f"+{digits}")
    except phonenumbers.NumberParseException:
        return f"+{digits}", "", ""
    shown = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return shown, phonenumbers.region_code_for_number(number) or "", str(number.country_code)


def number_as_meta(phone_number_id: str, fields: tuple[str, ...]) -> dict:
    """One number as the Graph API reads it: the fields asked for that have a value, and its id."""
    outbox = sandbox_outbox()
    standing = sandbox_standings().get(phone_number_id)
    shown, country, dial_code = _international(outbox.display_phone_number(phone_number_id))
    webhook_url = outbox.settings.webhook_url
    values = {
        "id": phone_number_id,
        "display_phone_number": shown,
        "verified_name": outbox.verified_name(phone_number_id),
        "quality_rating": standing.quality_rating,
        "quality_score": {"score": standing.quality_rating},
        "messaging_limit_tier": standing.messaging_limit,
        "whatsapp_business_manager_messaging_limit": standing.messaging_limit,
        "throughput": {"level": standing.throughput},
        "status": "FLAGGED" if standing.quality_rating == "RED" else "CONNECTED",
        "name_status": "APPROVED",
        "new_name_status": "NONE",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API",
        "account_mode": "LIVE",
        "is_official_business_account": False,
        "is_on_biz_app": False,
        "is_pin_enabled": False,
        "is_preverified_number": False,
        "search_visibility": "VISIBLE",
        "country_code": country,
        "country_dial_code": dial_code,
        "webhook_configuration": {"application": webhook_url} if webhook_url else None,
    }
    return {name: values[name] for name in (*fields, "id") if values.get(name) not in (None, "")}


def _waba_known(waba_id: str) -> bool:
    outbox = sandbox_outbox()
    if waba_id == payloads.DEFAULT_WABA_ID or outbox.templates_of(waba_id):
        return True
    return any(outbox.waba_id(number) == waba_id for number in outbox.number_ids())


@blueprint.get("/<version:version>/<waba_id>/phone_numbers")
@blueprint.get("/<waba_id>/phone_numbers", defaults={"version": ""})
@graph_call("phone_numbers")
def numbers_list(version: str, waba_id: str):
    fields = number_fields(request.args.get("fields"))
    if not _waba_known(waba_id):
        raise unknown_object(waba_id)
    outbox = sandbox_outbox()
    numbers = [number for number in outbox.number_ids() if outbox.waba_id(number) == waba_id]
    answer = edge_page(
        numbers,
        render=lambda number: number_as_meta(number, fields),
        endpoint="numbers.numbers_list",
        version=version,
        waba_id=waba_id,
    )
    return answer


@blueprint.post("/sandbox/numbers/<phone_number_id>/quality")
def number_quality_change(phone_number_id: str):
    outbox = sandbox_outbox()
    if not outbox.number_known(phone_number_id):
        raise unknown_object(phone_number_id, method="post")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid_parameter("Send the changes as a JSON object.")
    changes = {}
    for key, name, allowed in (
        ("quality_rating", "quality_rating", QUALITY_RATINGS),
        ("messaging_limit", "messaging_limit", MESSAGING_LIMITS),
        ("throughput", "throughput", THROUGHPUT_LEVELS),
    ):
        if key in body:
            value = str(body[key] or "").upper()
            if value not in allowed:
                raise invalid_parameter(f"Param {key} must be one of {', '.join(allowed)}.")
            changes[name] = value
    event = str(body.get("event") or "").upper()
    if event and event not in EVENTS:
        raise invalid_parameter(f"Param event must be one of {', '.join(EVENTS)}.")
    old, new = sandbox_standings().change(phone_number_id, **changes)
    event = event or _event(old, new)
    settings = outbox.settings
    posted = bool(settings.webhook_url and event)
    if posted:
        limit_moved = old.messaging_limit != new.messaging_limit
        webhook = payloads.phone_number_quality_body(
            waba_id=outbox.waba_id(phone_number_id),
            display_phone_number=outbox.display_phone_number(phone_number_id),
            event=event,
            current_limit="TIER_UNLIMITED" if event == "THROUGHPUT_UPGRADE" else new.messaging_limit,
            old_limit=old.messaging_limit if limit_moved else "",
        )
        threading.Thread(
            target=_post_quietly, args=(settings.webhook_url, webhook, settings.app_secret), daemon=True
        ).start()
    fields = ("id", "display_phone_number", "quality_rating", "messaging_limit_tier", "throughput")
    return {"data": number_as_meta(phone_number_id, fields), "event": event, "webhook": posted}


def _event(old: Standing, new: Standing) -> str:
    """What Meta's webhook says of a change: the limit's move first, then the rating's, then throughput."""
    if old.messaging_limit != new.messaging_limit:
        higher = MESSAGING_LIMITS.index(new.messaging_limit) > MESSAGING_LIMITS.index(old.messaging_limit)
        return "UPGRADE" if higher else "DOWNGRADE"
    if new.quality_rating == "RED" and old.quality_rating != "RED":
        return "FLAGGED"
    if old.quality_rating == "RED" and new.quality_rating != "RED":
        return "UNFLAGGED"
    if new.throughput == "HIGH" and old.throughput != "HIGH":
        return "THROUGHPUT_UPGRADE"
    return ""


def _post_quietly(url: str, body: dict, app_secret: str) -> None:
    try:
        payloads.webhook_post(url=url, body=body, app_secret=app_secret)
    except httpx.HTTPError as error:
        logger.info("phone number quality webhook to %s failed: %r", url, error)

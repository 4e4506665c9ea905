"""Whether a contact can be written to on a channel: it has an address there and has not opted out
of it. One table of fields drives the three forms every caller uses: the check on a contact
(`contact_reachable`, before a send), the queryset filter (`contact_reachable_q`) and the SQL a
campaign's audience is selected with (`contact_reachable_sql`) and its recipients rechecked with
(`contact_unreachable_sql`); a test holds them in agreement.

The addresses: WhatsApp writes to the WhatsApp id, else the phone number without its "+"; SMS to
the phone number; email to the email address. Each channel has its own opt-out (OPT_OUT_FIELDS).
"""

from __future__ import annotations

from django.db.models import Q

from contacts.models import OPT_OUT_FIELDS, Channel, Contact

NO_ADDRESS = "no_address"
OPTED_OUT = "opted_out"
UNREACHABLE_CODES = frozenset({NO_ADDRESS, OPTED_OUT})


def contact_address(contact: Contact, channel: str) -> str:
    """The contact's address on the channel, "" when it has none."""
    channel = Channel(channel)
    if channel == Channel.WHATSAPP:
        return contact.wa_id or (contact.phone or "").lstrip("+")
    if channel == Channel.SMS:
        return contact.phone or ""
    return contact.email or ""


def contact_reachable(contact: Contact, channel: str) -> str | None:
    """None when the contact can be written to on the channel, else why not: NO_ADDRESS or
    OPTED_OUT (an address is looked for first)."""
    if not contact_address(contact, channel):
        return NO_ADDRESS
    if getattr(contact, OPT_OUT_FIELDS[Channel(channel)][0]) is not None:
        return OPTED_OUT
    return None


def contact_reachable_q(channel: str) -> Q:
    """The contacts `contact_reachable` answers None for."""
    channel = Channel(channel)
    phone = Q(phone__regex=r"[^+]")  # a phone that is more than its "+"
    address = {
        Channel.WHATSAPP: ~Q(wa_id="") | phone,
        Channel.EMAIL: ~Q(email=""),
        Channel.SMS: phone,
    }[channel]
    return address & Q(**{f"{OPT_OUT_FIELDS[channel][0]}__isnull": True})


def contact_address_sql(channel: str, alias: str = "c") -> str:
    """`contact_address` as an SQL expression over the contacts table aliased `alias`."""
    channel = Channel(channel)
    if channel == Channel.WHATSAPP:
        return f"COALESCE(NULLIF({alias}.wa_id, ''), ltrim(COALESCE({alias}.phone, ''), '+'))"
    if channel == Channel.SMS:
        return f"COALESCE({alias}.phone, '')"
    return f"COALESCE({alias}.email, '')"


def contact_reachable_sql(channel: str, alias: str = "c") -> str:
    """`contact_reachable_q` as an SQL condition, for a WHERE clause: plain comparisons the planner
    can estimate and index, where the CASE of `contact_unreachable_sql` is opaque to it."""
    opted_out = OPT_OUT_FIELDS[Channel(channel)][0]
    return f"({contact_address_sql(channel, alias)} <> '' AND {alias}.{opted_out} IS NULL)"


def contact_unreachable_sql(channel: str, alias: str = "c") -> str:
    """`contact_reachable` as an SQL expression: NULL, or the reason code."""
    opted_out = OPT_OUT_FIELDS[Channel(channel)][0]
    return (
        f"(CASE WHEN {contact_address_sql(channel, alias)} = '' THEN '{NO_ADDRESS}'"
        f" WHEN {alias}.{opted_out} IS NOT NULL THEN '{OPTED_OUT}' END)"
    )

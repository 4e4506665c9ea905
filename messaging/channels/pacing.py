"""The pace of the email and SMS channels, shared by every worker: the GCRA of core/pacing.py keyed
"channel:<email|sms>", its rate EMAIL_RATE_PER_S or SMS_RATE_PER_S, or a lower one a caller gives.
Wait for a slot with core.pacing's `pace_wait`, as for a sender number's."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from contacts.models import Channel
from core.pacing import Step, pace_slots_take


def channel_rate_per_s(channel: str) -> float:
    rates = {Channel.EMAIL: settings.EMAIL_RATE_PER_S, Channel.SMS: settings.SMS_RATE_PER_S}
    try:
        return rates[Channel(channel)]
    except (KeyError, ValueError):
        raise ValueError(f"no pace for channel {channel!r}: email or sms") from None


def channel_slots_take(*, channel: str, n: int, rate_per_s: float | None = None) -> list[datetime]:
    """The times of the channel's next n sends, in order, each reserved (see core/pacing.py)."""
    rate = channel_rate_per_s(channel)
    if rate_per_s is not None:
        rate = min(rate, rate_per_s)
    if rate <= 0:
        raise ValueError(f"the {channel} rate must be above 0, not {rate}")
    return pace_slots_take(key=f"channel:{Channel(channel).value}", n=n, step=Step.of_rate(rate))

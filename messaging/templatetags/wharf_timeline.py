"""The conversation timeline's filters: what the template would otherwise work out per message with
chains of conditions (the timeline shows up to 200 messages)."""

from django import template

from messaging.admin.common import TICKS

register = template.Library()


@register.filter
def tick_mark(status: str) -> str:
    """The tick mark of an outbound message's status (messaging.admin.common.TICKS); empty for
    another status."""
    return TICKS.get(status, ("", ""))[0]

"""Campaign sends marked in a conversation's timeline ("Campaign: <name>"). Template tags, so the
conversation page (messaging) needs no import of campaigns: campaigns builds on messaging, not the
other way round. One query for the whole timeline, whatever its length."""

from django import template
from django.urls import reverse
from django.utils.html import format_html

from campaigns.models import Campaign
from campaigns.selectors import campaigns_of_messages
from messaging.models import Message

register = template.Library()


@register.simple_tag(takes_context=True)
def timeline_campaigns(context, entries) -> dict:
    """{message id: campaign} for the outbound messages among the timeline's `entries`, and whether
    the user may open the campaigns (under the key "may_view")."""
    ids = [
        entry.message.pk
        for entry in entries
        if entry.message is not None and entry.message.direction == Message.Direction.OUTBOUND
    ]
    return {
        "campaigns": campaigns_of_messages(message_ids=ids),
        "may_view": context["request"].user.has_perm("campaigns.view_campaign"),
    }


@register.simple_tag
def campaign_tag(campaigns: dict, message: Message) -> str:
    """The message's small "Campaign: <name>" tag, a link to the campaign for those who may view it."""
    campaign: Campaign | None = campaigns["campaigns"].get(message.pk)
    if campaign is None:
        return ""
    if not campaigns["may_view"]:
        return format_html('<div class="wharf-campaign">Campaign: {}</div>', campaign.name)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    return format_html('<div class="wharf-campaign">Campaign: <a href="{}">{}</a></div>', url, campaign.name)

"""The campaigns a contact received, on the conversation page's contact panel. A template tag, so
the page (messaging) needs no import of campaigns: campaigns build on messaging, not the other way
round."""

from django import template

from campaigns.selectors import contact_campaigns_recent
from contacts.access import contact_data_visible

register = template.Library()
RECENT = 5


@register.inclusion_tag("admin/campaigns/contact_campaigns.html", takes_context=True)
def contact_campaigns(context, contact) -> dict:
    """The contact's latest campaigns, for a user who may view contacts."""
    user = context["request"].user
    if not contact_data_visible(user):
        return {"shown": False}
    return {
        "shown": True,
        "recent": contact_campaigns_recent(contact_id=contact.pk, limit=RECENT),
        "can_view_campaigns": user.has_perm("campaigns.view_campaign"),
    }

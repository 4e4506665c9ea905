"""The archive's notice on a conversation page: how many of its older messages are archived, and a
button to restore them. A template tag, so the conversation page (messaging) needs no import of
archival: archival builds on messaging, not the other way round."""

from django import template

from archival.selectors import conversation_archived

register = template.Library()


@register.inclusion_tag("admin/archival/conversation_archived.html", takes_context=True)
def conversation_archived_notice(context, contact) -> dict:
    request = context["request"]
    return {
        "contact": contact,
        "archived": conversation_archived(contact=contact),
        "can_restore": request.user.has_perm("archival.change_archivebatch"),
    }

"""Who may read contact data and make contacts, the same at every door (API, admin, reports).

Contact data is what says who a contact is or what is known of them: their phone, WhatsApp id,
name, email and attributes, and whatever carries those or came from them as files: Meta's raw
payloads (which hold the sender's number and profile name), the media they sent, campaign reports
(every recipient's address) and an audience's count or sample (a count of the contacts whose
attribute has some value, asked often enough, reads the attribute). Each door's own permission
(messaging.view_message, campaigns.view_campaign ...) gives the rest of what it shows; contact data
needs contacts.view_contact besides. A message's text belongs to the message.

Making a contact needs contacts.add_contact, also where another door would make one on the way
(a send to a number Wharf does not know yet).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from rest_framework.permissions import BasePermission

CONTACTS_VIEW = "contacts.view_contact"
CONTACTS_ADD = "contacts.add_contact"
CONTACT_DATA_HIDDEN = f"hidden: contact data needs the {CONTACTS_VIEW} permission"


def contact_data_visible(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether `user` may read contact data (see the module's docstring for what that is)."""
    return user.has_perm(CONTACTS_VIEW)


def contact_create_allowed(user: AbstractBaseUser | AnonymousUser) -> bool:
    return user.has_perm(CONTACTS_ADD)


class ContactDataPermission(BasePermission):
    """For an API view whose whole answer is contact data (a report, an audience's count)."""

    message = f"This is contact data: it needs the {CONTACTS_VIEW} permission."

    def has_permission(self, request, view) -> bool:
        return contact_data_visible(request.user)

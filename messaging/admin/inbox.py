"""The inbox: the conversations an operator works on, at the conversations' changelist URL.

It lists through `messaging.selectors.conversation_list` (tabs, filters, sorts, search) and stays
live by polling `changes/`, which answers from one indexed query (`conversation_changes_token`)
whether anything the operator may see moved since the page's token; only then does the page fetch
the list again (`?fragment=1`) and swap it in. Conversations are written only by the services, from
the conversation page's header controls (`<id>/<control>/`, messaging/admin/controls.py); the inbox
itself reads.

Two answers serve every admin page (the header's operator tools, messaging/templatetags/wharf_inbox.py):
`notifications/`, whose unread count is the title's and whose entries become browser notifications,
and `availability/`, where operators mark themselves available for automatic assignment or away.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from core.params import int_param
from messaging.admin.common import SOURCE, conversation_url
from messaging.admin.controls import CHANGE_PERMISSION, CONTROLS, conversation_control_apply
from messaging.admin.reports import reports_view
from messaging.conversations import (
    conversations_visible_q,
    operator_availability_set,
    phone_numbers_visible_q,
)
from messaging.models import Conversation, Label, PhoneNumber
from messaging.selectors import (
    CONVERSATION_SORTS,
    CONVERSATION_TABS,
    conversation_changes_token,
    conversation_counts,
    conversation_list,
    conversation_notifications,
    conversations_calling,
)
from messaging.window import conversation_window

INBOX_PAGE_SIZE = 50
POLL_INTERVAL_MS = 2500
TAB_NAMES = {"mine": "Mine", "unassigned": "Unassigned", "all": "All"}


def waiting_text(since: datetime | None, now: datetime) -> str:
    """ "waiting 12 min", "waiting 3 h 5 min", "waiting 2 days"; empty when nobody waits."""
    if since is None:
        return ""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    if minutes < 1:
        return "waiting <1 min"
    if minutes < 60:
        return f"waiting {minutes} min"
    if minutes < 24 * 60:
        return f"waiting {minutes // 60} h {minutes % 60} min"
    days = minutes // (24 * 60)
    return f"waiting {days} day{'s' if days > 1 else ''}"


def conversation_open_url(conversation: Conversation) -> str:
    """The conversation page of the contact, replying from the conversation's number."""
    url = conversation_url(conversation.contact_id)
    return f"{url}?sender={conversation.phone_number_id}" if conversation.phone_number_id else url


def contact_name(conversation: Conversation) -> str:
    """How the inbox names the conversation's contact."""
    contact = conversation.contact
    return contact.name or contact.phone or contact.wa_id or "(no name)"


@dataclass
class InboxRow:
    conversation: Conversation
    url: str
    waiting: str
    window_open: bool
    window_closes_at: datetime | None
    recent: bool  # the last message came within a day: show its time, else its date
    labels: list[tuple[str, str]]  # (name, colour)


@dataclass
class InboxQuery:
    """The inbox's parameters, read from the query string; anything unknown is left out."""

    tab: str = "all"
    status: str = ""
    phone_number: int | None = None
    label: str = ""
    assignee: int | None = None
    sort: str = "waiting"
    q: str = ""

    @classmethod
    def parse(cls, params) -> InboxQuery:
        tab = params.get("tab", "all")
        status = params.get("status", "")
        sort = params.get("sort", "waiting")
        return cls(
            tab=tab if tab in CONVERSATION_TABS else "all",
            status=status if status in Conversation.Status.values else "",
            phone_number=int_param(params.get("phone_number")),
            label=params.get("label", "").strip().lower(),
            assignee=int_param(params.get("assignee")),
            sort=sort if sort in CONVERSATION_SORTS else "waiting",
            q=params.get("q", "").strip(),
        )

    def filters(self) -> dict:
        """The selector's arguments besides the user, the tab and the sort."""
        return {
            "status": self.status or None,
            "phone_number": self.phone_number,
            "label": self.label or None,
            "assignee": self.assignee,
            "q": self.q or None,
        }

    def query_string(self, **changes) -> str:
        values = {
            "tab": self.tab,
            "status": self.status,
            "phone_number": self.phone_number,
            "label": self.label,
            "assignee": self.assignee,
            "sort": self.sort,
            "q": self.q,
        } | changes
        return urlencode({name: value for name, value in values.items() if value not in ("", None)})


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    """Conversations are read here and worked on from the conversation page, through the services."""

    page_size = INBOX_PAGE_SIZE

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("", view(self.inbox_view), name="messaging_conversation_changelist"),
            path("changes/", view(self.changes_view), name="messaging_conversation_changes"),
            path("reports/", view(self.reports_view), name="messaging_conversation_reports"),
            path(
                "notifications/", view(self.notifications_view), name="messaging_conversation_notifications"
            ),
            path("availability/", view(self.availability_view), name="messaging_conversation_availability"),
            path("<int:conversation_id>/change/", view(self.open_view), name="messaging_conversation_change"),
            *(
                path(
                    f"<int:conversation_id>/{control}/",
                    view(self.control_view),
                    {"control": control},
                    name=f"messaging_conversation_{control}",
                )
                for control in CONTROLS
            ),
        ]

    def inbox_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = InboxQuery.parse(request.GET)
        token = conversation_changes_token(user=request.user)  # before the list: nothing slips between
        counts = conversation_counts(user=request.user, **query.filters())
        listing = conversation_list(user=request.user, tab=query.tab, sort=query.sort, **query.filters())
        paginator = Paginator(listing, self.page_size)
        paginator.count = counts[query.tab]  # counted above under the same filters: no second COUNT
        page = paginator.get_page(request.GET.get("page"))
        now = timezone.now()
        catalogue = list(Label.objects.all())
        colours = {label.name: label.colour for label in catalogue}
        rows = [self._row(conversation, now, colours) for conversation in page.object_list]
        context = {
            "query": query,
            "rows": rows,
            "page": page,
            "token": token,
            "counts": counts,
            "tabs": [
                {
                    "name": TAB_NAMES[tab],
                    "count": counts[tab],
                    "current": tab == query.tab,
                    "url": f"?{query.query_string(tab=tab)}",
                }
                for tab in ("mine", "unassigned", "all")
            ],
            "page_query": query.query_string(),
        }
        if request.GET.get("fragment") == "1":
            return TemplateResponse(request, "admin/messaging/inbox_list.html", context)
        user_model = get_user_model()
        context |= {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Inbox",
            "calling": conversations_calling(user=request.user).order_by().count(),
            "filtered": any(value not in (None, "") for value in query.filters().values()),
            "changes_url": reverse("admin:messaging_conversation_changes"),
            "reports_url": reverse("admin:messaging_conversation_reports"),
            "poll_interval_ms": POLL_INTERVAL_MS,
            "statuses": Conversation.Status.values,
            "sorts": [("waiting", "waiting longest"), ("latest", "latest message")],
            "senders": list(
                PhoneNumber.objects.filter(phone_numbers_visible_q(request.user)).order_by(
                    "display_phone_number", "id"
                )
            ),
            "assignees": list(user_model.objects.filter(is_staff=True, is_active=True).order_by("username")),
            "labels": catalogue,
        }
        return TemplateResponse(request, "admin/messaging/inbox.html", context)

    def changes_view(self, request: HttpRequest) -> JsonResponse:
        """{"changed": bool, "token": str}: whether the conversations moved since `since`."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        token = conversation_changes_token(user=request.user)
        response = JsonResponse({"changed": token != request.GET.get("since", ""), "token": token})
        response["Cache-Control"] = "no-store"
        return response

    def reports_view(self, request: HttpRequest) -> HttpResponse:
        return reports_view(request, model_admin=self)

    def notifications_view(self, request: HttpRequest) -> JsonResponse:
        """{"changed": false, "token"} when nothing moved since `since`; else {"changed": true,
        "token", "unread", "new": [{"id", "key", "contact", "preview", "url"}]}
        (messaging.selectors.conversation_notifications)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        found = conversation_notifications(user=request.user, since=request.GET.get("since", ""))
        answer: dict = {"changed": found.changed, "token": found.token}
        if found.changed:
            answer["unread"] = found.unread
            answer["new"] = [
                {
                    "id": entry.conversation.pk,
                    "key": entry.key,
                    "contact": contact_name(entry.conversation),
                    "preview": entry.preview,
                    "url": conversation_open_url(entry.conversation),
                }
                for entry in found.new
            ]
        response = JsonResponse(answer)
        response["Cache-Control"] = "no-store"
        return response

    def availability_view(self, request: HttpRequest) -> HttpResponse:
        """POST available=1 (available for automatic assignment) or 0 (away), then back to `next`,
        else to the page the form was on (its Referer), when either is of this site."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        operator_availability_set(
            user=request.user,
            available=request.POST.get("available") == "1",
            actor=request.user,
            source=SOURCE,
        )
        back = request.POST.get("next") or request.headers.get("Referer", "")
        safe = url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        return HttpResponseRedirect(back if safe else reverse("admin:messaging_conversation_changelist"))

    def open_view(self, request: HttpRequest, conversation_id: int) -> HttpResponse:
        """The admin's link to one conversation (the audit log's, say) opens its conversation page."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        found = get_object_or_404(
            Conversation.objects.filter(conversations_visible_q(request.user)), pk=conversation_id
        )
        return HttpResponseRedirect(conversation_open_url(found))

    def control_view(self, request: HttpRequest, conversation_id: int, control: str) -> HttpResponse:
        """One of the conversation page's header controls (messaging/admin/controls.py): back to the
        page with what was done, or why not."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        found = get_object_or_404(
            Conversation.objects.filter(conversations_visible_q(request.user)), pk=conversation_id
        )
        done, errors = conversation_control_apply(request, found, control)
        if done:
            self.message_user(request, done, messages.SUCCESS)
        for error in errors:
            self.message_user(request, error, messages.ERROR)
        return HttpResponseRedirect(conversation_open_url(found))

    @staticmethod
    def _row(conversation: Conversation, now: datetime, colours: dict[str, str]) -> InboxRow:
        window = conversation_window(conversation, now=now)
        last = conversation.last_message_at
        return InboxRow(
            conversation=conversation,
            url=conversation_open_url(conversation),
            waiting=waiting_text(conversation.waiting_since, now),
            window_open=window.is_open,
            window_closes_at=window.closes_at,
            recent=last is not None and now - last < timedelta(hours=24),
            labels=[(name, colours.get(name, Label.Colour.GREY)) for name in conversation.labels],
        )

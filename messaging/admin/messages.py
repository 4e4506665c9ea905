"""Messages and conversations: the message list (in-doubt ones resent or abandoned) and the
conversation page of a contact, with its header controls (messaging/admin/controls.py), its contact
panel (messaging/admin/panel.py), its reply box (messaging/admin/reply.py) and its private notes
(messaging/admin/notes.py).

The conversation page stays live as the inbox does: every few seconds its script asks
`conversation/<contact>/changes/?since=<token>` (one query, `conversation_timeline_token`), and only
when the answer is "changed" fetches the timeline again (`?fragment=timeline`) and swaps it in,
leaving the reply box as the operator left it. That fetch marks newly arrived messages read too
(and Meta is told, messaging/receipts.py). Typing in the reply box posts `conversation/<contact>/typing/`
at most once per 25 s, which shows the customer a typing indicator.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from contacts.access import CONTACT_DATA_HIDDEN, contact_data_visible
from contacts.models import Contact
from contacts.selectors import contact_search_q
from core.params import int_param
from messaging.admin.common import (
    MESSAGE_TYPES,
    PHONE_PUNCTUATION,
    SOURCE,
    conversation_url,
    pretty_json,
    ticks_html,
)
from messaging.admin.controls import conversation_controls_context
from messaging.admin.inbox import POLL_INTERVAL_MS
from messaging.admin.notes import NOTE_PERMISSION, note_add, note_context
from messaging.admin.panel import contact_panel_context
from messaging.admin.reply import reply_context, reply_links_context, reply_send, reply_sender
from messaging.conversations import conversation_read, conversations_visible_q, phone_number_visible
from messaging.media import media_access, media_link
from messaging.models import (
    Message,
    SendAttempt,
)
from messaging.outbound.send import (
    message_abandon,
    message_resend,
)
from messaging.receipts import TYPING_INTERVAL, conversation_typing_send
from messaging.selectors import (
    CONVERSATION_PAGE_SIZE,
    conversation,
    conversation_of,
    conversation_timeline_token,
    conversations_hidden,
    conversations_unread,
    message_doubt_evidence,
    message_media_error,
)
from messaging.services import (
    message_delete,
    messages_delete,
)


class MessageTypeFilter(admin.SimpleListFilter):
    """Meta's message types, listed rather than read from a table that grows without end."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request, model_admin):
        return [(kind, kind) for kind in MESSAGE_TYPES]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(type=self.value())
        return queryset


class InDoubtFilter(admin.SimpleListFilter):
    """Messages an operator must decide on: their worker died while Meta may have had them."""

    title = "in doubt"
    parameter_name = "in_doubt"

    def lookups(self, request, model_admin):
        return [("yes", "In doubt")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=Message.Status.IN_DOUBT)
        return queryset


class SendAttemptInline(admin.TabularInline):
    model = SendAttempt
    fields = (
        "started_at",
        "cleared_at",
        "finished_at",
        "worker",
        "outcome",
        "http_status",
        "error_code",
        "error_title",
        "error_details",
        "latency_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "attempts to send"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def failure_text(message: Message) -> str:
    """Meta's code and title, the way operators look them up: `131047: Re-engagement message`."""
    if message.error_code is None and not message.error_title:
        return ""
    code = f"{message.error_code}: " if message.error_code is not None else ""
    return f"{code}{message.error_title}"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are Meta's record: read here, deleted through the service, never edited.

    A user who may not read contact data (contacts.access) sees a message's contact by its id alone,
    cannot search by phone number, and sees neither Meta's raw payload nor the media."""

    list_display = (
        "timestamp",
        "contact_link",
        "direction",
        "type",
        "text_short",
        "status_ticks",
        "failure",
        "media_state",
        "phone_number",
        "conversation_link",
    )
    list_display_links = ("timestamp",)
    list_filter = (
        InDoubtFilter,
        "direction",
        "status",
        MessageTypeFilter,
        "media_state",
        "phone_number",
        ("timestamp", admin.DateFieldListFilter),
    )
    list_select_related = ("contact", "phone_number")
    search_fields = ("=wamid", "text", "contact__phone")
    search_help_text = "A wamid, words of the text, or the contact's phone number in any format."
    show_full_result_count = False
    ordering = ("-timestamp", "-id")
    conversation_page_size = CONVERSATION_PAGE_SIZE
    fieldsets = (
        (
            None,
            {"fields": ("wamid", "direction", "type", "status", "contact_link", "phone_number", "timestamp")},
        ),
        (
            "Content",
            {"fields": ("text", "context_wamid", "target_wamid", "reaction", "edited_at", "revoked_at")},
        ),
        (
            "Media",
            {
                "fields": (
                    "media_link",
                    "media_state",
                    "media_unavailable",
                    "media_id",
                    "media_mime_type",
                    "media_size",
                    "media_sha256",
                    "media_filename",
                    "media_key",
                )
            },
        ),
        (
            "Sending",
            {
                "fields": (
                    "created_by",
                    "idempotency_key",
                    "due_at",
                    "attempts",
                    "claimed_at",
                    "claimed_by",
                )
            },
        ),
        ("Delivery", {"fields": ("sent_at", "delivered_at", "read_at", "played_at", "failed_at")}),
        ("Error", {"fields": ("error_code", "error_title", "error_details")}),
        ("As Meta sent it", {"fields": ("payload_pretty", "created_at", "updated_at")}),
    )

    inlines = (SendAttemptInline,)
    actions = ("resend", "abandon")

    def get_queryset(self, request):
        """Only messages of the sender numbers the operator sees, as in the inbox."""
        return super().get_queryset(request).filter(conversations_visible_q(request.user))

    def get_readonly_fields(self, request, obj=None):
        return [field for _, options in self.get_fieldsets(request, obj) for field in options["fields"]]

    def get_fieldsets(self, request, obj=None):
        if contact_data_visible(request.user):
            return self.fieldsets
        hidden = {"contact_link": "contact_ref", "media_link": "contact_data_note", "payload_pretty": None}
        return [
            (
                name,
                {**options, "fields": tuple(hidden.get(f, f) for f in options["fields"] if hidden.get(f, f))},
            )
            for name, options in self.fieldsets
        ]

    def get_list_display(self, request):
        if contact_data_visible(request.user):
            return self.list_display
        return tuple("contact_ref" if name == "contact_link" else name for name in self.list_display)

    def has_send_permission(self, request) -> bool:
        return request.user.has_perm("messaging.add_message")

    @admin.display(description="failure")
    def failure(self, message: Message) -> str:
        if message.status == Message.Status.IN_DOUBT:
            url = reverse("admin:messaging_message_in_doubt", args=[message.pk])
            return format_html('<a href="{}">in doubt: see the evidence, decide</a>', url)
        return failure_text(message)

    @admin.action(description="Resend the selected in-doubt messages", permissions=["send"])
    def resend(self, request, queryset):
        self._in_doubt_apply(request, queryset, message_resend, "Queued {} in-doubt message(s) again.")

    @admin.action(description="Abandon the selected in-doubt messages (do not send)", permissions=["send"])
    def abandon(self, request, queryset):
        self._in_doubt_apply(request, queryset, message_abandon, "Abandoned {} in-doubt message(s).")

    def _in_doubt_apply(self, request: HttpRequest, queryset, service, done: str) -> None:
        chosen = list(queryset.filter(status=Message.Status.IN_DOUBT))
        count = 0
        for message in chosen:
            try:
                service(message=message, actor=request.user)
            except ValidationError as error:
                self.message_user(request, f"{message.wamid}: {' '.join(error.messages)}", messages.ERROR)
            else:
                count += 1
        if count:
            self.message_user(request, done.format(count), messages.SUCCESS)
        elif not chosen:
            self.message_user(request, "None of the selected messages is in doubt.", messages.WARNING)

    def get_search_results(self, request, queryset, search_term):
        """A wamid exactly, a phone number by its digits (the contacts' search), else the text."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("wamid."):
            return queryset.filter(wamid=term), False
        digits = term.translate(PHONE_PUNCTUATION).removeprefix("+")
        if digits.isascii() and digits.isdigit() and contact_data_visible(request.user):
            return queryset.filter(
                Q(contact__in=Contact.objects.filter(contact_search_q(term))) | Q(text__icontains=term)
            ), False
        return queryset.filter(text__icontains=term), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        message_delete(message=obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        messages_delete(queryset=queryset, actor=request.user, source=SOURCE)

    @admin.display(description="contact", ordering="contact__phone")
    def contact_link(self, message: Message) -> str:
        url = reverse("admin:contacts_contact_change", args=[message.contact_id])
        return format_html('<a href="{}">{}</a>', url, message.contact)

    @admin.display(description="contact")
    def contact_ref(self, message: Message) -> str:
        return f"contact {message.contact_id}"

    @admin.display(description="media, payload")
    def contact_data_note(self, message: Message) -> str:
        return CONTACT_DATA_HIDDEN

    @admin.display(description="text")
    def text_short(self, message: Message) -> str:
        return Truncator(message.text).chars(80)

    @admin.display(description="status", ordering="status")
    def status_ticks(self, message: Message) -> str:
        return format_html("{} {}", ticks_html(message), message.status)

    @admin.display(description="")
    def conversation_link(self, message: Message) -> str:
        return format_html(
            '<a href="{}#message-{}">conversation</a>', conversation_url(message.contact_id), message.pk
        )

    @admin.display(description="media")
    def media_link(self, message: Message) -> str:
        url, note = media_link(message=message)  # a field get_fieldsets shows only to who may see it
        if not url:
            return note or "—"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">open {}</a> (link valid for a few minutes)',
            url,
            message.media_filename or message.media_mime_type or "media",
        )

    @admin.display(description="why unavailable")
    def media_unavailable(self, message: Message) -> str:
        return message_media_error(message=message) or "—"

    @admin.display(description="payload")
    def payload_pretty(self, message: Message) -> str:
        return pretty_json(message.payload)

    # -- the conversation page ------------------------------------------------------------------

    def get_urls(self):
        conversation_path = path(
            "conversation/<int:contact_id>/",
            self.admin_site.admin_view(self.conversation_view),
            name="messaging_message_conversation",
        )
        changes_path = path(
            "conversation/<int:contact_id>/changes/",
            self.admin_site.admin_view(self.conversation_changes_view),
            name="messaging_message_conversation_changes",
        )
        typing_path = path(
            "conversation/<int:contact_id>/typing/",
            self.admin_site.admin_view(self.conversation_typing_view),
            name="messaging_message_conversation_typing",
        )
        notes_path = path(
            "conversation/<int:contact_id>/notes/",
            self.admin_site.admin_view(self.conversation_notes_view),
            name="messaging_message_conversation_notes",
        )
        decide_path = path(
            "<int:message_id>/in-doubt/",
            self.admin_site.admin_view(self.in_doubt_view),
            name="messaging_message_in_doubt",
        )
        return [conversation_path, changes_path, typing_path, notes_path, decide_path, *super().get_urls()]

    def in_doubt_view(self, request: HttpRequest, message_id: int) -> HttpResponse:
        """An in-doubt message's evidence (GET), and the operator's decision on it (POST: this page's
        and the conversation's "Resend" / "Abandon" buttons)."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if request.method == "GET":
            if not self.has_view_permission(request):
                raise PermissionDenied
            message = get_object_or_404(
                self.get_queryset(request).select_related("contact", "phone_number"), pk=message_id
            )
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": f"Message {message.pk} to {message.contact}: sent or not?",
                "message": message,
                "evidence": message_doubt_evidence(message=message),
                "can_send": self.has_send_permission(request),
                "conversation_url": f"{conversation_url(message.contact_id)}#message-{message.pk}",
            }
            return TemplateResponse(request, "admin/messaging/message/in_doubt.html", context)
        if not self.has_send_permission(request):
            raise PermissionDenied
        message = get_object_or_404(self.get_queryset(request), pk=message_id)
        services = {"resend": (message_resend, "Queued again."), "abandon": (message_abandon, "Abandoned.")}
        if request.POST.get("decision") not in services:
            return HttpResponse("decision must be resend or abandon", status=400)
        service, done = services[request.POST["decision"]]
        try:
            service(message=message, actor=request.user)
        except ValidationError as error:
            self.message_user(request, " ".join(error.messages), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        if request.POST.get("back") == "evidence":
            return HttpResponseRedirect(request.path)
        return HttpResponseRedirect(f"{conversation_url(message.contact_id)}#message-{message.pk}")

    def _conversations_read(self, request: HttpRequest, contact: Contact) -> None:
        """An operator opening the page has seen the conversation of the number it replies from
        (`?sender=`, as the inbox links), or every conversation of the contact without one."""
        number_id = int_param(request.GET.get("sender"))
        for unread in conversations_unread(contact=contact, user=request.user, phone_number_id=number_id):
            conversation_read(conversation=unread, actor=request.user, source=SOURCE)

    @staticmethod
    def _conversations_visible_or_404(request: HttpRequest, contact_id: int) -> None:
        """404, as for a conversation that does not exist (the API answers the same), when the
        sender number asked for (`?sender=`, the reply form's) is one the operator does not see, or
        when the contact has conversations and the operator sees none of them. A contact nobody has
        talked to yet stays open: an operator may write first from a number they see."""
        for chosen in (int_param(request.GET.get("sender")), int_param(request.POST.get("phone_number"))):
            if chosen is not None and not phone_number_visible(user=request.user, phone_number_id=chosen):
                raise Http404
        if conversations_hidden(contact_id=contact_id, user=request.user):
            raise Http404

    def conversation_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        before = int_param(request.GET.get("before"))
        if before is None and "before" in request.GET:
            raise Http404
        self._conversations_visible_or_404(request, contact.pk)
        reply_errors: list[str] = []
        if request.method == "POST":
            if not self.has_send_permission(request):
                raise PermissionDenied
            sent, reply_errors = reply_send(request, contact)
            if sent is not None:
                self.message_user(request, "Message queued.", messages.SUCCESS)
                return HttpResponseRedirect(f"{conversation_url(contact.pk)}#message-{sent.pk}")
        return self._conversation_page(request, contact, before=before, reply_errors=reply_errors)

    def _conversation_page(
        self,
        request: HttpRequest,
        contact: Contact,
        *,
        before: int | None,
        reply_errors: Sequence[str] = (),
        note_errors: Sequence[str] = (),
    ) -> HttpResponse:
        # The latest messages follow the conversation; older ones stay still, and so does a page
        # answering a note's POST (its address is the note's).
        live = before is None and not note_errors
        if live and request.method == "GET":
            self._conversations_read(request, contact)
        token = conversation_timeline_token(contact_id=contact.pk) if live else ""  # before the page
        page = conversation(
            contact=contact,
            before_id=before,
            limit=self.conversation_page_size,
            user=request.user,
        )
        for entry in page.entries:
            if entry.message is not None and entry.message.media_state == Message.MediaState.STORED:
                entry.media_url, entry.media_note = media_access(message=entry.message, user=request.user)
        context = {"contact": contact, "conversation": page, "live": live, "token": token}
        if live and request.GET.get("fragment") == "timeline":
            context["reply"] = reply_links_context(request, contact)
            return TemplateResponse(request, "admin/messaging/conversation_timeline.html", context)
        if live and request.GET.get("fragment") == "header":  # status, assignee, labels: as they are now
            header = conversation_controls_context(request, contact, reply_sender(request, contact))
            context |= {"header": header, "header_fragment": True}
            return TemplateResponse(request, "admin/messaging/conversation_header.html", context)
        reply = reply_context(request, contact, errors=list(reply_errors))
        header = conversation_controls_context(request, contact, reply["sender"])
        context |= {
            **self.admin_site.each_context(request),
            "header": header,
            "panel": contact_panel_context(request, contact, header["conversation"]),
            "opts": self.opts,
            "title": f"Conversation with {contact}",
            "can_view_contact": contact_data_visible(request.user),
            "can_view_inbox": request.user.has_perm("messaging.view_conversation"),
            "is_nav_sidebar_enabled": False,  # the conversation, its reply box and the contact need the width
            "reply": reply,
            "note": note_context(
                request,
                contact,
                sender=reply["sender"],
                errors=list(note_errors),
                body=request.POST.get("body", "") if note_errors else "",
            ),
            "changes_url": reverse("admin:messaging_message_conversation_changes", args=[contact.pk]),
            "poll_interval_ms": POLL_INTERVAL_MS,
            "typing_url": reverse("admin:messaging_message_conversation_typing", args=[contact.pk]),
            "typing_interval_ms": int(TYPING_INTERVAL.total_seconds() * 1000),
        }
        return TemplateResponse(request, "admin/messaging/conversation.html", context)

    def conversation_notes_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        """The "Add private note" box: back to the page at the note, or the page with the refusal."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_view_permission(request) and request.user.has_perm(NOTE_PERMISSION)):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        self._conversations_visible_or_404(request, contact.pk)
        note, errors = note_add(request, contact)
        if note is None:
            return self._conversation_page(request, contact, before=None, note_errors=errors)
        self.message_user(request, "Private note added.", messages.SUCCESS)
        sender = note.conversation.phone_number_id
        query = f"?sender={sender}" if sender else ""
        return HttpResponseRedirect(f"{conversation_url(contact.pk)}{query}#note-{note.pk}")

    def conversation_changes_view(self, request: HttpRequest, contact_id: int) -> JsonResponse:
        """{"changed": bool, "token": str}: whether the contact's conversation moved since `since`."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        self._conversations_visible_or_404(request, contact_id)
        token = conversation_timeline_token(contact_id=contact_id)
        response = JsonResponse({"changed": token != request.GET.get("since", ""), "token": token})
        response["Cache-Control"] = "no-store"
        return response

    def conversation_typing_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        """POST ?sender=<number>: the operator is typing a reply from that number, so the customer is
        shown a typing indicator (`conversation_typing_send`: at most once per 25 s). 204 whether it
        was shown or not; the page needs no answer."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_send_permission(request):
            raise PermissionDenied
        sender = int_param(request.GET.get("sender"))
        if sender is None:
            return JsonResponse({"sender": "The id of the sender number the reply is typed for."}, status=400)
        self._conversations_visible_or_404(request, contact_id)
        found = conversation_of(contact_id=contact_id, phone_number_id=sender, user=request.user)
        if found is not None:
            conversation_typing_send(conversation=found)
        return HttpResponse(status=204)

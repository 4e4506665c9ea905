"""The operators' view of the archive: batches (read-only) with their counts, sizes and a presigned
download link; run-now buttons for the two archival runs; restore of the selected batches, or of a
conversation's archived messages from its page. Runs and restores go to the `archival` queue."""

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from archival.media import media_archivable
from archival.messages import messages_archivable_count
from archival.models import ArchiveBatch
from archival.selectors import RestorePlan, archive_batches_restore_plan, conversation_archived
from archival.tasks import archive_batches_restore_task, media_archive_task, messages_archive_task
from contacts.access import contact_data_visible
from contacts.models import Contact
from core.console import ReadOnlyAdmin
from core.storage import archive_storage, presigned_url
from messaging.admin.common import conversation_url

RUNS = {"messages": messages_archive_task, "media": media_archive_task}
NOTHING_SELECTED = "Nothing to restore: none of the selected batches holds archived messages."
NOTHING_IN_CONVERSATION = "Nothing to restore: this conversation has no archived messages."
AFTER_DAYS = {"messages": "ARCHIVE_MESSAGES_AFTER_DAYS", "media": "ARCHIVE_MEDIA_AFTER_DAYS"}


def archivable_count(kind: str) -> tuple[int, int]:
    """How many messages (or stored media) a run of `kind` would archive now, and its age in days."""
    days = getattr(settings, AFTER_DAYS[kind])
    if kind == "messages":
        return messages_archivable_count(older_than_days=days), days
    return media_archivable(older_than_days=days).count(), days


def archive_batch_download_url(batch: ArchiveBatch) -> str | None:
    """A short-lived link to a message batch's object, once it is complete."""
    if batch.kind != ArchiveBatch.Kind.MESSAGES or batch.state in (
        ArchiveBatch.State.OPEN,
        ArchiveBatch.State.EMPTY,
    ):
        return None
    return presigned_url(
        archive_storage(),
        batch.key,
        filename=batch.key.rsplit("/", 1)[-1],
        content_type="application/gzip",
        exact_type=True,
    )


@admin.register(ArchiveBatch)
class ArchiveBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "kind", "day", "state", "record_count", "size", "deleted_count", "restored_at", "started_at",
        "download",
    )  # fmt: skip
    list_filter = ("kind", "state")
    date_hierarchy = "day"
    fields = (
        "kind", "day", "state", "key", "download", "record_count", "size", "sha256", "etag", "schema_version",
        "max_id", "snapshot_at", "deleted_count", "started_at", "uploaded_at", "verified_at", "deleted_at",
        "upload_s", "delete_s", "restored_at", "restored_count", "attempts", "error",
    )  # fmt: skip
    readonly_fields = fields
    actions = ("restore",)
    change_list_template = "admin/archival/archivebatch/change_list.html"

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm("archival.change_archivebatch")

    has_restore_permission = has_run_permission

    @admin.display(description="size", ordering="bytes")
    def size(self, batch: ArchiveBatch) -> str:
        return filesizeformat(batch.bytes)

    @admin.display(description="download")
    def download(self, batch: ArchiveBatch) -> str:
        url = archive_batch_download_url(batch)
        if not url:
            return "—"
        return format_html('<a href="{}">{}</a> (link valid for a few minutes)', url, "jsonl.gz")

    @admin.action(description="Restore the selected batches' messages", permissions=["restore"])
    def restore(self, request, queryset):
        """Asks first, showing what the batches would put back; the confirmation queues them."""
        plan = archive_batches_restore_plan(batch_ids=queryset.values_list("id", flat=True))
        if request.POST.get("post") != "yes":
            return self._restore_confirm(
                request,
                plan,
                back=reverse("admin:archival_archivebatch_changelist"),
                selected=list(queryset.values_list("id", flat=True)),
            )
        self._restore_queue(request, plan, nothing=NOTHING_SELECTED)
        return None

    def _restore_confirm(
        self,
        request: HttpRequest,
        plan: RestorePlan,
        *,
        back: str,
        selected: list[int] | None = None,
        **extra,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Restore archived messages?",
            "plan": plan,
            "contacts_shown": contact_data_visible(request.user),
            "contacts_more": plan.conversations - len(plan.contacts),
            "selected": selected,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "back": back,
            "nothing": NOTHING_SELECTED if selected is not None else NOTHING_IN_CONVERSATION,
            **extra,
        }
        return TemplateResponse(request, "admin/archival/archivebatch/restore_confirm.html", context)

    def _restore_queue(self, request: HttpRequest, plan: RestorePlan, *, nothing: str) -> None:
        if not plan.batch_ids:
            self.message_user(request, nothing, messages.INFO)
            return
        self._enqueue(
            request,
            archive_batches_restore_task,
            plan.batch_ids,
            done=f"Restore of {plan.messages} message(s) of {plan.conversations} conversation(s) from "
            f"{len(plan.batch_ids)} batch(es) queued; each batch shows its restored count when it is done.",
        )

    def _enqueue(self, request: HttpRequest, task, *args, done: str) -> None:
        try:
            task.delay(*args)
        except Exception as error:
            self.message_user(
                request, f"Could not queue it ({type(error).__name__}); try again.", messages.ERROR
            )
        else:
            self.message_user(request, done, messages.SUCCESS)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_run": self.has_run_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        return [
            path(
                "run/<str:kind>/", self.admin_site.admin_view(self.run_view), name="archival_archivebatch_run"
            ),
            path(
                "restore-conversation/<int:contact_id>/",
                self.admin_site.admin_view(self.restore_conversation_view),
                name="archival_archivebatch_restore_conversation",
            ),
            *super().get_urls(),
        ]

    def run_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        """The change list's "Archive messages now" / "Archive media now" buttons: a GET shows what
        the run would archive and asks; the POST queues it, unless there is nothing to archive."""
        if not self.has_run_permission(request):
            raise PermissionDenied
        if kind not in RUNS:
            return HttpResponse(f"kind must be one of {', '.join(RUNS)}", status=400)
        count, days = archivable_count(kind)
        what = "message" if kind == "messages" else "stored medium"
        nothing = f"Nothing to archive: no {what} older than {days} days."
        if request.method == "GET":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"Archive {kind} now?",
                "kind": kind,
                "count": count,
                "days": days,
                "what": what,
                "nothing": nothing,
            }
            return TemplateResponse(request, "admin/archival/archivebatch/run_confirm.html", context)
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        if not count:
            self.message_user(request, nothing, messages.INFO)
        else:
            self._enqueue(
                request,
                RUNS[kind],
                done=f"Archival of {count} {kind if kind == 'messages' else 'media'} older than {days} days "
                "queued; its batches appear here.",
            )
        return HttpResponseRedirect(reverse("admin:archival_archivebatch_changelist"))

    def restore_conversation_view(self, request: HttpRequest, contact_id: int) -> HttpResponse:
        """A conversation's "Restore archived messages" button: a GET shows what the batches holding
        its archived messages would put back (whole days, so other conversations' messages too) and
        asks; the POST queues them."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not self.has_restore_permission(request):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=contact_id)
        archived = conversation_archived(contact=contact)
        plan = archive_batches_restore_plan(batch_ids=archived.batch_ids if archived else [])
        if request.method == "GET":
            return self._restore_confirm(
                request, plan, back=conversation_url(contact.pk), contact=contact, archived=archived
            )
        self._restore_queue(request, plan, nothing=NOTHING_IN_CONVERSATION)
        return HttpResponseRedirect(conversation_url(contact.pk))

"""The audit log and operator alerts, read-only: services write them; and the dead letters of the
queues, listed, replayed and deleted (core/deadletters.py)."""

import logging
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import Truncator

from core.alerts import operator_alert_acknowledge
from core.console import ReadOnlyAdmin, set_or_unset_filter
from core.deadletters import dead_letters_delete, dead_letters_replay
from core.models import AuditLog, DeadLetterQueue, OperatorAlert
from core.queues import QUEUES, DeadLetter, QueueError, dlq_list, sqs_queue_name

logger = logging.getLogger(__name__)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """Read-only: the log is written by the services and nowhere else."""

    list_display = ("created_at", "action", "target_repr", "actor", "source")
    list_filter = ("source", "action", ("created_at", admin.DateFieldListFilter))
    search_fields = ("target_repr",)
    list_select_related = ("actor", "target_type")
    show_full_result_count = False


AlertOpenFilter = set_or_unset_filter(
    title="state",
    parameter_name="open",
    field="acknowledged_at",
    yes="Open",
    no="Acknowledged",
    yes_when_set=False,
)


@admin.register(OperatorAlert)
class OperatorAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "level", "text", "key", "acknowledged_at", "acknowledged_by")
    list_filter = (AlertOpenFilter, "level")
    search_fields = ("=key", "text")
    fields = ("key", "level", "text", "created_at", "acknowledged_at", "acknowledged_by")
    readonly_fields = fields
    actions = ("acknowledge",)

    def has_acknowledge_permission(self, request) -> bool:
        return request.user.has_perm("core.change_operatoralert")

    @admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
    def acknowledge(self, request, queryset):
        alerts = list(queryset.filter(acknowledged_at__isnull=True))
        for alert in alerts:
            operator_alert_acknowledge(alert=alert, actor=request.user)
        self.message_user(request, f"Acknowledged {len(alerts)} alert(s).", messages.SUCCESS)

    def get_urls(self):
        acknowledge_path = path(
            "<int:alert_id>/acknowledge/",
            self.admin_site.admin_view(self.acknowledge_view),
            name="core_operatoralert_acknowledge",
        )
        return [acknowledge_path, *super().get_urls()]

    def acknowledge_view(self, request: HttpRequest, alert_id: int) -> HttpResponse:
        """The banner's "Acknowledge" button; back to the page it was on."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        alert = get_object_or_404(OperatorAlert, pk=alert_id)
        operator_alert_acknowledge(alert=alert, actor=request.user)
        next_url = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = reverse("admin:index")
        return HttpResponseRedirect(next_url)


@dataclass
class DeadLetterRow:
    letter: DeadLetter
    args: str  # truncated for the table; the whole in the cell's title


@dataclass
class DeadLetterQueueView:
    name: str
    dlq: str
    letters: list[DeadLetterRow] = field(default_factory=list)
    error: str = ""
    more: bool = False  # the listing stopped at its limit


@admin.register(DeadLetterQueue)
class DeadLetterQueueAdmin(admin.ModelAdmin):
    """Core > Dead letters: each queue's DLQ as SQS holds it (no table), its messages replayed to
    their source queue or deleted, selected or all, by those with `core.manage_dead_letters`."""

    LIST_LIMIT = 100  # per DLQ
    ARGS_WIDTH = 120

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("core.manage_dead_letters")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "",
                self.admin_site.admin_view(self.dead_letters_view),
                name="core_deadletterqueue_changelist",
            )
        ]

    def dead_letters_view(self, request: HttpRequest) -> HttpResponse:
        """Every DLQ's messages (GET); replay or delete the chosen ones, or a queue's all (POST)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._act(request)
            return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Dead letters",
            "queues": [self._queue_view(name) for name in QUEUES],
            "limit": self.LIST_LIMIT,
        }
        return TemplateResponse(request, "admin/core/dead_letters.html", context)

    def _queue_view(self, name: str) -> DeadLetterQueueView:
        view = DeadLetterQueueView(name=name, dlq=sqs_queue_name(QUEUES[name].dlq_name))
        try:
            letters = dlq_list(queue=name, limit=self.LIST_LIMIT)
        except QueueError as error:
            view.error = str(error)
            return view
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not read %s: %s", view.dlq, error)
            view.error = f"SQS did not answer: {type(error).__name__}"
            return view
        view.letters = [
            DeadLetterRow(letter, Truncator(letter.argsrepr).chars(self.ARGS_WIDTH)) for letter in letters
        ]
        view.more = len(letters) >= self.LIST_LIMIT
        return view

    def _act(self, request: HttpRequest) -> None:
        action = request.POST.get("action", "")
        chosen: dict[str, set[str]] = {}
        for value in request.POST.getlist("letter"):
            queue, _, message_id = value.partition(":")
            if queue in QUEUES and message_id:
                chosen.setdefault(queue, set()).add(message_id)
        source = AuditLog.Source.ADMIN
        try:
            if action == "replay_all":
                queue = request.POST.get("queue", "")
                if queue not in QUEUES:
                    self.message_user(request, f"No queue {queue!r}.", messages.ERROR)
                    return
                count = dead_letters_replay(queue=queue, message_ids=None, actor=request.user, source=source)
                self.message_user(request, f"Replayed {count} dead letter(s) to {queue}.", messages.SUCCESS)
            elif action in ("replay", "delete"):
                if not chosen:
                    self.message_user(request, "No dead letter was selected.", messages.WARNING)
                    return
                service = dead_letters_replay if action == "replay" else dead_letters_delete
                count = sum(
                    service(queue=queue, message_ids=ids, actor=request.user, source=source)
                    for queue, ids in chosen.items()
                )
                wanted = sum(len(ids) for ids in chosen.values())
                done = "Replayed" if action == "replay" else "Deleted"
                gone = f" ({wanted - count} were no longer there)" if count < wanted else ""
                self.message_user(request, f"{done} {count} dead letter(s){gone}.", messages.SUCCESS)
            else:
                self.message_user(request, "Choose replay or delete.", messages.ERROR)
        except (QueueError, BotoCoreError, ClientError) as error:
            self.message_user(request, f"SQS refused: {error}", messages.ERROR)

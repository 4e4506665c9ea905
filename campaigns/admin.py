"""The operators' console for campaigns: build one (with its audience's count), start, pause,
resume and cancel it after a confirmation, follow its progress, download its report (JSON, CSV)
and see its recipients in their messages' real state. A campaign that is not a draft is read-only:
its controls change it; only drafts and finished campaigns can be deleted. Every write calls
campaigns.services."""

from datetime import UTC

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as delete_selected_confirm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from campaigns.admin_form import CampaignForm, CampaignFormAdminMixin, start_problems_html
from campaigns.models import Campaign, Recipient
from campaigns.reports import (
    REPORT_REFRESH_EVERY_S,
    REPORT_REFRESH_WITHIN_S,
    campaign_report_csv,
    campaign_report_url,
    csv_report_name,
)
from campaigns.selectors import (
    RECIPIENT_STATE,
    campaign_failures,
    campaign_progress,
    campaign_report_changes,
    campaign_status_text,
)
from campaigns.services import (
    DELETABLE,
    EDITABLE,
    campaign_audience_count,
    campaign_audience_csv_set,
    campaign_audience_preview,
    campaign_cancel,
    campaign_create,
    campaign_delete,
    campaign_pause,
    campaign_resume,
    campaign_start,
    campaign_start_problems,
    campaign_update,
)
from contacts.access import CONTACT_DATA_HIDDEN, contact_data_visible
from core.console import ReadOnlyAdmin, admin_object_take
from core.models import AuditLog
from core.params import int_param
from messaging.models import Message
from messaging.templates import template_slot_values, template_slots

SOURCE = AuditLog.Source.ADMIN
_C = Campaign.Status

# action: (service, the statuses it applies to, the button, what the confirmation says)
ACTIONS = {
    "start": (
        campaign_start,
        (_C.DRAFT, _C.SCHEDULED),
        "Start",
        "Its audience is taken now and sending begins (or waits for its start time, when one is set).",
    ),
    "pause": (
        campaign_pause,
        (_C.RUNNING, _C.SCHEDULED),
        "Pause",
        "No new message leaves once you confirm; messages already under way finish.",
    ),
    "resume": (
        campaign_resume,
        (_C.PAUSED,),
        "Resume",
        "Sending continues with the recipients not sent yet.",
    ),
    "cancel": (
        campaign_cancel,
        (_C.DRAFT, _C.SCHEDULED, _C.RUNNING, _C.PAUSED),
        "Cancel",
        "The recipients not sent yet are cancelled for good and the report is written; there is no undo.",
    ),
}


@admin.register(Campaign)
class CampaignAdmin(CampaignFormAdminMixin, admin.ModelAdmin):
    form = CampaignForm
    list_display = ("name", "channel", "status_shown", "progress_bar", "rate", "scheduled_at", "created_at")
    list_filter = ("status", "channel")
    search_fields = ("name",)
    autocomplete_fields = ("audience_contacts",)
    actions = ("delete_selected",)  # this class's own, in place of the site's
    readonly_fields = (
        "controls",
        "status_shown",
        "status_reason",
        "audience_preview",
        "progress_panel",
        "report_link",
        "total_recipients",
        "started_at",
        "paused_at",
        "finished_at",
        "created_by",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("controls", "name", "channel", "status_shown", "status_reason")}),
        (
            "Content",
            {
                "fields": ("phone_number", "template", "template_parameters", "subject", "body"),
                "description": "WhatsApp: a sender, an approved template and its parameters. Email: a "
                "subject and a body (an unsubscribe link is added). SMS: the body. Placeholders such as "
                "{{name|there}} are filled per contact, the text after | when the contact has no value.",
            },
        ),
        (
            "Audience",
            {
                "fields": (
                    "audience_tags",
                    "audience_filters",
                    "audience_contacts",
                    "audience_csv",
                    "audience_preview",
                ),
                "description": "Contacts with any of the tags or in the list (everyone when both are empty), "
                "narrowed by the filters. Contacts opted out of the channel or without its address are "
                "left out.",
            },
        ),
        ("Pacing", {"fields": ("scheduled_at", "rate_limit_per_s", "failure_pause_pct")}),
        (
            "Progress",
            {"fields": ("progress_panel", "report_link", "total_recipients", "started_at", "paused_at")},
        ),
        ("Activity", {"fields": ("finished_at", "created_by", "created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request, obj=None):
        fields = (*self.readonly_fields, "contact_data_note", "report_ids", "parameters_shown")
        if obj is not None and obj.status != _C.DRAFT:
            return (*fields, *EDITABLE, "audience_contacts")
        return fields

    def get_fieldsets(self, request, obj=None):
        """Without a draft, no CSV; for a user who may not read contact data, no audience count
        or sample, CSV list (its matches) or report (contacts.access): a note in their place."""
        dropped = set() if obj is None or obj.status == _C.DRAFT else {"audience_csv"}
        replaced = {}
        if obj is not None and obj.status != _C.DRAFT:
            replaced["template_parameters"] = "parameters_shown"
        if not contact_data_visible(request.user):
            dropped |= {"audience_csv"}
            replaced |= {"audience_preview": "contact_data_note", "report_link": "report_ids"}
        return [
            (
                name,
                {
                    **options,
                    "fields": tuple(replaced.get(f, f) for f in options["fields"] if f not in dropped),
                },
            )
            for name, options in super().get_fieldsets(request, obj)
        ]

    def has_run_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.run_campaign")

    def has_change_permission(self, request, obj=None):
        """Only a draft is edited: past it, the page is read-only and its controls change it."""
        return super().has_change_permission(request, obj) and (obj is None or obj.status == _C.DRAFT)

    def has_delete_permission(self, request, obj=None):
        """Drafts and finished campaigns (history, with the delete permission); never one under way."""
        return super().has_delete_permission(request, obj) and (obj is None or obj.status in DELETABLE)

    @admin.action(permissions=["delete"], description="Delete selected %(verbose_name_plural)s")
    def delete_selected(self, request, queryset):
        """Django's confirmation and deletion, refused whole while any of them is under way."""
        under_way = list(queryset.exclude(status__in=DELETABLE).order_by("name").only("name", "status"))
        if under_way:
            named = ", ".join(f"{campaign} ({campaign.status})" for campaign in under_way[:10])
            more = f" and {len(under_way) - 10} more" if len(under_way) > 10 else ""
            self.message_user(
                request,
                f"Nothing was deleted: {named}{more} {'is' if len(under_way) == 1 else 'are'} under way. "
                "Cancel a campaign before deleting it; drafts and finished campaigns can be deleted.",
                messages.ERROR,
            )
            return None
        return delete_selected_confirm(self, request, queryset)

    def get_deleted_objects(self, objs, request):
        """Recipients counted, not listed (a campaign's go with it, however many: campaign_delete);
        their read-only page asks no delete permission of its own."""
        campaigns = list(objs)
        counts = dict(
            Recipient.objects.filter(campaign__in=campaigns)
            .values_list("campaign")
            .annotate(count=Count("id"))
            .values_list("campaign", "count")
        )
        listed = []
        for campaign in campaigns:
            url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
            listed += [
                format_html('Campaign: <a href="{}">{}</a>', url, campaign),
                [f"{counts.get(campaign.pk, 0):,} recipients"],
            ]
        allowed = all(self.has_delete_permission(request, campaign) for campaign in campaigns)
        refused = set() if allowed else {"campaign"}
        model_count = {"campaigns": len(campaigns), "recipients": sum(counts.values())}
        return listed, model_count, refused, []

    # -- display ----------------------------------------------------------------------------------

    @admin.display(description="progress")
    def progress_bar(self, campaign: Campaign) -> str:
        if campaign.status in (_C.DRAFT, _C.SCHEDULED):
            return "—"
        progress = campaign_progress(campaign=campaign)
        return format_html(
            '<progress max="100" value="{}" title="{} %"></progress> {} / {}',
            progress["done_pct"],
            progress["done_pct"],
            progress["sent"] + progress["failed"],
            progress["total"],
        )

    @admin.display(description="status", ordering="status")
    def status_shown(self, campaign: Campaign) -> str:
        if campaign.pk is None:
            return campaign.status
        return status_html(campaign, campaign_progress(campaign=campaign))

    @admin.display(description="rate")
    def rate(self, campaign: Campaign) -> str:
        if campaign.status != _C.RUNNING:
            return "—"
        return f"{campaign_progress(campaign=campaign)['rate_per_s']}/s"

    @admin.display(description="actions")
    def controls(self, campaign: Campaign) -> str:
        if campaign.pk is None:
            return "Save the campaign, then start it from here."
        buttons = [
            (reverse("admin:campaigns_campaign_action", args=[campaign.pk, name]), label)
            for name, (_, statuses, label, _) in ACTIONS.items()
            if campaign.status in statuses
        ]
        problems = (
            campaign_start_problems(campaign=campaign) if campaign.status in ACTIONS["start"][1] else []
        )
        if problems:  # the Start button, disabled with the reasons
            buttons = [(url, label) for url, label in buttons if label != ACTIONS["start"][2]]
        if not buttons and not problems:
            return f"This campaign is {campaign.status}."
        links = format_html_join(" ", '<a class="button" href="{}">{}</a>', buttons)
        return format_html("{}{}", start_problems_html(problems), links) if problems else links

    @admin.display(description="parameters")
    def parameters_shown(self, campaign: Campaign) -> str:
        """A campaign past its draft shows its parameters as the form labelled them, not as JSON."""
        if campaign.template is None:
            return "-"
        values = template_slot_values(template=campaign.template, parameters=campaign.template_parameters)
        rows = [
            (slot.label.capitalize(), values.get(slot.key, ""))
            for slot in template_slots(template=campaign.template)
        ]
        return format_html_join("", "<div><strong>{}</strong>: {}</div>", rows) or "-"

    @admin.display(description="audience")
    def audience_preview(self, campaign: Campaign) -> str:
        if campaign.pk is None:
            return "Save the campaign to see who it reaches."
        if campaign.status != _C.DRAFT:
            return f"{campaign.total_recipients:,} recipients, taken at the start."
        count = campaign_audience_count(campaign=campaign)
        sample = campaign_audience_preview(campaign=campaign, limit=10)
        listed = format_html_join(", ", "{}", ((str(contact),) for contact in sample))
        more = f" and {count - len(sample):,} more" if count > len(sample) else ""
        return format_html("<strong>{} contacts</strong> now: {}{}", f"{count:,}", listed, more)

    @admin.display(description="audience, report")
    def contact_data_note(self, campaign: Campaign) -> str:
        return CONTACT_DATA_HIDDEN

    @admin.display(description="progress")
    def progress_panel(self, campaign: Campaign) -> str:
        if campaign.pk is None or campaign.status in (_C.DRAFT, _C.SCHEDULED):
            return "Not started."
        url = reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
        return format_html(
            '<div id="campaign-progress" data-url="{}">{}</div>'
            "<script>(function () {{"
            'var box = document.getElementById("campaign-progress");'
            "setInterval(function () {{ fetch(box.dataset.url, {{credentials: 'same-origin'}})"
            ".then(function (r) {{ return r.ok ? r.text() : null; }})"
            ".then(function (html) {{ if (html !== null) box.innerHTML = html; }}); }}, 2000);"
            "}})();</script>",
            url,
            progress_html(campaign),
        )

    @admin.display(description="report")
    def report_link(self, campaign: Campaign) -> str:
        return report_html(campaign, contact_data=True)

    @admin.display(description="report")
    def report_ids(self, campaign: Campaign) -> str:
        return report_html(campaign, contact_data=False)

    # -- saving -----------------------------------------------------------------------------------

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in EDITABLE if name in form.cleaned_data}
        if change:
            saved = campaign_update(
                campaign=Campaign.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            saved = campaign_create(actor=request.user, source=SOURCE, **fields)
        admin_object_take(obj, saved)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        upload = form.cleaned_data.get("audience_csv")
        if upload and contact_data_visible(request.user):  # its matches are contact data
            counts = campaign_audience_csv_set(
                campaign=form.instance, file=upload.file, actor=request.user, source=SOURCE
            )
            self.message_user(
                request,
                f"The CSV's {counts['lines']:,} lines matched {counts['matched']:,} contacts "
                f"({counts['unmatched']:,} unmatched).",
                messages.SUCCESS if not counts["unmatched"] else messages.WARNING,
            )

    def delete_model(self, request, obj):
        campaign_delete(campaign=obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        for campaign in queryset:
            try:
                campaign_delete(campaign=campaign, actor=request.user, source=SOURCE)
            except ValidationError as error:  # started since the confirmation
                self.message_user(request, f"{campaign}: {' '.join(error.messages)}", messages.ERROR)

    # -- views ------------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:campaign_id>/action/<str:action>/",
                view(self.action_view),
                name="campaigns_campaign_action",
            ),
            path("<int:campaign_id>/progress/", view(self.progress_view), name="campaigns_campaign_progress"),
            path("<int:campaign_id>/report/", view(self.report_view), name="campaigns_campaign_report"),
            path(
                "<int:campaign_id>/report.csv",
                view(self.report_csv_view),
                name="campaigns_campaign_report_csv",
            ),
            *self.form_urls(),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, campaign_id: int, action: str) -> HttpResponse:
        """A confirmation page (GET), then the service (POST)."""
        if action not in ACTIONS:
            return HttpResponse("unknown action", status=404)
        if not self.has_run_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(
            Campaign.objects.select_related("phone_number", "template"), pk=campaign_id
        )
        service, _, label, warning = ACTIONS[action]
        change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
        if request.method == "POST":
            try:
                campaign = service(campaign=campaign, actor=request.user, source=SOURCE)
            except ValidationError as error:
                self.message_user(request, " ".join(error.messages), messages.ERROR)
            else:
                self.message_user(request, f"{campaign}: {campaign.status}.", messages.SUCCESS)
            return HttpResponseRedirect(change_url)
        audience = (
            campaign_audience_count(campaign=campaign)
            if action == "start" and contact_data_visible(request.user)
            else None
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{label} {campaign}?",
            "campaign": campaign,
            "label": label,
            "warning": warning,
            "audience": audience,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/confirm.html", context)

    def progress_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponse(progress_html(get_object_or_404(Campaign, pk=campaign_id)))

    def report_view(self, request: HttpRequest, campaign_id: int) -> HttpResponse:
        """To the report through a short-lived presigned link: every recipient's address, so
        contact data (contacts.access)."""
        if not (self.has_view_permission(request) and contact_data_visible(request.user)):
            raise PermissionDenied
        url = campaign_report_url(campaign=get_object_or_404(Campaign, pk=campaign_id))
        if url is None:
            return HttpResponse("The report is not written yet.", status=404)
        return HttpResponseRedirect(url)

    def report_csv_view(self, request: HttpRequest, campaign_id: int) -> StreamingHttpResponse:
        """The report's rows as they are now, streamed; names, phones, emails and addresses only
        for those who may read contact data (contacts.access), ids otherwise."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        rows = campaign_report_csv(campaign=campaign, contact_data=contact_data_visible(request.user))
        response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
        name = csv_report_name(campaign, as_of=timezone.now())
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def recipients_url(campaign: Campaign) -> str:
    return f"{reverse('admin:campaigns_recipient_changelist')}?campaign={campaign.pk}"


def report_html(campaign: Campaign, *, contact_data: bool) -> str:
    """The report's downloads (the JSON holds addresses: contact data; the CSV, read now, holds
    them only for who may read them) and the moment the JSON describes, with what changed since."""
    if campaign.pk is None or campaign.started_at is None:
        return "Written when the campaign completes or is cancelled."
    links = [(reverse("admin:campaigns_campaign_report_csv", args=[campaign.pk]), "CSV (as of now)")]
    if contact_data:
        if campaign.report_key:
            links.insert(0, (reverse("admin:campaigns_campaign_report", args=[campaign.pk]), "JSON"))
        links.append((recipients_url(campaign), "recipients"))
    downloads = format_html_join(" · ", '<a href="{}">{}</a>', links)
    if not campaign.report_written_at:
        return format_html("{}<br>{}", downloads, "The JSON report is written when the campaign ends.")
    written = campaign.report_written_at
    moment = format_html(
        '<br>Report as of <time datetime="{}">{}</time>',
        written.isoformat(),
        f"{written.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
    )
    changes = campaign_report_changes(campaign=campaign)
    if not changes:
        return format_html("{}{}", downloads, moment)
    now = timezone.now()
    minutes = int((now - written).total_seconds() // 60)
    finished = campaign.finished_at
    if finished is not None and (now - finished).total_seconds() < REPORT_REFRESH_WITHIN_S:
        when = f"written again within {REPORT_REFRESH_EVERY_S // 60} minutes"
    else:
        when = f"not written again more than {REPORT_REFRESH_WITHIN_S // 86400} days after the end"
    return format_html(
        '{}{}<br><span class="campaign-report-stale">Report updated {} min ago; statuses received since: '
        "{} ({})</span>",
        downloads,
        moment,
        minutes,
        f"{changes:,}",
        when,
    )


def in_doubt_url(campaign: Campaign) -> str:
    """Where an operator decides on a campaign's recipients in doubt: its messages in doubt
    (WhatsApp), else its recipients in doubt (email, SMS)."""
    if campaign.channel == Campaign.Channel.WHATSAPP:
        return f"{reverse('admin:messaging_message_changelist')}?in_doubt=yes&campaign={campaign.pk}"
    return f"{reverse('admin:campaigns_recipient_changelist')}?state=in_doubt&campaign={campaign.pk}"


def status_html(campaign: Campaign, progress: dict) -> str:
    """The status as operators read it ("completed with 3 in doubt"), linked to those in doubt."""
    text = campaign_status_text(campaign=campaign, in_doubt=progress["in_doubt"])
    if not progress["in_doubt"]:
        return text
    return format_html('<a href="{}" class="campaign-in-doubt">{}</a>', in_doubt_url(campaign), text)


def progress_html(campaign: Campaign) -> str:
    campaign.refresh_from_db(fields=["status", "status_reason"])
    progress = campaign_progress(campaign=campaign)
    counts = format_html_join(
        " · ",
        "{} <strong>{}</strong>",
        (
            (name.replace("_", " "), f"{progress[name]:,}")
            for name in (
                "total",
                "pending",
                "queued",
                "sent",
                "delivered",
                "read",
                "failed",
                "cancelled",
                "in_doubt",
                "abandoned",
            )
            if name in ("total", "sent") or progress[name]
        ),
    )
    failures = campaign_failures(campaign=campaign)
    table = ""
    if failures:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((f["code"], f["title"], f["count"]) for f in failures),
        )
        table = format_html(
            '<table style="margin-top:.5em"><thead><tr><th>error</th><th>title</th><th>recipients</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )
    reason = (
        format_html('<p class="errornote">{}</p>', campaign.status_reason) if campaign.status_reason else ""
    )
    return format_html(
        '{}<progress max="100" value="{}" style="width:24em"></progress> {} % · {}<br>{}<br>now {}/s{}',
        reason,
        progress["done_pct"],
        progress["done_pct"],
        status_html(campaign, progress),
        counts,
        progress["rate_per_s"],
        table,
    )


class CampaignFilter(admin.SimpleListFilter):
    """A list narrowed to one campaign's rows (`?campaign=<id>`), as a campaign's links ask; shown
    only while it applies (listing every campaign would not scale)."""

    title = "campaign"
    parameter_name = "campaign"
    lookup = "campaign_id"

    def lookups(self, request, model_admin):
        value = int_param(request.GET.get(self.parameter_name))
        if value is None:
            return []
        campaign = Campaign.objects.filter(pk=value).only("name").first()
        return [(str(value), campaign.name if campaign else f"campaign {value}")]

    def queryset(self, request, queryset):
        if (value := int_param(self.value())) is not None:
            return queryset.filter(**{self.lookup: value})
        return queryset


class MessageCampaignFilter(CampaignFilter):
    lookup = "campaign_recipient__campaign_id"


# A recipient's real state (selectors.STATE_SQL): its message's status (WhatsApp), else its own.
RECIPIENT_STATES = (
    "pending",
    "queued",
    "sending",
    "sent",
    "delivered",
    "read",
    "played",
    "failed",
    "in_doubt",
    "abandoned",
    "cancelled",
    "skipped",
)


class RecipientStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(state, state.replace("_", " ")) for state in RECIPIENT_STATES]

    def queryset(self, request, queryset):
        if self.value() in RECIPIENT_STATES:
            return queryset.filter(state=self.value())
        return queryset


@admin.register(Recipient)
class RecipientAdmin(ReadOnlyAdmin):
    """A campaign's recipients in their messages' real state (read, delivered, failed with Meta's
    error), one query a page: the message and campaign joined, the state computed in SQL."""

    list_display = ("address", "campaign", "state_shown", "error", "sent", "delivered", "read", "updated_at")
    list_filter = (CampaignFilter, RecipientStateFilter)
    search_fields = ("=address", "=campaign__id")
    list_select_related = ("campaign", "message")
    show_full_result_count = False
    readonly_fields = ["state_shown", "error", *(field.name for field in Recipient._meta.fields)]

    def has_view_permission(self, request, obj=None):
        """Recipients are their addresses: contact data (contacts.access)."""
        return super().has_view_permission(request, obj) and contact_data_visible(request.user)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(state=RECIPIENT_STATE)

    @admin.display(description="state", ordering="state")
    def state_shown(self, recipient: Recipient) -> str:
        return getattr(recipient, "state", None) or (
            recipient.message.status if recipient.message else recipient.status
        )

    @admin.display(description="error")
    def error(self, recipient: Recipient) -> str:
        message = recipient.message
        if message is not None and (message.error_code is not None or message.error_title):
            return " ".join(str(part) for part in (message.error_code, message.error_title) if part)
        return " ".join(part for part in (recipient.error_code, recipient.error_title) if part)

    @admin.display(description="sent")
    def sent(self, recipient: Recipient):
        return (recipient.message.sent_at if recipient.message else None) or recipient.sent_at

    @admin.display(description="delivered")
    def delivered(self, recipient: Recipient):
        return recipient.message.delivered_at if recipient.message else None

    @admin.display(description="read")
    def read(self, recipient: Recipient):
        return recipient.message.read_at if recipient.message else None


# Messaging's message list knows nothing of campaigns: campaigns plugs its filter in.
_message_admin = admin.site.get_model_admin(Message)
_message_admin.list_filter = (*_message_admin.list_filter, MessageCampaignFilter)

"""The operators' console for campaigns: build one (with its audience's count), start, pause,
resume and cancel it after a confirmation, follow its progress, download its report. Every write
calls campaigns.services."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from campaigns.admin_form import CampaignForm, CampaignFormAdminMixin, start_problems_html
from campaigns.models import Campaign, Recipient
from campaigns.reports import campaign_report_url
from campaigns.selectors import campaign_failures, campaign_progress, campaign_status_text
from campaigns.services import (
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
        fields = (*self.readonly_fields, "contact_data_note")
        if obj is not None and obj.status != _C.DRAFT:
            return (*fields, *EDITABLE, "audience_contacts")
        return fields

    def get_fieldsets(self, request, obj=None):
        """Without a draft, no CSV; for a user who may not read contact data, no audience count
        or sample, CSV list (its matches) or report (contacts.access): a note in their place."""
        dropped = set() if obj is None or obj.status == _C.DRAFT else {"audience_csv"}
        replaced = {}
        if not contact_data_visible(request.user):
            dropped |= {"audience_csv", "report_link"}
            replaced["audience_preview"] = "contact_data_note"
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

    @admin.display(description="")
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
        if not campaign.report_key:
            return "Written when the campaign completes or is cancelled."
        url = reverse("admin:campaigns_campaign_report", args=[campaign.pk])
        return format_html('<a href="{}">Download {}</a>', url, campaign.report_key.rsplit("/", 1)[-1])

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
            campaign_delete(campaign=campaign, actor=request.user, source=SOURCE)

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


def in_doubt_url(campaign: Campaign) -> str:
    """Where an operator decides on a campaign's recipients in doubt: its messages in doubt
    (WhatsApp), else its recipients in doubt (email, SMS)."""
    if campaign.channel == Campaign.Channel.WHATSAPP:
        return f"{reverse('admin:messaging_message_changelist')}?in_doubt=yes&campaign={campaign.pk}"
    return (
        f"{reverse('admin:campaigns_recipient_changelist')}?status=in_doubt&campaign__id__exact={campaign.pk}"
    )


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


@admin.register(Recipient)
class RecipientAdmin(ReadOnlyAdmin):
    list_display = (
        "address",
        "campaign",
        "status",
        "message_status",
        "error_code",
        "error_title",
        "updated_at",
    )
    list_filter = ("status",)
    search_fields = ("=address", "=campaign__id")
    list_select_related = ("campaign", "message")
    show_full_result_count = False
    readonly_fields = [field.name for field in Recipient._meta.fields]

    def has_view_permission(self, request, obj=None):
        """Recipients are their addresses: contact data (contacts.access)."""
        return super().has_view_permission(request, obj) and contact_data_visible(request.user)

    @admin.display(description="message status")
    def message_status(self, recipient: Recipient) -> str:
        return recipient.message.status if recipient.message else ""


class MessageCampaignFilter(admin.SimpleListFilter):
    """The message list narrowed to one campaign's messages (`?campaign=<id>`), as a campaign's
    "in doubt" link asks; shown only while it applies (listing every campaign would not scale)."""

    title = "campaign"
    parameter_name = "campaign"

    def lookups(self, request, model_admin):
        value = int_param(request.GET.get(self.parameter_name))
        if value is None:
            return []
        campaign = Campaign.objects.filter(pk=value).only("name").first()
        return [(str(value), campaign.name if campaign else f"campaign {value}")]

    def queryset(self, request, queryset):
        if (value := int_param(self.value())) is not None:
            return queryset.filter(campaign_recipient__campaign_id=value)
        return queryset


# Messaging's message list knows nothing of campaigns: campaigns plugs its filter in.
_message_admin = admin.site.get_model_admin(Message)
_message_admin.list_filter = (*_message_admin.list_filter, MessageCampaignFilter)

"""The campaign form as a manager fills it, without JSON: only the chosen channel's fields, a
template's parameters as labelled inputs with placeholder chips, the audience as tags and filter
rows, a live preview and audience count (two endpoints reading the unsaved form), and what stops
a draft from starting (campaigns.services.campaign_start_problems). The page's behaviour is
campaigns/static/campaigns/campaign_form.js; every write still goes through campaigns.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from campaigns.models import Campaign
from campaigns.services import (
    EDITABLE,
    audience_filters_clean,
    campaign_audience_count,
    campaign_audience_preview,
    campaign_parameters_render,
    campaign_start_problems,
)
from contacts.access import CONTACTS_VIEW, contact_data_visible
from contacts.models import Contact
from contacts.placeholders import contact_values, placeholders_check, placeholders_render
from contacts.selectors import contact_attribute_keys, contact_tags_most_common
from core.params import int_param
from core.uploads import upload_size_check
from messaging.models import Template
from messaging.templates import (
    SENDABLE,
    template_fill,
    template_parameters_from_slots,
    template_slot_values,
    template_slots,
)

_C = Campaign.Status
PARAM_PREFIX = "param-"
PLACEHOLDER_CHIPS = ("{{name|there}}", "{{first_name|there}}", "{{phone}}", "{{email}}")
# The fields each channel uses; the others are cleared on save, so hidden input never sticks.
CHANNEL_FIELDS = {
    Campaign.Channel.WHATSAPP: ("phone_number", "template", "template_parameters"),
    Campaign.Channel.EMAIL: ("subject", "body"),
    Campaign.Channel.SMS: ("body",),
}
CLEARED = {"phone_number": None, "template": None, "template_parameters": {}, "subject": "", "body": ""}
# What the preview and the count read of the unsaved form.
PROBED = ("channel", "phone_number", "template", "subject", "body", "audience_tags", "audience_filters")
SAMPLE_CONTACTS = 10


class TagsField(forms.MultipleChoiceField):
    """Tags offered from the contacts' most used (a cached list); one typed elsewhere or added
    since is taken too: a tag nobody has matches nobody."""

    def valid_value(self, value) -> bool:
        return isinstance(value, str) and 0 < len(value.strip()) <= 64


class CampaignForm(forms.ModelForm):
    audience_tags = TagsField(
        required=False,
        label="Tags",
        widget=forms.CheckboxSelectMultiple(attrs={"class": "campaign-tags"}),
        help_text="Contacts with any of these tags.",
    )
    audience_csv = forms.FileField(
        required=False,
        label="Audience CSV",
        help_text="A header line with an id, phone or email column: these contacts replace the list above.",
    )

    class Meta:
        model = Campaign
        fields = (*EDITABLE, "audience_contacts")
        labels = {
            "phone_number": "Sender number",
            "template_parameters": "Parameters",
            "audience_filters": "Filters",
        }
        widgets = {
            # The stored JSON, for a browser without scripts; the page draws one labelled input
            # per parameter of the chosen template (`param-<slot key>`) in its place.
            "template_parameters": forms.Textarea(attrs={"rows": 2, "class": "campaign-parameters-json"}),
            "audience_filters": forms.Textarea(attrs={"rows": 2, "class": "campaign-filters-json"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "template" in self.fields:
            self.fields["template"].queryset = Template.objects.filter(status=SENDABLE)
        if "audience_tags" in self.fields:
            known = [tag for tag, _count in contact_tags_most_common(limit=500)]
            chosen = list(self.instance.audience_tags or []) if self.instance.pk else []
            if self.is_bound and hasattr(self.data, "getlist"):
                chosen += [tag for tag in self.data.getlist("audience_tags") if isinstance(tag, str)]
            self.fields["audience_tags"].choices = [(tag, tag) for tag in sorted(set(known) | set(chosen))]

    def clean_audience_csv(self):
        upload_size_check(self.cleaned_data.get("audience_csv"), limit=settings.CSV_UPLOAD_MAX_BYTES)
        return self.cleaned_data.get("audience_csv")

    def clean(self):
        """Another channel's fields are cleared; a template's parameters come from their labelled
        inputs. A draft may stay incomplete (what it lacks is listed on its page), but a placeholder
        that does not exist is an error now."""
        cleaned_data = super().clean()
        channel = cleaned_data.get("channel")
        if channel not in CHANNEL_FIELDS:
            return cleaned_data
        for name, empty in CLEARED.items():
            if name in self.fields and name not in CHANNEL_FIELDS[channel]:
                cleaned_data[name] = empty
        if channel == Campaign.Channel.WHATSAPP and "template_parameters" in self.fields:
            template = cleaned_data.get("template")
            posted = slot_values_posted(self.data)
            if template is None:
                cleaned_data["template_parameters"] = {}
            elif posted:
                cleaned_data["template_parameters"] = template_parameters_from_slots(
                    template=template, values=posted
                )
            texts = [
                ("template_parameters", item)
                for items in (cleaned_data.get("template_parameters") or {}).values()
                if isinstance(items, list)
                for item in items
                if isinstance(item, str)
            ]
        else:
            texts = [(name, cleaned_data.get(name) or "") for name in CHANNEL_FIELDS[channel]]
        for field, text in texts:
            try:
                placeholders_check(text, field)
            except ValidationError as error:
                self.add_error(field if field in self.fields else None, error.message_dict[field])
        return cleaned_data


def slot_values_posted(data) -> dict[str, str]:
    return {key[len(PARAM_PREFIX) :]: data.get(key, "") for key in data if key.startswith(PARAM_PREFIX)}


def _templates_described() -> dict[str, dict[str, Any]]:
    return {
        str(template.pk): {
            "name": str(template),
            "waba": template.waba_id,
            "components": template.components,
            "slots": [
                {
                    "key": slot.key,
                    "label": slot.label[:1].upper() + slot.label[1:],
                    "example": slot.example,
                }
                for slot in template_slots(template=template)
            ],
        }
        for template in Template.objects.filter(status=SENDABLE).order_by("name", "language")
    }


def campaign_form_config(request: HttpRequest, form: forms.Form, campaign: Campaign | None) -> dict[str, Any]:
    """What the page's script needs: the templates' parameters, the values to start from, the
    placeholders to offer, the endpoints, and whether contact data (the count, the sample) shows."""
    if form.is_bound:
        values = slot_values_posted(form.data)
    elif campaign is not None and campaign.template_id is not None:
        values = template_slot_values(template=campaign.template, parameters=campaign.template_parameters)
    else:
        values = {}
    keys = contact_attribute_keys()
    return {
        "templates": _templates_described(),
        "values": values,
        "placeholders": [*PLACEHOLDER_CHIPS, *(f"{{{{attributes.{key}}}}}" for key in keys)],
        "attributeKeys": keys,
        "previewUrl": reverse("admin:campaigns_campaign_form_preview"),
        "countUrl": reverse("admin:campaigns_campaign_form_audience"),
        "campaign": campaign.pk if campaign is not None else None,
        "contactData": contact_data_visible(request.user),
    }


def start_problems_html(problems: list[str]) -> str:
    return format_html(
        '<button type="button" class="button campaign-start-blocked" disabled title="{}">Start</button>'
        '<div class="campaign-problems" role="status"><strong>This campaign cannot start yet:</strong>'
        "<ul>{}</ul></div>",
        " ".join(problems),
        format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)),
    )


def _probe(request: HttpRequest) -> Campaign:
    """A campaign (unsaved) as the form stands; ValidationError names the field."""
    form = CampaignForm(data=request.POST)
    values: dict[str, Any] = {}
    for name in PROBED:
        try:
            values[name] = form.fields[name].clean(form[name].data)
        except ValidationError as error:
            raise ValidationError({name: error.messages}) from None
    values["audience_filters"] = audience_filters_clean(values["audience_filters"] or {})
    values["subject"], values["body"] = values["subject"] or "", values["body"] or ""
    probe = Campaign(**values)
    if probe.template is not None:
        probe.template_parameters = template_parameters_from_slots(
            template=probe.template, values=slot_values_posted(request.POST)
        )
    saved = int_param(request.POST.get("campaign"))
    if saved is not None and Campaign.objects.filter(pk=saved, status=_C.DRAFT).exists():
        probe.pk = saved  # its explicit list of contacts counts too
    return probe


def _refused(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


class CampaignFormAdminMixin:
    """The form's endpoints and page context, mixed into CampaignAdmin."""

    def form_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("form/preview/", view(self.form_preview_view), name="campaigns_campaign_form_preview"),
            path("form/audience/", view(self.form_audience_view), name="campaigns_campaign_form_audience"),
        ]

    def has_form_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) or self.has_change_permission(request)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context.get("adminform").form if context.get("adminform") else None
        if form is not None and "channel" in form.fields:
            context["campaign_form"] = campaign_form_config(request, form, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _problems_say(self, request: HttpRequest, campaign: Campaign) -> None:
        if campaign.status == _C.DRAFT and (problems := campaign_start_problems(campaign=campaign)):
            self.message_user(
                request, f"Saved as a draft. It cannot start yet: {' '.join(problems)}", messages.WARNING
            )

    def response_add(self, request, obj, post_url_continue=None):
        self._problems_say(request, obj)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        self._problems_say(request, obj)
        return super().response_change(request, obj)

    def form_preview_view(self, request: HttpRequest) -> JsonResponse:
        """The message as the sample contact (the audience's first, or the one picked) would read
        it, filled by the send path's own renderers. Without contacts.view_contact no contact is
        read: placeholders fall back to their defaults."""
        if not self.has_form_permission(request):
            return _refused(403, "You may not edit campaigns.")
        if request.method != "POST":
            return _refused(405, "POST the form.")
        try:
            probe = _probe(request)
        except ValidationError as error:
            return JsonResponse({"errors": error.message_dict}, status=400)
        answer: dict[str, Any] = {"channel": probe.channel, "contact": None, "contacts": []}
        values: dict[str, Any] = {}
        if contact_data_visible(request.user):
            sample = campaign_audience_preview(campaign=probe, limit=SAMPLE_CONTACTS)
            picked = int_param(request.POST.get("preview_contact"))
            contact = Contact.objects.filter(pk=picked).first() if picked is not None else None
            contact = contact or (sample[0] if sample else None)
            answer["contacts"] = [{"id": each.pk, "label": str(each)} for each in sample]
            if contact is not None:
                values = contact_values(contact)
                answer["contact"] = {"id": contact.pk, "label": str(contact)}
        else:
            answer["note"] = f"Placeholders show their defaults: a contact's data needs {CONTACTS_VIEW}."
        if probe.channel == Campaign.Channel.WHATSAPP:
            if probe.template is None:
                answer["parts"] = None
            else:
                filled, error = campaign_parameters_render(campaign=probe, contact=values)
                answer["parts"] = template_fill(components=probe.template.components, values=filled)
                answer["error"] = error if values else ""
        else:
            answer["subject"] = placeholders_render(probe.subject, values)
            answer["body"] = placeholders_render(probe.body, values)
        return JsonResponse(answer)

    def form_audience_view(self, request: HttpRequest) -> JsonResponse:
        """How many contacts the form's audience holds now: contact data (contacts.access)."""
        if not (self.has_form_permission(request) and contact_data_visible(request.user)):
            return _refused(403, f"An audience's count is contact data: it needs {CONTACTS_VIEW}.")
        if request.method != "POST":
            return _refused(405, "POST the form.")
        try:
            probe = _probe(request)
        except ValidationError as error:
            return JsonResponse({"errors": error.message_dict}, status=400)
        return JsonResponse({"count": campaign_audience_count(campaign=probe)})

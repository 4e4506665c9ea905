"""Sender numbers in the console: their settings through the services; paused ones resumed; their
standing at Meta (quality rating, messaging limit) shown and read again on request."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from core.alerts import operator_alert_acknowledge_key
from core.console import admin_object_take, set_or_unset_filter
from messaging.admin.common import SOURCE
from messaging.graph import GraphError
from messaging.models import (
    PhoneNumber,
)
from messaging.numbers import messaging_limit_text, phone_number_sync, quality_label
from messaging.outbound.send import (
    phone_number_resume,
)
from messaging.services import (
    PHONE_NUMBER_FIELDS,
    RATE_LIMIT_MAX_PER_S,
    phone_number_create,
    phone_number_fields_clean,
    phone_number_groups_set,
    phone_number_update,
    phone_numbers_delete,
)


class PhoneNumberForm(forms.ModelForm):
    """Validates with the service's own rules, so that save_model's service call does not refuse."""

    rate_limit_per_s = forms.IntegerField(
        min_value=1,
        max_value=RATE_LIMIT_MAX_PER_S,
        initial=80,
        help_text="Messages per second Wharf sends from this number (Meta allows 80, up to 1,000).",
    )

    class Meta:
        model = PhoneNumber
        fields = (*PHONE_NUMBER_FIELDS, "groups")

    def clean(self):
        cleaned_data = super().clean()
        try:
            cleaned_data.update(
                phone_number_fields_clean(
                    {name: cleaned_data[name] for name in PHONE_NUMBER_FIELDS if name in cleaned_data}
                )
            )
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned_data


# Background and text colours that read in light and dark themes alike; the text says it too.
QUALITY_COLOURS = {
    "GREEN": ("#d3f2dc", "#0b5227"),
    "YELLOW": ("#fdefc3", "#5c4400"),
    "RED": ("#fbd9d6", "#8a1c12"),
}
QUALITY_NONE = ("#e8e8e8", "#333")


def quality_badge(rating: str) -> str:
    """The rating as a coloured badge that names it: "Green · high"."""
    if not rating:
        return "-"
    background, colour = QUALITY_COLOURS.get(rating, QUALITY_NONE)
    name = (
        f"{rating.title()} · {quality_label(rating).lower()}"
        if rating in QUALITY_COLOURS
        else quality_label(rating)
    )
    return format_html(
        '<span class="wharf-quality wharf-quality-{}" title="Quality rating at Meta: {}" '
        'style="display: inline-block; padding: .05rem .5rem; border-radius: 1rem; background: {}; '
        'color: {}; font-weight: 600; white-space: nowrap">{}</span>',
        rating.lower(),
        rating,
        background,
        colour,
        name,
    )


PausedFilter = set_or_unset_filter(
    title="sending", parameter_name="paused", field="paused_at", yes="Paused", no="Sending"
)


# What Meta says of a number (messaging.numbers), shown read-only.
AT_META = ("quality", "messaging_limit_words", "throughput_level", "name_status", "standing_at", "synced_at")


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberForm
    list_display = (
        "display_phone_number",
        "verified_name",
        "phone_number_id",
        "waba_id",
        "rate_limit_per_s",
        "quality",
        "messaging_limit_words",
        "sending_state",
        "auto_assign",
        "synced_at",
    )
    list_display_links = ("display_phone_number", "phone_number_id")
    list_filter = (PausedFilter, "quality_rating", "waba_id")
    search_fields = ("=phone_number_id", "display_phone_number", "verified_name", "=waba_id")
    readonly_fields = (
        "paused_at",
        "paused_reason",
        "created_at",
        "updated_at",
        *AT_META,
    )
    fieldsets = (
        (None, {"fields": ("phone_number_id", "display_phone_number", "verified_name", "waba_id")}),
        ("Sending", {"fields": ("rate_limit_per_s", "paused_at", "paused_reason")}),
        (
            "At Meta",
            {
                "fields": AT_META,
                "description": "Read from Meta every hour, when Meta reports a change, and on "
                "“Sync from Meta”.",
            },
        ),
        ("Conversations", {"fields": ("read_receipts", "auto_assign")}),
        ("Who sees its conversations", {"fields": ("groups",)}),
        ("Activity", {"fields": ("created_at", "updated_at")}),
    )
    filter_horizontal = ("groups",)
    actions = ("resume_sending", "sync_from_meta")
    change_form_template = "admin/messaging/phonenumber/change_form.html"

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_phonenumber")

    def has_sync_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_phonenumber")

    @admin.display(description="quality", ordering="quality_rating")
    def quality(self, phone_number: PhoneNumber) -> str:
        return quality_badge(phone_number.quality_rating)

    @admin.display(description="messaging limit", ordering="messaging_limit")
    def messaging_limit_words(self, phone_number: PhoneNumber) -> str:
        return messaging_limit_text(phone_number.messaging_limit) or "-"

    @admin.action(description="Sync the selected numbers from Meta", permissions=["sync"])
    def sync_from_meta(self, request, queryset):
        for phone_number in queryset:
            self._sync(request, phone_number)

    def _sync(self, request: HttpRequest, phone_number: PhoneNumber) -> None:
        try:
            synced = phone_number_sync(phone_number=phone_number, actor=request.user, source=SOURCE)
        except GraphError as error:
            self.message_user(request, f"{phone_number}: {error.reason}", messages.ERROR)
            return
        text = (
            f"{synced}: quality {quality_label(synced.quality_rating).lower() or 'not given'}, "
            f"messaging limit {messaging_limit_text(synced.messaging_limit) or 'not given'}."
        )
        self.message_user(request, f"Synced from Meta. {text}", messages.SUCCESS)

    def get_urls(self):
        sync_path = path(
            "<int:object_id>/sync/",
            self.admin_site.admin_view(self.sync_view),
            name="messaging_phonenumber_sync",
        )
        return [sync_path, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync": self.has_sync_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def sync_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The change page's "Sync from Meta" button."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_sync_permission(request):
            raise PermissionDenied
        phone_number = get_object_or_404(PhoneNumber, pk=object_id)
        self._sync(request, phone_number)
        return HttpResponseRedirect(reverse("admin:messaging_phonenumber_change", args=[phone_number.pk]))

    @admin.display(description="sending", ordering="paused_at")
    def sending_state(self, phone_number: PhoneNumber) -> str:
        if phone_number.paused_at is None:
            return "sending"
        return format_html(
            '<strong class="wharf-paused" title="{}">paused since {}</strong>',
            phone_number.paused_reason,
            phone_number.paused_at.strftime("%d %b %Y %H:%M UTC"),
        )

    @admin.action(description="Resume sending from the selected paused numbers", permissions=["resume"])
    def resume_sending(self, request, queryset):
        paused = list(queryset.filter(paused_at__isnull=False))
        for phone_number in paused:
            phone_number_resume(phone_number=phone_number, actor=request.user, source=SOURCE)
            key = f"sender-paused:{phone_number.phone_number_id}"
            operator_alert_acknowledge_key(key=key, actor=request.user)
        if paused:
            self.message_user(request, f"Resumed sending from {len(paused)} number(s).", messages.SUCCESS)
        else:
            self.message_user(request, "None of the selected numbers was paused.", messages.WARNING)

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in PHONE_NUMBER_FIELDS if name in form.cleaned_data}
        if change:
            saved = phone_number_update(
                phone_number=PhoneNumber.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            saved = phone_number_create(**fields, actor=request.user, source=SOURCE)
        admin_object_take(obj, saved)

    def save_related(self, request, form, formsets, change):
        """The groups through their service (audited), not the form's own save_m2m."""
        phone_number_groups_set(
            phone_number=form.instance, groups=form.cleaned_data["groups"], actor=request.user, source=SOURCE
        )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        phone_numbers_delete(phone_numbers=[obj], actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        phone_numbers_delete(phone_numbers=list(queryset), actor=request.user, source=SOURCE)

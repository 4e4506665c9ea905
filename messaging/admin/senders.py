"""Sender numbers in the console: their settings through the services; paused ones resumed."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html

from core.alerts import operator_alert_acknowledge_key
from core.console import admin_object_take, set_or_unset_filter
from messaging.admin.common import SOURCE
from messaging.models import (
    PhoneNumber,
)
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


PausedFilter = set_or_unset_filter(
    title="sending", parameter_name="paused", field="paused_at", yes="Paused", no="Sending"
)


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberForm
    list_display = (
        "display_phone_number",
        "verified_name",
        "phone_number_id",
        "waba_id",
        "rate_limit_per_s",
        "quality_rating",
        "messaging_limit",
        "sending_state",
        "auto_assign",
        "updated_at",
    )
    list_display_links = ("display_phone_number", "phone_number_id")
    list_filter = (PausedFilter, "quality_rating", "waba_id")
    search_fields = ("=phone_number_id", "display_phone_number", "verified_name", "=waba_id")
    readonly_fields = ("paused_at", "paused_reason", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("phone_number_id", "display_phone_number", "verified_name", "waba_id")}),
        (
            "Sending",
            {
                "fields": (
                    "rate_limit_per_s",
                    "quality_rating",
                    "messaging_limit",
                    "paused_at",
                    "paused_reason",
                )
            },
        ),
        ("Conversations", {"fields": ("read_receipts", "auto_assign")}),
        ("Who sees its conversations", {"fields": ("groups",)}),
        ("Activity", {"fields": ("created_at", "updated_at")}),
    )
    filter_horizontal = ("groups",)
    actions = ("resume_sending",)

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("messaging.change_phonenumber")

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

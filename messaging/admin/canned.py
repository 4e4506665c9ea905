"""Canned responses in the console: each operator manages those they see (everyone's and their
teams'), with a team among their own groups, through the services."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils.text import Truncator

from core.console import admin_object_take
from messaging.admin.common import SOURCE
from messaging.canned import (
    CANNED_RESPONSE_FIELDS,
    canned_response_create,
    canned_response_fields_clean,
    canned_response_update,
    canned_responses_delete,
    canned_responses_visible_q,
)
from messaging.models import CannedResponse


class CannedResponseForm(forms.ModelForm):
    """Validates with the service's own rules, so that save_model's service call does not refuse."""

    class Meta:
        model = CannedResponse
        fields = CANNED_RESPONSE_FIELDS
        widgets = {"body": forms.Textarea(attrs={"rows": 6, "cols": 80, "maxlength": 4096})}

    def clean(self):
        cleaned_data = super().clean()
        fields = {name: cleaned_data[name] for name in CANNED_RESPONSE_FIELDS if name in cleaned_data}
        try:
            cleaned_data.update(canned_response_fields_clean(fields))
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned_data


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    form = CannedResponseForm
    list_display = ("shortcut_typed", "title", "body_start", "team", "created_by", "updated_at")
    list_display_links = ("shortcut_typed", "title")
    list_filter = ("group",)
    search_fields = ("shortcut", "title", "body")
    readonly_fields = ("created_by", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("shortcut", "title", "body", "group")}),
        ("Activity", {"fields": ("created_by", "created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("group", "created_by")
        return queryset.filter(canned_responses_visible_q(request.user))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """A team among the operator's own groups (any group for a superuser)."""
        if db_field.name == "group" and not request.user.is_superuser:
            kwargs["queryset"] = Group.objects.filter(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="shortcut", ordering="shortcut")
    def shortcut_typed(self, canned: CannedResponse) -> str:
        return f"/{canned.shortcut}"

    @admin.display(description="text")
    def body_start(self, canned: CannedResponse) -> str:
        return Truncator(canned.body.splitlines()[0] if canned.body else "").chars(80)

    @admin.display(description="team", ordering="group__name")
    def team(self, canned: CannedResponse) -> str:
        return canned.group.name if canned.group is not None else "everyone"

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in CANNED_RESPONSE_FIELDS}
        if change:
            saved = canned_response_update(
                canned_response=CannedResponse.objects.get(pk=obj.pk),
                actor=request.user,
                source=SOURCE,
                **fields,
            )
        else:
            saved = canned_response_create(**fields, actor=request.user, source=SOURCE)
        admin_object_take(obj, saved)

    def delete_model(self, request, obj):
        canned_responses_delete(canned_responses=[obj], actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        canned_responses_delete(canned_responses=list(queryset), actor=request.user, source=SOURCE)

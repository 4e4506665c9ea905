"""The catalogue of conversation labels: what operators may tick on a conversation page and filter
the inbox by. Saved and deleted through messaging.labels, which keeps conversations in step."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from core.console import admin_object_take
from messaging.admin.common import SOURCE, label_chip
from messaging.labels import LABEL_FIELDS, label_create, label_delete, label_update, labels_delete
from messaging.models import Label


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = ("chip", "colour", "description", "used_on")
    list_display_links = ("chip",)
    search_fields = ("name", "description")
    fields = LABEL_FIELDS
    ordering = ("name",)

    @admin.display(description="label", ordering="name")
    def chip(self, label: Label) -> str:
        return label_chip(label.name, label.colour)

    @admin.display(description="")
    def used_on(self, label: Label) -> str:
        url = reverse("admin:messaging_conversation_changelist")
        return format_html('<a href="{}?{}">its conversations</a>', url, urlencode({"label": label.name}))

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in LABEL_FIELDS}
        if change:
            saved = label_update(
                label=Label.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            saved = label_create(actor=request.user, source=SOURCE, **fields)
        admin_object_take(obj, saved)

    def delete_model(self, request, obj):
        label_delete(label=obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        labels_delete(queryset=queryset, actor=request.user, source=SOURCE)

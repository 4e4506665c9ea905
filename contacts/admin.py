"""The operators' console for contacts. Saves, deletes, actions and imports call contacts.services."""

import io

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from contacts.apis import csv_download
from contacts.models import Contact
from contacts.selectors import (
    NEWEST_FIRST_SORTED,
    ContactPaginator,
    contact_search_q,
    contact_tags_most_common,
)
from contacts.services.bulk import contacts_channel_opt_out, contacts_delete, contacts_opt_out, contacts_tag
from contacts.services.cleaning import (
    CONTACT_FIELDS,
    PHONE_TAKEN,
    contact_fields_clean,
    contact_uniques_check,
)
from contacts.services.contact import contact_create, contact_delete, contact_update
from contacts.services.csv_io import contacts_import_csv, import_refused_csv
from core.console import admin_object_take, set_or_unset_filter
from core.models import AuditLog
from core.uploads import upload_size_check

SOURCE = AuditLog.Source.ADMIN
IMPORT_ERRORS_SHOWN = 1000
# The refused rows of the last import wait in the session for their download, up to this size.
REFUSED_CSV_SESSION_MAX_CHARS = 2 * 1024 * 1024
_REFUSED_KEY = "contacts_import_refused"


class ContactForm(forms.ModelForm):
    """Validates with the services' own rules, so that save_model's service call does not refuse."""

    phone = forms.CharField(max_length=64, help_text="International format, e.g. +14155550123.")

    class Meta:
        model = Contact
        fields = CONTACT_FIELDS
        error_messages = {"phone": {"unique": PHONE_TAKEN}}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.instance.phone:
            self.fields["phone"].required = False  # known to WhatsApp by its ids only

    def clean(self):
        cleaned_data = super().clean()
        if not cleaned_data.get("phone") and not self.fields["phone"].required:
            cleaned_data.pop("phone", None)
        for name in CONTACT_FIELDS:
            if name in cleaned_data:
                try:
                    cleaned_data.update(contact_fields_clean(**{name: cleaned_data[name]}))
                except ValidationError as error:
                    self.add_error(None, error)
        try:
            contact_uniques_check(
                phone=cleaned_data.get("phone"), wa_id=cleaned_data.get("wa_id"), exclude_id=self.instance.pk
            )
        except ValidationError as error:
            self.add_error(None, error)
        return cleaned_data


class ContactActionForm(helpers.ActionForm):
    tag = forms.CharField(required=False, max_length=64, label="Tag", help_text="for “Add a tag”")


class ContactImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="UTF-8, with a header line that has a phone column.")

    def clean_file(self):
        upload_size_check(self.cleaned_data["file"], limit=settings.CSV_UPLOAD_MAX_BYTES)
        return self.cleaned_data["file"]


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        """Counting tags reads every contact (half a second at a million), so the list is kept
        ten minutes: a new tag shows after at most that, and the counts are as of then."""
        tags = contact_tags_most_common(limit=100, cache_seconds=600)
        return [(tag, f"{tag} ({count})") for tag, count in tags]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(tags__contains=[self.value()])
        return queryset


OptedOutFilter = set_or_unset_filter(
    title="opted out", parameter_name="opted_out", field="opted_out_at", yes="Yes", no="No"
)


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactForm
    action_form = ContactActionForm
    change_list_template = "admin/contacts/contact/change_list.html"
    list_display = ("phone", "name", "email", "tag_list", "language", "opted_out", "created_at")
    list_display_links = ("phone", "name")
    list_filter = (TagFilter, OptedOutFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("name", "phone", "email")
    search_help_text = "Name, email, or phone digits in any format."
    show_full_result_count = False
    # Counts exact up to EXACT_COUNT_MAX, then estimated; the page sorted or walked by that count.
    paginator = ContactPaginator
    actions = ("add_tag", "opt_out", "opt_out_email", "opt_out_sms", "export_csv")
    readonly_fields = (
        "opted_in_at",
        "opt_in_source",
        "opted_out_at",
        "opt_out_source",
        "email_opted_out_at",
        "email_opt_out_source",
        "sms_opted_out_at",
        "sms_opt_out_source",
        "last_inbound_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("phone", "wa_id", "name", "email", "language", "tags", "attributes")}),
        (
            "Consent",
            {
                "fields": (
                    "opted_in_at",
                    "opt_in_source",
                    ("opted_out_at", "opt_out_source"),
                    ("email_opted_out_at", "email_opt_out_source"),
                    ("sms_opted_out_at", "sms_opt_out_source"),
                )
            },
        ),
        ("Activity", {"fields": ("last_inbound_at", "created_at", "updated_at")}),
    )

    @admin.display(description="tags")
    def tag_list(self, contact: Contact) -> str:
        return ", ".join(contact.tags)

    @admin.display(description="opted out", boolean=True, ordering="opted_out_at")
    def opted_out(self, contact: Contact) -> bool:
        return contact.is_opted_out

    def get_list_display(self, request):
        if request.user.has_perm("messaging.view_message"):
            return (*self.list_display, "conversation_link")
        return self.list_display

    @admin.display(description="")
    def conversation_link(self, contact: Contact) -> str:
        url = reverse("admin:messaging_message_conversation", args=[contact.pk])
        return format_html('<a href="{}">Conversation</a>', url)

    def get_ordering(self, request):
        """Newest first, as the API: sorted for a few matches, by the index for many (the paginator)."""
        return NEWEST_FIRST_SORTED

    def get_search_results(self, request, queryset, search_term):
        """The API's search (indexed, phone digits in any format) instead of the admin's own."""
        if not search_term.strip():
            return queryset, False
        return queryset.filter(contact_search_q(search_term.strip())), False

    # -- writes go through the services -----------------------------------------------------------

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in CONTACT_FIELDS if name in form.cleaned_data}
        if change:
            contact = contact_update(
                contact=Contact.objects.get(pk=obj.pk), actor=request.user, source=SOURCE, **fields
            )
        else:
            contact = contact_create(**fields, actor=request.user, source=SOURCE)
        admin_object_take(obj, contact)

    def delete_model(self, request, obj):
        contact_delete(contact=obj, actor=request.user, source=SOURCE)

    def delete_queryset(self, request, queryset):
        contacts_delete(queryset=queryset, actor=request.user, source=SOURCE)

    @admin.action(description="Add the tag to the selected contacts", permissions=["change"])
    def add_tag(self, request, queryset):
        try:
            count = contacts_tag(
                queryset=queryset, tags=[request.POST.get("tag", "")], actor=request.user, source=SOURCE
            )
        except ValidationError as error:
            self.message_user(request, f"Not tagged: {' '.join(error.messages)}", messages.ERROR)
            return
        self.message_user(request, f"Tagged {count} contact(s).", messages.SUCCESS)

    @admin.action(description="Opt the selected contacts out", permissions=["change"])
    def opt_out(self, request, queryset):
        count = contacts_opt_out(queryset=queryset, actor=request.user, source=SOURCE)
        self.message_user(request, f"Opted out {count} contact(s).", messages.SUCCESS)

    @admin.action(description="Opt the selected contacts out of email", permissions=["change"])
    def opt_out_email(self, request, queryset):
        count = contacts_channel_opt_out(
            queryset=queryset, channel="email", actor=request.user, source=SOURCE
        )
        self.message_user(request, f"Opted out {count} contact(s) of email.", messages.SUCCESS)

    @admin.action(description="Opt the selected contacts out of SMS", permissions=["change"])
    def opt_out_sms(self, request, queryset):
        count = contacts_channel_opt_out(queryset=queryset, channel="sms", actor=request.user, source=SOURCE)
        self.message_user(request, f"Opted out {count} contact(s) of SMS.", messages.SUCCESS)

    @admin.action(description="Export the selected contacts as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return csv_download(queryset)

    # -- the import page -------------------------------------------------------------------------

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def get_urls(self):
        import_url = path(
            "import/", self.admin_site.admin_view(self.import_view), name="contacts_contact_import"
        )
        refused_url = path(
            "import/refused.csv",
            self.admin_site.admin_view(self.import_refused_view),
            name="contacts_contact_import_refused",
        )
        return [import_url, refused_url, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "has_import_permission": self.has_import_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ContactImportForm(request.POST or None, request.FILES or None)
        result = None
        refused_kept = False
        if request.method == "POST":
            request.session.pop(_REFUSED_KEY, None)
        if request.method == "POST" and form.is_valid():
            try:
                result = contacts_import_csv(
                    file=form.cleaned_data["file"], actor=request.user, source=SOURCE
                )
            except ValidationError as error:
                form.add_error("file", error.messages)
            else:
                self.message_user(
                    request,
                    f"Imported {form.cleaned_data['file'].name}: {result.created} created, "
                    f"{result.updated} updated, {len(result.errors)} row(s) refused.",
                    messages.WARNING if result.errors else messages.SUCCESS,
                )
                if result.errors:
                    refused = io.StringIO()
                    import_refused_csv(result=result, out=refused)
                    if refused_kept := len(refused.getvalue()) <= REFUSED_CSV_SESSION_MAX_CHARS:
                        name = form.cleaned_data["file"].name.rsplit(".", 1)[0]
                        request.session[_REFUSED_KEY] = {"name": name, "csv": refused.getvalue()}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import contacts from CSV",
            "form": form,
            "result": result,
            "errors_shown": result.errors[:IMPORT_ERRORS_SHOWN] if result else [],
            "errors_hidden": max(0, len(result.errors) - IMPORT_ERRORS_SHOWN) if result else 0,
            "refused_kept": refused_kept,
        }
        return TemplateResponse(request, "admin/contacts/contact/import.html", context)

    def import_refused_view(self, request: HttpRequest) -> HttpResponse:
        """The last import's refused rows, with an `error` column, to fix and import again."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        refused = request.session.get(_REFUSED_KEY)
        if refused is None:
            raise Http404("No refused rows to download: import a file first.")
        response = HttpResponse(refused["csv"], content_type="text/csv; charset=utf-8")
        filename = f"{refused['name']}-refused.csv".replace('"', "")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

"""The admin site: Django's, with its pages grouped by what people do rather than by app.

SECTIONS is the one table of the index and the side bar: the inbox first, then campaigns,
contacts, templates and numbers, reports. Every registered model it does not name falls into
System with the platform's plumbing (users, tokens, logins, task results, events, dead letters,
archives, the audit log), which only administrators see listed: superusers and holders of
SYSTEM_PERMISSION. The permissions of each page are untouched: a page that is not listed is still
reachable by whoever may open it, and each app's own page (/admin/<app>/) stays Django's.

A page that is not a model's list (a report, a dashboard) is a Link in the table, listed when its
URL name resolves and the user holds its permission.

The index sends those who work on conversations to the inbox, the page an operator lands on after
logging in (the sections stay in every page's side bar); others (a manager with no conversations
to answer) see the sections. Wharf has no site outside its console, so the header has no "View
site" link."""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.contrib import admin
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse

from dashboard.views import dashboard_view

INBOX = "admin:messaging_conversation_changelist"
SYSTEM_PERMISSION = "core.view_system"


@dataclass(frozen=True)
class Link:
    """A page of the console that is not a model's list."""

    name: str
    url_name: str
    permission: str | None = None  # None: anyone who may open the admin


@dataclass(frozen=True)
class Section:
    slug: str
    name: str
    entries: tuple[str | Link, ...]  # model labels ("app_label.ModelName") and links, in order


SECTIONS: tuple[Section, ...] = (
    Section(
        "inbox",
        "Inbox",
        (
            "messaging.Conversation",
            "messaging.Message",
            "messaging.Call",
            "messaging.CannedResponse",
            "messaging.Label",
        ),
    ),
    Section("campaigns", "Campaigns", ("campaigns.Campaign", "campaigns.Recipient")),
    Section("contacts", "Contacts", ("contacts.Contact",)),
    Section("templates", "Templates & numbers", ("messaging.Template", "messaging.PhoneNumber")),
    Section(
        "reports",
        "Reports",
        (
            Link("Dashboard", "admin:dashboard", permission="dashboard.view_dashboard"),
            Link(
                "Inbox reports",
                "admin:messaging_conversation_reports",
                permission="messaging.view_conversation",
            ),
        ),
    ),
)
# Whatever SECTIONS does not name: a new plumbing model lands here, never among the business pages.
SYSTEM = Section("system", "System", ())


def system_visible(user) -> bool:
    return user.is_active and (user.is_superuser or user.has_perm(SYSTEM_PERMISSION))


class WharfAdminSite(admin.AdminSite):
    site_header = "Wharf"
    site_title = "Wharf"
    index_title = "Operators' console"
    site_url = None

    def index(self, request, extra_context=None):
        if request.user.has_perm("messaging.view_conversation"):
            return HttpResponseRedirect(reverse(INBOX, current_app=self.name))
        return super().index(request, extra_context)

    def get_app_list(self, request, app_label=None):
        """The sections for the index and the side bar; an app's own page keeps Django's list."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        return self.sections(request)

    def sections(self, request: HttpRequest) -> list[dict]:
        """SECTIONS as Django's app list (one "app" per section), holding only what the user may
        open; empty sections left out, System only for administrators."""
        models = {
            model["model"]._meta.label: model
            for app in self._build_app_dict(request).values()
            for model in app["models"]
        }
        shown = list(SECTIONS)
        if system_visible(request.user):
            placed = {entry for section in SECTIONS for entry in section.entries}
            unplaced = sorted(
                (label for label in models if label not in placed), key=lambda x: models[x]["name"]
            )
            shown.append(replace(SYSTEM, entries=tuple(unplaced)))
        app_list = []
        for section in shown:
            rows = [self._entry(request, entry, models) for entry in section.entries]
            rows = [row for row in rows if row is not None]
            if rows:
                app_list.append(
                    {
                        "name": section.name,
                        "app_label": section.slug,
                        "app_url": reverse("admin:section", args=[section.slug], current_app=self.name),
                        "has_module_perms": True,
                        "models": rows,
                    }
                )
        return app_list

    def _entry(self, request: HttpRequest, entry: str | Link, models: dict[str, dict]) -> dict | None:
        if isinstance(entry, str):
            return models.get(entry)
        if entry.permission is not None and not request.user.has_perm(entry.permission):
            return None
        try:
            url = reverse(entry.url_name, current_app=self.name)
        except NoReverseMatch:
            return None
        return {
            "name": entry.name,
            "object_name": entry.url_name.rpartition(":")[2],
            "perms": {"view": True},
            "admin_url": url,
            "add_url": None,
            "view_only": True,
        }

    def get_urls(self):
        return [
            path("section/<slug:slug>/", self.admin_view(self.section_view), name="section"),
            path("dashboard/", self.admin_view(dashboard_view), {"admin_site": self}, name="dashboard"),
            *super().get_urls(),
        ]

    def section_view(self, request: HttpRequest, slug: str) -> HttpResponse:
        """One section's page, as Django shows one app's: the caption's link in the index."""
        app_list = [section for section in self.sections(request) if section["app_label"] == slug]
        if not app_list:
            raise Http404("The requested admin page does not exist.")
        context = {
            **self.each_context(request),
            "title": app_list[0]["name"],
            "subtitle": None,
            "app_list": app_list,
            "app_label": slug,
        }
        request.current_app = self.name
        return TemplateResponse(request, "admin/app_index.html", context)

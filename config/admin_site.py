"""The admin site: Django's, except that its index sends those who work on conversations to the
inbox, the page an operator lands on after logging in (the list of apps stays in every page's side
bar). Others (a manager with no conversations to answer) keep the index. Wharf has no site outside
its console, so the header has no "View site" link."""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.urls import path, reverse

from dashboard.views import dashboard_view

INBOX = "admin:messaging_conversation_changelist"


class WharfAdminSite(admin.AdminSite):
    site_header = "Wharf"
    site_title = "Wharf"
    index_title = "Operators' console"
    site_url = None

    def index(self, request, extra_context=None):
        if request.user.has_perm("messaging.view_conversation"):
            return HttpResponseRedirect(reverse(INBOX, current_app=self.name))
        return super().index(request, extra_context)

    def get_urls(self):
        dashboard = path(
            "dashboard/", self.admin_view(dashboard_view), {"admin_site": self}, name="dashboard"
        )
        return [dashboard, *super().get_urls()]

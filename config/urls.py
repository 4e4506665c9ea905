from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import healthz, readyz
from messaging.apis.messages import MediaUploadApi
from messaging.channels.views import sms_webhook, unsubscribe

api_v1 = [
    path("contacts/", include("contacts.urls")),
    path("campaigns/", include("campaigns.urls")),
    path("messages/", include("messaging.urls")),
    path("conversations/", include("messaging.conversation_urls")),
    path("calls/", include("messaging.call_urls")),
    path("media/", MediaUploadApi.as_view(), name="media-upload"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The schema answers any signed-in API user (token or session, SPECTACULAR_SETTINGS); its page
    # is the console's, so staff only, sending others to the admin's login.
    path(
        "api/docs/",
        staff_member_required(SpectacularSwaggerView.as_view(url_name="schema")),
        name="api-docs",
    ),
    path("webhooks/whatsapp/", include("messaging.webhook_urls")),
    path("webhooks/sms/", sms_webhook, name="sms-webhook"),
    path("unsubscribe/<str:token>/", unsubscribe, name="unsubscribe"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]

handler404 = "core.api_errors.page_not_found"

admin.site.site_header = "Wharf"
admin.site.site_title = "Wharf"
admin.site.index_title = "Operators' console"

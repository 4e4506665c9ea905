"""Meta's webhook, mounted at /webhooks/whatsapp/."""

from django.urls import path

from messaging.inbound.webhook import WhatsAppWebhookView

urlpatterns = [path("", WhatsAppWebhookView.as_view(), name="whatsapp-webhook")]

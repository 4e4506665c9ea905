"""Meta's webhook, mounted at /webhooks/whatsapp/."""

from django.urls import path

urlpatterns: list = []

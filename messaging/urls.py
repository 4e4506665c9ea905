"""The messages API, mounted at /api/v1/messages/."""

from django.urls import path

urlpatterns: list = []

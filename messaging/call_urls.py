"""The calls API, mounted at /api/v1/calls/."""

from django.urls import path

from messaging.apis.calls import CallDetailApi, CallListApi

app_name = "calls"

urlpatterns = [
    path("", CallListApi.as_view(), name="list"),
    path("<int:id>/", CallDetailApi.as_view(), name="detail"),
]

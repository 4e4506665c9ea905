from django.urls import path

from contacts.apis import (
    ContactDetailApi,
    ContactExportApi,
    ContactImportApi,
    ContactListCreateApi,
    ContactOptInApi,
    ContactOptOutApi,
)

app_name = "contacts"

urlpatterns = [
    path("", ContactListCreateApi.as_view(), name="list"),
    path("import/", ContactImportApi.as_view(), name="import"),
    path("export/", ContactExportApi.as_view(), name="export"),
    path("<int:id>/", ContactDetailApi.as_view(), name="detail"),
    path("<int:id>/opt-out/", ContactOptOutApi.as_view(), name="opt-out"),
    path("<int:id>/opt-in/", ContactOptInApi.as_view(), name="opt-in"),
]

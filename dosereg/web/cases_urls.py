from django.urls import path

from . import cases_views as views
from . import urls as _web_urls  # noqa: F401  (registers the <id:> path converter)

app_name = "cases"

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("export.csv", views.export_csv, name="export"),
    path("acknowledge/", views.bulk_acknowledge, name="bulk_acknowledge"),
    path("due/", views.due, name="due"),
    path("incidents/", views.incident_register, name="incidents"),
    path("incidents.csv", views.incident_export, name="incidents_export"),
    path("incidents.pdf", views.incident_register_pdf, name="incidents_pdf"),
    path("staff/<id:staff_id>/", views.staff_person, name="staff_person"),
    path("<id:case_id>/", views.detail, name="detail"),
    path("<id:case_id>/incident.<str:fmt>", views.incident_file, name="incident_file"),
    path("<id:case_id>/incident/<str:action>/", views.incident_action, name="incident_action"),
    path("<id:case_id>/<str:action>/", views.action, name="action"),
]

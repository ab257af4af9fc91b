from django.urls import path, register_converter

from . import api, views, views_audit, views_browse, views_devices, views_skin
from .params import IdConverter

# <id:...>: a database id (1..2**63-1); an out-of-range id is a 404, never a database overflow
register_converter(IdConverter, "id")

app_name = "web"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.auth_views.LogoutView.as_view(), name="logout"),
    path("no-role/", views.no_role, name="no_role"),
    # RSO dashboard
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/alerts/<id:alert_id>/<str:action>/", views.alert_action, name="alert_action"),
    path("dashboard/quarantine/reprocess/", views.quarantine_reprocess, name="quarantine_reprocess"),
    # patient exposure history
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/<id:pk>/", views.patient_history, name="patient_history"),
    path("patients/<id:pk>/export.csv", views.patient_history_export, name="patient_history_export"),
    path("patients/<id:pk>/invite/", views.patient_invite, name="patient_invite"),
    path("patients/<id:pk>/skin-map-<int:days>d.png", views_skin.patient_skin_map_sum_png, name="patient_skin_map_sum_png"),
    path("studies/", views_browse.study_browser, name="study_browser"),
    path("studies/modality/<str:modality>/", views_browse.modality_home, name="modality_home"),
    path("studies/export.<str:fmt>", views_browse.study_browser_export, name="study_browser_export"),
    path("studies/<id:pk>/", views.study_detail, name="study_detail"),
    path("studies/<id:pk>/skin-map.png", views_skin.study_skin_map_png, name="study_skin_map_png"),
    path("studies/<id:pk>/skin-map/", views_skin.study_skin_map_3d, name="study_skin_map_3d"),
    path("vendor/plotly.min.js", views_skin.vendor_plotly, name="vendor_plotly"),
    # devices
    path("devices/", views_devices.device_list, name="device_list"),
    path("devices/<id:pk>/", views_devices.device_detail, name="device_detail"),
    path("devices/<id:pk>/rename/", views_devices.device_rename, name="device_rename"),
    path("devices/<id:pk>/merge/", views_devices.device_merge, name="device_merge"),
    path("devices/<id:pk>/split/", views_devices.device_split, name="device_split"),
    # patient portal
    path("portal/", views.portal, name="portal"),
    path("portal/exams/<id:pk>/", views.portal_exam, name="portal_exam"),
    path("portal/my-exams.csv", views.portal_export, name="portal_export"),
    path("portal/my-exams.pdf", views.portal_pdf, name="portal_pdf"),
    path("portal/print/", views.portal_print, name="portal_print"),
    path("portal/invite/<str:token>/", views.portal_invite, name="portal_invite"),
    # physicist protocol audit
    path("protocols/", views_audit.protocol_audit, name="protocol_audit"),
    path("protocols/overview/", views_audit.protocol_overview, name="protocol_overview"),
    path("protocols/group/", views_audit.protocol_group, name="protocol_group"),
    path("protocols/distribution.json", views.protocol_distribution, name="protocol_distribution"),
    path("protocols/names/", views_audit.protocol_names, name="protocol_names"),
    path("protocols/drls/", views.drl_sets, name="drl_sets"),
    path("protocols/technique/", views_audit.technique, name="fluoro_technique"),
    path("protocols/export/<str:kind>.<str:fmt>", views.protocol_export, name="protocol_export"),
    # staff
    path("staff/me/", views.staff_me, name="staff_me"),
    path("staff/", views.staff_overview, name="staff_overview"),
    # audit trail
    path("audit/", views.audit_log, name="audit_log"),
    # REST API
    path("api/v1/auth/token/", api.ObtainToken.as_view(), name="api_token"),
    path("api/v1/studies/", api.StudyList.as_view(), name="api_studies"),
    path("api/v1/studies/<id:pk>/", api.StudyDetail.as_view(), name="api_study"),
    path("api/v1/studies/<id:pk>/events/", api.EventList.as_view(), name="api_study_events"),
    path("api/v1/events/", api.EventList.as_view(), name="api_events"),
    path("api/v1/patients/", api.PatientList.as_view(), name="api_patients"),
    path("api/v1/patients/<id:pk>/", api.PatientDetail.as_view(), name="api_patient"),
    path("api/v1/alerts/", api.AlertList.as_view(), name="api_alerts"),
    path("api/v1/alerts/<id:pk>/<str:action>/", api.AlertAction.as_view(), name="api_alert_action"),
    path("api/v1/fhir/Observation", api.FhirObservationSearch.as_view(), name="api_fhir_search"),
    path("api/v1/fhir/Observation/<str:obs_id>", api.FhirObservation.as_view(), name="api_fhir_observation"),
]

"""Audit trail completeness: every URL is classified (patient-data read, change, or no patient data); every
patient-data read and every change writes an audit row. tests/web/test_audit.py checks most reads in detail;
this file adds the ones it does not reach and guarantees that a new URL cannot go unclassified."""
from __future__ import annotations

from django.test import Client
from django.urls import resolve, reverse

from dosereg.audit.models import AuditEvent
from tests.web import test_audit as web_audit
from tests.web import test_permissions as P

from .conftest import web_data  # noqa: F401

# reads that show patient (or staff member) data: a view / export / api_read row per request
PERSONAL_READS = {
    "web:dashboard", "web:patient_list", "web:patient_history", "web:patient_history_export", "web:study_detail",
    "web:portal", "web:portal_exam", "web:portal_export", "web:portal_print", "web:portal_pdf", "web:protocol_export",
    "web:staff_me", "web:staff_overview", "web:study_browser", "web:study_browser_export", "web:protocol_group",
    "web:api_studies", "web:api_study", "web:api_study_events", "web:api_events", "web:api_patients",
    "web:api_patient", "web:api_alerts", "web:api_fhir_search", "web:api_fhir_observation",
    "cases:worklist", "cases:export", "cases:due", "cases:detail", "cases:incidents", "cases:incidents_export",
    "cases:staff_person", "web:study_skin_map_png", "web:study_skin_map_3d", "web:patient_skin_map_sum_png",
    "cases:incident_file", "cases:incidents_pdf",
}
# writes: a change row
CHANGES = {"web:alert_action", "web:api_alert_action", "web:patient_invite", "web:quarantine_reprocess",
           "cases:bulk_acknowledge", "cases:action", "cases:incident_action",
           "web:device_rename", "web:device_merge", "web:device_split"}
# no patient-identifying data (aggregates per device/protocol, forms, sign-in, health; the audit trail itself
# shows patient numbers only, to admins). Sign-ins are audited by tests/web/test_audit.py.
NO_PATIENT_DATA = {
    "web:home", "web:login", "admin_login", "web:logout", "web:no_role", "web:portal_invite", "web:protocol_audit",
    "web:protocol_overview",
    "web:protocol_distribution", "web:protocol_names", "web:drl_sets", "web:fluoro_technique", "web:audit_log",
    "web:api_token", "ops:health", "web:modality_home", "web:vendor_plotly",
    "web:device_list", "web:device_detail",  # device identity, counts and dates: no patient
}


def test_every_url_is_classified_for_auditing():
    names = set(P.EXPECT)
    assert PERSONAL_READS | CHANGES | NO_PATIENT_DATA == names, (
        f"unclassified: {names - PERSONAL_READS - CHANGES - NO_PATIENT_DATA}; "
        f"gone: {(PERSONAL_READS | CHANGES | NO_PATIENT_DATA) - names}")
    assert not (PERSONAL_READS & CHANGES) and not (PERSONAL_READS & NO_PATIENT_DATA) and not (CHANGES & NO_PATIENT_DATA)


def _a_case(d, status: str | None = None) -> int:
    from dosereg.cases.models import Case

    qs = Case.objects.filter(patient__isnull=False).order_by("pk")
    return (qs.filter(status=status) if status else qs).values_list("pk", flat=True)[0]


def _a_staff() -> int:
    from dosereg.staff.models import StaffMember

    return StaffMember.objects.order_by("pk").values_list("pk", flat=True)[0]


def _new_rows(before: int):
    return list(AuditEvent.objects.filter(pk__gt=before).order_by("pk"))


def _last_pk() -> int:
    last = AuditEvent.objects.order_by("-pk").first()
    return last.pk if last else 0


def test_reads_not_covered_by_the_web_suite_are_audited(web_data):
    d = web_data
    covered = {resolve(url.split("?")[0]).view_name for _r, url, *_ in web_audit._cases(d)}
    from tests.security.test_site_scope_matrix import _skin_results

    skin_study = next(iter(d.studies.values()))
    _skin_results(skin_study)  # (and an earlier procedure of the same patient: a summed map)
    from dosereg.cases.incidents import incident_declare

    incident_case = _a_case(d)
    incident_declare(case_id=incident_case, user=d.users["rso"], category="unintended", summary="audit coverage")
    cases = {
        "web:patient_skin_map_sum_png": ("rso", reverse("web:patient_skin_map_sum_png",
                                                        kwargs={"pk": skin_study.patient_id, "days": 60}), "skin_map_sum"),
        "cases:incident_file": ("physicist", reverse("cases:incident_file", kwargs={"case_id": incident_case, "fmt": "pdf"}),
                                "incident_pdf"),
        "cases:incidents_pdf": ("rso", reverse("cases:incidents_pdf"), "incident_pdf"),
        "web:study_skin_map_png": ("rso", reverse("web:study_skin_map_png", kwargs={"pk": skin_study.pk}), "skin_map"),
        "web:study_skin_map_3d": ("physicist", reverse("web:study_skin_map_3d", kwargs={"pk": skin_study.pk}), "skin_map"),
        "web:staff_me": ("staff", reverse("web:staff_me"), "staff_dose"),
        "web:staff_overview": ("rso", reverse("web:staff_overview"), "staff_overview"),
        "web:patient_history_export": ("rso", reverse("web:patient_history_export", kwargs={"pk": d.patients["b"].pk}), "patient"),
        "web:api_patient": ("physicist", reverse("web:api_patient", kwargs={"pk": d.patients["b"].pk}), "patient"),
        "web:study_browser": ("rso", reverse("web:study_browser") + "?modality=CT", "study_list"),
        "web:protocol_group": ("physicist", reverse("web:protocol_group") + "?modality=CT", "protocol_group"),
        "web:study_browser_export": ("physicist", reverse("web:study_browser_export", kwargs={"fmt": "csv"}), "study_list"),
        "cases:worklist": ("physicist", reverse("cases:worklist"), "worklist"),
        "cases:export": ("rso", reverse("cases:export"), "worklist_csv"),
        "cases:due": ("rso", reverse("cases:due"), "worklist_due"),
        "cases:detail": ("physicist", reverse("cases:detail", kwargs={"case_id": _a_case(d)}), "case"),
        "cases:incidents": ("rso", reverse("cases:incidents"), "incident_register"),
        "cases:staff_person": ("rso", reverse("cases:staff_person", kwargs={"staff_id": _a_staff()}), "staff_member"),
        "cases:incidents_export": ("physicist", reverse("cases:incidents_export"), "incident_csv"),
    }
    missing = PERSONAL_READS - covered - set(cases)
    assert not missing, f"patient-data reads audited by no test: {missing}"
    for name, (role, url, object_type) in cases.items():
        c = Client()
        c.force_login(d.users[role])
        before = _last_pk()
        r = c.get(url, REMOTE_ADDR="10.3.3.3")
        assert r.status_code == 200, (name, r.status_code)
        if hasattr(r, "streaming_content"):
            b"".join(r.streaming_content)
        rows = _new_rows(before)
        assert rows and all(x.username == d.users[role].username and x.ip == "10.3.3.3" for x in rows), name
        assert {x.object_type for x in rows} == {object_type}, (name, [x.object_type for x in rows])
        assert {x.action for x in rows} <= {"view", "export", "api_read"}


def test_changes_are_audited_with_the_patient(web_data):
    from dosereg.exposure.models import Alert

    d = web_data
    alert = Alert.objects.filter(patient=d.patients["a"]).first()
    quarantined = d.quarantined[0].pk
    case_a = alert.case_link.case_id
    cases = [
        ("rso", reverse("web:alert_action", kwargs={"alert_id": alert.pk, "action": "acknowledge"}), {}, "alert", d.patients["a"].pk),
        ("admin", reverse("web:api_alert_action", kwargs={"pk": alert.pk, "action": "follow_up"}), {"note": "n"}, "alert", d.patients["a"].pk),
        ("rso", reverse("web:patient_invite", kwargs={"pk": d.patients["c"].pk}), {}, "patient_account", d.patients["c"].pk),
        ("physicist", reverse("web:quarantine_reprocess"), {"ids": [str(quarantined)]}, "quarantine", None),
        ("rso", reverse("cases:action", kwargs={"case_id": case_a, "action": "follow_up"}), {"note": "n"}, "case", d.patients["a"].pk),
        ("admin", reverse("cases:bulk_acknowledge"), {"ids": [str(_a_case(d, status="open"))]}, "case", None),
        ("rso", reverse("cases:incident_action", kwargs={"case_id": case_a, "action": "declare"}),
         {"note": "wrong region", "category": "wrong_patient_or_region"}, "incident", d.patients["a"].pk),
        ("rso", reverse("web:device_rename", kwargs={"pk": next(iter(d.studies.values())).device_id}),
         {"display_name": "Theatre 3 C-arm (renamed)"}, "device", None),
    ]
    for role, url, data, object_type, patient_pk in cases:
        c = Client()
        c.force_login(d.users[role])
        before = _last_pk()
        r = c.post(url, data, HTTP_X_REQUESTED_WITH="fetch")
        assert r.status_code in (200, 302), (url, r.status_code, r.content[:200])
        rows = [x for x in _new_rows(before) if x.action == "change"]
        assert len(rows) == 1, (url, [(x.action, x.object_type) for x in _new_rows(before)])
        assert rows[0].object_type == object_type and rows[0].username == d.users[role].username
        if patient_pk is not None:
            assert rows[0].patient_pk == patient_pk, url


def test_refused_and_failed_requests_write_no_read_rows(web_data):
    """Only data actually shown is logged as read (tests/web covers 403; here 404 of another patient's id)."""
    d = web_data
    c = Client()
    c.force_login(d.users["patient2"])
    before = _last_pk()
    sa = d.studies["a_angio"].pk
    for url in (reverse("web:portal_exam", kwargs={"pk": sa}), reverse("web:api_study", kwargs={"pk": sa}),
                reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{sa}"})):
        assert c.get(url).status_code == 404
    assert [x for x in _new_rows(before) if x.action in ("view", "export", "api_read")] == []

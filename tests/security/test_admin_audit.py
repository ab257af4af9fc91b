"""Issue #18: the Django admin's views of patient data (alerts, e-mails with their bodies, exposure windows,
merges, staff alerts, retained originals) are audited with the patients they show, like the app's pages."""
from __future__ import annotations

from django.contrib import admin
from django.test import Client
from django.urls import reverse

from dosereg.audit.admin import PatientAuditAdminMixin
from dosereg.audit.models import AuditEvent
from dosereg.exposure.models import Alert, PatientExposureWindow
from dosereg.notifications.models import Notification
from dosereg.registry.models import DoseObject, Patient, Study

from .conftest import web_data  # noqa: F401

PATIENT_DATA = (Patient, Study, DoseObject)


def _shows_patient_data(model) -> bool:
    if model is Notification:  # alert e-mails: patient ID, name and doses in subject and body
        return True
    return any(f.is_relation and f.concrete and f.related_model in PATIENT_DATA for f in model._meta.get_fields())


def test_every_admin_of_patient_data_is_audited():
    covered = [m._meta.label for m in admin.site._registry if _shows_patient_data(m)]
    assert {"exposure.Alert", "notifications.Notification", "exposure.PatientExposureWindow"} <= set(covered)
    missing = [m._meta.label for m, a in admin.site._registry.items()
               if _shows_patient_data(m) and not isinstance(a, PatientAuditAdminMixin)]
    assert not missing, f"admins showing patient data without PatientAuditAdminMixin: {missing}"


def _last() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def _rows(before: int, object_type: str):
    return list(AuditEvent.objects.filter(pk__gt=before, object_type=object_type))


def test_alert_admin_list_and_change_form_are_audited_with_their_patients(web_data):
    c = Client()
    c.force_login(web_data.users["admin"])
    want = set(Alert.objects.values_list("patient_id", flat=True))
    assert want
    before = _last()
    assert c.get(reverse("admin:exposure_alert_changelist")).status_code == 200
    rows = _rows(before, "admin_alert")
    assert {r.patient_pk for r in rows} == want and {r.action for r in rows} == {"view"}
    assert all(r.username == "t-admin" and r.detail["admin"] == "changelist" for r in rows)
    alert = Alert.objects.first()
    before = _last()
    assert c.get(reverse("admin:exposure_alert_change", args=[alert.pk])).status_code == 200
    rows = _rows(before, "admin_alert")
    assert [(r.patient_pk, r.object_id, r.action) for r in rows] == [(alert.patient_id, str(alert.pk), "view")]
    before = _last()
    assert c.get(reverse("admin:exposure_alert_history", args=[alert.pk])).status_code == 200
    assert [r.patient_pk for r in _rows(before, "admin_alert")] == [alert.patient_id]


def test_notification_admin_is_audited_with_the_alert_patient(web_data):
    alert = Alert.objects.first()
    n = Notification.objects.create(dedupe_key=f"exposure-alert:{alert.pk}", recipient="rso@example.org",
                                    subject="[dosereg] alert", body="Patient PW0001 Alpha^Ann: 3.6 Gy",
                                    status=Notification.STATUS_SENT)
    digest = Notification.objects.create(dedupe_key="digest:x", recipient="rso@example.org", subject="digest",
                                         body="... Alpha^Ann ...", status=Notification.STATUS_SENT)
    Notification.objects.create(dedupe_key=f"exposure-alert:{alert.pk}:follow-up-due:2026-01-01",
                                recipient="rso@example.org", subject="due", body="x",
                                status=Notification.STATUS_DIGESTED, digested_in=digest)
    c = Client()
    c.force_login(web_data.users["admin"])
    before = _last()
    assert c.get(reverse("admin:notifications_notification_changelist")).status_code == 200
    assert alert.patient_id in {r.patient_pk for r in _rows(before, "admin_notification")}
    for obj in (n, digest):  # a digest shows the e-mails it bundles
        before = _last()
        assert c.get(reverse("admin:notifications_notification_change", args=[obj.pk])).status_code == 200
        assert [r.patient_pk for r in _rows(before, "admin_notification")] == [alert.patient_id], obj.dedupe_key


def test_exposure_window_admin_and_non_patient_admin(web_data):
    c = Client()
    c.force_login(web_data.users["admin"])
    want = set(PatientExposureWindow.objects.values_list("patient_id", flat=True))
    before = _last()
    assert c.get(reverse("admin:exposure_patientexposurewindow_changelist")).status_code == 200
    assert {r.patient_pk for r in _rows(before, "admin_patientexposurewindow")} == (want or {None})
    before = _last()  # an admin page without patient data writes nothing
    assert c.get(reverse("admin:exposure_rule_changelist")).status_code == 200
    assert not AuditEvent.objects.filter(pk__gt=before).exists()


def test_a_refused_admin_page_writes_no_read_row(web_data):
    c = Client()
    c.force_login(web_data.users["rso"])  # not staff: the admin sends it to its login
    before = _last()
    r = c.get(reverse("admin:exposure_alert_changelist"))
    assert r.status_code in (302, 403)
    assert not AuditEvent.objects.filter(pk__gt=before, object_type="admin_alert").exists()

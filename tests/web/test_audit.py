"""Every view, export and API read of patient-identifying data writes an audit row; logins too."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dosereg.audit.models import AuditEvent

from .data import PASSWORD


def _cases(d):
    a, sa = d.patients["a"], d.studies["a_angio"]
    return [
        # role, url, object_type, expected patient pk (None: not checked), action
        ("rso", reverse("web:dashboard"), "dashboard", a.pk, "view"),
        ("rso", reverse("web:patient_list") + "?q=PW", "patient_list", a.pk, "view"),
        ("rso", reverse("web:patient_history", kwargs={"pk": a.pk}), "patient", a.pk, "view"),
        ("physicist", reverse("web:patient_history_export", kwargs={"pk": a.pk}), "patient", a.pk, "export"),
        ("physicist", reverse("web:study_detail", kwargs={"pk": sa.pk}), "study", a.pk, "view"),
        ("patient", reverse("web:portal"), "portal", a.pk, "view"),
        ("patient", reverse("web:portal_exam", kwargs={"pk": sa.pk}), "portal_exam", a.pk, "view"),
        ("patient", reverse("web:portal_export"), "portal", a.pk, "export"),
        ("patient", reverse("web:portal_print"), "portal", a.pk, "export"),
        ("patient", reverse("web:portal_pdf"), "portal", a.pk, "export"),
        ("physicist", reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "csv"}), "protocol_export", None, "export"),
        ("physicist", reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "xlsx"}), "protocol_export", None, "export"),
        ("physicist", reverse("web:protocol_export", kwargs={"kind": "events", "fmt": "csv"}), "protocol_export", None, "export"),
        ("physicist", reverse("web:protocol_export", kwargs={"kind": "summary", "fmt": "xlsx"}), "protocol_export", None, "export"),
        ("admin", reverse("web:api_studies"), "study", a.pk, "api_read"),
        ("admin", reverse("web:api_study", kwargs={"pk": sa.pk}), "study", a.pk, "api_read"),
        ("admin", reverse("web:api_study_events", kwargs={"pk": sa.pk}), "event", a.pk, "api_read"),
        ("admin", reverse("web:api_events") + f"?study={sa.pk}", "event", a.pk, "api_read"),
        ("admin", reverse("web:api_patients"), "patient", a.pk, "api_read"),
        ("patient", reverse("web:api_patient", kwargs={"pk": a.pk}), "patient", a.pk, "api_read"),
        ("rso", reverse("web:api_alerts"), "alert", a.pk, "api_read"),
        ("patient", reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{sa.pk}"}), "fhir_observation", a.pk, "api_read"),
        ("rso", reverse("web:api_fhir_search") + f"?patient={a.pk}", "fhir_observation", a.pk, "api_read"),
    ]


def test_each_patient_data_read_is_audited(web_data, client):
    d = web_data
    for role, url, object_type, patient_pk, action in _cases(d):
        client.force_login(d.users[role])
        before = AuditEvent.objects.count()
        resp = client.get(url, REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT="pytest-agent")
        assert resp.status_code == 200, (url, resp.status_code)
        if hasattr(resp, "streaming_content"):
            b"".join(resp.streaming_content)
        rows = list(AuditEvent.objects.filter(pk__gt=0).order_by("-pk")[: AuditEvent.objects.count() - before])
        assert rows, f"no audit row for {url}"
        assert all(r.username == d.users[role].username and r.action == action and r.object_type == object_type
                   and r.ip == "10.1.2.3" and r.user_agent == "pytest-agent" and r.path.startswith(url.split("?")[0])
                   for r in rows), (url, [(r.username, r.action, r.object_type, r.ip) for r in rows])
        assert role in rows[0].roles
        if patient_pk is not None:
            assert patient_pk in {r.patient_pk for r in rows}, url


def test_denied_requests_write_no_read_rows(web_data, client):
    client.force_login(web_data.users["staff"])
    before = AuditEvent.objects.exclude(action="login").count()
    assert client.get(reverse("web:patient_history", kwargs={"pk": web_data.patients["a"].pk})).status_code == 403
    assert AuditEvent.objects.exclude(action="login").count() == before


def test_failed_logins_are_audited_and_lock_the_account(web_data, client, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 3
    url = reverse("web:login")
    for _ in range(3):
        r = client.post(url, {"username": "t-rso", "password": "wrong"}, REMOTE_ADDR="10.9.9.9")
        assert r.status_code == 200
    assert AuditEvent.objects.filter(action="login_failed", username="t-rso", ip="10.9.9.9").count() == 3
    # locked: even the right password is refused without being tried
    r = client.post(url, {"username": "t-rso", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert r.status_code == 429 and b"Too many failed" in r.content
    assert "_auth_user_id" not in client.session
    # the API token endpoint shares the lockout (per user name and address)
    r = client.post(reverse("web:api_token"), {"username": "t-rso", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert r.status_code == 429
    # after the lockout window the account works again
    AuditEvent.objects.filter(action="login_failed").update(at=timezone.now() - timedelta(hours=1))
    r = client.post(url, {"username": "t-rso", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert r.status_code == 302
    assert AuditEvent.objects.filter(action="login", username="t-rso").exists()


def test_admin_can_search_the_trail(web_data, client):
    d = web_data
    client.force_login(d.users["rso"])
    client.get(reverse("web:patient_history", kwargs={"pk": d.patients["b"].pk}), REMOTE_ADDR="10.7.7.7")
    client.force_login(d.users["admin"])
    html = client.get(reverse("web:audit_log") + f"?patient={d.patients['b'].pk}&user=t-rso").content.decode()
    assert "t-rso" in html and "10.7.7.7" in html
    html = client.get(reverse("web:audit_log") + "?ip=10.7.7.7&action=view&object_type=patient").content.decode()
    assert f"patient:{d.patients['b'].pk}" in html
    assert "t-admin" not in client.get(reverse("web:audit_log") + "?user=t-rso").content.decode().split("<tbody>")[1]


def test_audit_rows_are_read_only_in_the_admin(web_data, client):
    client.force_login(web_data.users["admin"])
    ev = AuditEvent.objects.first()
    assert client.get(reverse("admin:audit_auditevent_changelist")).status_code == 200
    assert client.post(reverse("admin:audit_auditevent_delete", args=[ev.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=ev.pk).exists()

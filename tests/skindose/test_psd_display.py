"""Where people see the peak skin dose (issue 15 part 6): the patient history (per procedure, cumulative and per
period, summed maps where the geometry allows), the patient portal (plain-language skin-reaction text above the first
PSD level) and FHIR. Summing maps (``dosereg.skindose.summing``) is checked against hand-made grids."""
from __future__ import annotations

import datetime as dt
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.rdsr import builder as b
from dosereg.skindose import summing
from dosereg.skindose.models import StudySkinDose
from dosereg.skindose.services import study_skin_dose_compute

from .test_skin_pages import _geometry_event

UTC = dt.timezone.utc


# ---------------------------------------------------------------------------
# summing maps (pure)
# ---------------------------------------------------------------------------
def _proc(sid, day, doses, *, phantom="plane", orientation="head_first_supine", xs=None):
    n = len(doses)
    cells = {"x_cm": xs or [float(i) for i in range(n)], "y_cm": [0.0] * n, "z_cm": [0.0] * n, "dose_gy": doses}
    return summing.ProcedureSkinDose(study_id=sid, at=dt.datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day),
                                     psd_gy=max(doses), phantom=phantom, orientation=orientation, cells=cells)


def test_maps_on_the_same_skin_add_cell_by_cell():
    a, b_ = _proc(1, 0, [1.0, 2.0, 0.0]), _proc(2, 10, [0.0, 1.5, 2.5])
    s = summing.sum_procedures([a, b_], with_cells=True)
    assert s.method == summing.METHOD_SUMMED_MAP and s.peak_gy == pytest.approx(3.5)  # cell 2: 2.0 + 1.5
    assert s.cells["dose_gy"] == [1.0, 3.5, 2.5] and "cell by cell" in s.label
    # non-overlapping fields: the maximum, not the sum of the PSDs
    c, d = _proc(3, 0, [2.0, 0.0]), _proc(4, 5, [0.0, 2.0])
    assert summing.sum_procedures([c, d]).peak_gy == pytest.approx(2.0)


@pytest.mark.parametrize("other, reason", [
    (dict(phantom="cylinder"), "different phantoms"),
    (dict(orientation="feet_first_supine"), "different patient orientations"),
    (dict(xs=[0.0, 1.0, 5.0]), "different skin cell grids"),
])
def test_maps_on_other_geometry_give_the_conservative_psd_sum_labelled(other, reason):
    a, b_ = _proc(1, 0, [1.0, 2.0, 0.0]), _proc(2, 10, [0.0, 1.5, 2.5], **other)
    s = summing.sum_procedures([a, b_])
    assert s.method == summing.METHOD_PSD_SUM and s.peak_gy == pytest.approx(4.5)  # 2.0 + 2.5
    assert "conservative" in s.label and "upper bound" in s.label and any(reason in r for r in s.reasons)


def test_a_procedure_without_a_psd_is_listed_not_counted():
    a = _proc(1, 0, [1.0, 2.0])
    missing = summing.ProcedureSkinDose(study_id=9, at=a.at, psd_gy=None)
    s = summing.sum_procedures([a, missing])
    assert s.peak_gy == 2.0 and s.not_computable == [9] and s.study_ids == [1, 9]


def test_the_worst_period_is_chosen_and_periods_are_closed_at_both_ends():
    procs = [_proc(1, 0, [1.0]), _proc(2, 60, [1.0]), _proc(3, 200, [3.0]), _proc(4, 261, [0.5])]
    w60 = summing.worst_window(procs, 60)
    assert w60.study_ids == [1, 2] and w60.peak_gy == pytest.approx(2.0)  # exactly 60 days apart: inside
    w365 = summing.worst_window(procs, 365)
    assert w365.study_ids == [1, 2, 3, 4] and w365.peak_gy == pytest.approx(5.5)
    assert summing.worst_window([_proc(1, 0, [1.0]), _proc(2, 61, [1.0])], 60) is None  # never two in 60 days


# ---------------------------------------------------------------------------
# through the registry
# ---------------------------------------------------------------------------
def _study(tmp_path, *, patient_id, when, n, **event):
    from dosereg.pipeline.flow import file_import

    spec = b.ProjectionRDSRSpec(study_datetime=when, manufacturer="Siemens", model="AXIOM-Artis", patient_id=patient_id,
                                patient_name="Skin^History", birth_date=dt.date(1960, 5, 5),
                                institution="Northfield General Hospital",
                                events=[_geometry_event(**event) for _ in range(n)])
    path = b.write(b.build_projection_rdsr(spec), tmp_path / f"{patient_id}-{when:%Y%m%d}.dcm")
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    study_skin_dose_compute(study_id=obj.study_id)  # what the skin task does
    return obj.study


@pytest.fixture
def two_procedures(tmp_path, db):
    """Two procedures 30 days apart on the same geometry (their maps add) and one without geometry."""
    s1 = _study(tmp_path, patient_id="HIST-1", when=dt.datetime(2026, 9, 1, 9), n=6)
    s2 = _study(tmp_path, patient_id="HIST-1", when=dt.datetime(2026, 10, 1, 9), n=4)
    s3 = _study(tmp_path, patient_id="HIST-1", when=dt.datetime(2026, 10, 15, 9), n=2, table_height_position_mm=None)
    return s1, s2, s3


@pytest.mark.django_db
def test_patient_history_shows_psd_per_procedure_cumulative_and_the_summed_map(two_procedures, client):
    from dosereg.web.services import user_create
    from tests.web.data import ensure_seed_data

    s1, s2, s3 = two_procedures
    r1, r2 = (StudySkinDose.objects.get(study=s) for s in (s1, s2))
    assert r1.computable and r2.computable and not StudySkinDose.objects.get(study=s3).computable
    ensure_seed_data()
    client.force_login(user_create(username="hist-rso", password="x-Long-Pass-123", role="rso"))
    html = client.get(f"/patients/{s1.patient_id}/").content.decode()
    section = html.split('id="skin-history"')[1].split("</section>")[0]
    total = r1.psd_gy + r2.psd_gy
    assert f"{total:.3g}" in section and "conservative sum" in section
    assert "1 procedure without an estimate" in section
    # the 60-day period holds both procedures: their maps (same phantom and orientation) added cell by cell, at most
    # the sum of their PSDs, at least the larger one
    summed = summing.sum_procedures([summing.ProcedureSkinDose(s.study_id, s.study.study_datetime, s.psd_gy, s.phantom,
                                                               s.patient_orientation, s.map_cells) for s in (r1, r2)])
    assert summed.method == "summed_map" and max(r1.psd_gy, r2.psd_gy) <= summed.peak_gy <= total + 1e-9
    row60 = section.split('data-period="60"')[1].split("</tr>")[0]
    assert f"{summed.peak_gy:.3g}" in row60 and "cell by cell" in row60
    png = client.get(f"/patients/{s1.patient_id}/skin-map-60d.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/patients/{s1.patient_id}/skin-map-90d.png").status_code == 404
    # per procedure, in the exams table
    exams = html.split("in time order")[1]
    assert exams.count("data-psd>") == 3 and f"{r1.psd_gy:.3g}" in exams and "n/c" in exams


@pytest.mark.django_db
def test_the_portal_explains_skin_reactions_above_the_first_level_only(tmp_path, client, settings):
    from django.contrib.auth.models import User

    from dosereg.web.models import PatientAccount
    from dosereg.web.services import user_create
    from tests.web.data import ensure_seed_data

    settings.DOSEREG_PORTAL_SKIN_CONTACT = "the interventional radiology nurses on 0123 456 789"
    high = _study(tmp_path, patient_id="PORTAL-SKIN", when=dt.datetime(2026, 11, 2, 9), n=12)
    low = _study(tmp_path, patient_id="PORTAL-SKIN", when=dt.datetime(2026, 11, 20, 9), n=1)
    psd_high, psd_low = (StudySkinDose.objects.get(study=s).psd_gy for s in (high, low))
    assert psd_high >= 2.0 > psd_low
    ensure_seed_data()
    user = user_create(username="skin-patient", password="x-Long-Pass-123", role="patient")
    PatientAccount.objects.create(patient_id=high.patient_id, user=User.objects.get(pk=user.pk), token_sha256="t" * 64,
                                  expires_at=timezone.now() + timedelta(days=1), verified_at=timezone.now())
    client.force_login(user)
    listing = client.get("/portal/").content.decode()
    assert listing.count("data-skin-note") == 1 and f"/portal/exams/{high.pk}/#skin-reactions" in listing
    page = client.get(f"/portal/exams/{high.pk}/").content.decode()
    note = page.split('id="skin-reactions"')[1].split("</section>")[0]
    assert "reddening" in note and "weeks" in note  # what it looks like, when it appears
    assert "interventional radiology nurses on 0123 456 789" in note and "Northfield General Hospital" in note
    assert "2 November 2026" in note
    assert f"{psd_high:.2g} Gy (gray" in note and "estimate" in note  # a number with its meaning
    assert "What this dose can mean" in note
    assert 'id="skin-reactions"' not in client.get(f"/portal/exams/{low.pk}/").content.decode()
    # the printable page and the PDF carry the same note, once (the high-dose exam only)
    printed = client.get("/portal/print/").content.decode()
    assert printed.count("data-skin-note") == 1 and "interventional radiology nurses on 0123 456 789" in printed
    assert "reddening" in printed.split("data-skin-note")[1]
    resp = client.get("/portal/my-exams.pdf")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/pdf"
    from pypdf import PdfReader

    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages)
    text = " ".join(text.split())
    assert text.count("About your skin after this procedure") == 1, text[:2000]
    assert "0123 456 789" in text and "Whom to call" in text


@pytest.mark.django_db
def test_fhir_carries_the_psd_or_why_it_is_missing(two_procedures, client):
    """The PSD is its own Observation, derived from the study's RadiationDoseSummary (whose components stay the IG's
    DICOM-coded dose indices), and included in searches."""
    from dosereg.web.services import user_create
    from tests.web.data import ensure_seed_data

    s1, _, s3 = two_procedures
    ensure_seed_data()
    client.force_login(user_create(username="fhir-rso", password="x-Long-Pass-123", role="rso"))
    summary = client.get(f"/api/v1/fhir/Observation/dose-summary-{s1.pk}").json()
    assert all(c["code"]["coding"][0]["system"] == "http://dicom.nema.org/resources/ontology/DCM"
               for c in summary["component"])
    r = client.get(f"/api/v1/fhir/Observation/peak-skin-dose-{s1.pk}")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/fhir+json")
    obs = r.json()
    row = StudySkinDose.objects.get(study=s1)
    assert obs["resourceType"] == "Observation" and obs["code"]["coding"][0]["code"] == "peak-skin-dose-estimate"
    assert obs["valueQuantity"]["unit"] == "Gy" and obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert obs["valueQuantity"]["value"] == pytest.approx(row.psd_gy, rel=1e-3)
    assert obs["derivedFrom"] == [{"reference": f"Observation/dose-summary-{s1.pk}"}]
    assert obs["subject"] == {"reference": f"Patient/{s1.patient_id}"}
    assert obs["method"]["text"].startswith("PySkinDose") and obs["bodySite"]["text"] == row.psd_location["description"]
    assert obs["note"][0]["text"] == row.uncertainty
    missing = client.get(f"/api/v1/fhir/Observation/peak-skin-dose-{s3.pk}").json()
    assert "valueQuantity" not in missing and missing["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "not computable" in missing["dataAbsentReason"]["text"] and "not a skin dose" in missing["note"][0]["text"]
    bundle = client.get(f"/api/v1/fhir/Observation?code=73569-6&patient=Patient/{s1.patient_id}").json()
    assert bundle["total"] == 3
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert sorted(e["resource"]["id"] for e in included) == sorted(f"peak-skin-dose-{s.pk}" for s in two_procedures)

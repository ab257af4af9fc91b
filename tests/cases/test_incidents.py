"""The incident register: versioned reportable-event rules with sources, the skin-dose basis (PSD where recorded or computed,
Ka,r otherwise, and which), physicist sign-off, notes, the regulator's reference, CSV per year."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from dosereg.cases.incidents import rules_met, skin_dose_basis
from dosereg.cases.models import Case, CaseEvent, Incident, ReportableRule
from dosereg.cases.services import case_close
from tests.exposure.builders import rf_rdsr

pytestmark = pytest.mark.django_db


def test_default_rules_are_versioned_and_cited():
    rules = {r.key: r for r in ReportableRule.objects.filter(active=True)}
    assert rules["tjc-fluoro-15gy"].threshold == 15 and rules["tjc-fluoro-15gy"].version == 1
    assert "Joint Commission" in rules["tjc-fluoro-15gy"].jurisdiction and "1500 rad" in rules["tjc-fluoro-15gy"].source
    assert "2013/59/Euratom" in rules["euratom-art63"].source and "Art. 63" in rules["euratom-art63"].source
    assert all(r.source and r.verification for r in rules.values())


def test_16_gy_procedure_reaches_the_15_gy_review_level_and_walks_the_register(tmp_path, import_file, client, rso, physicist):
    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=3), kar=16.6, kap=900, patient_id="INC-1"))
    case = Case.objects.get(kind="procedure")
    basis, value, how = skin_dose_basis(case)
    assert basis == "kar" and value == pytest.approx(16.6) and "no peak skin dose" in how
    assert [m["rule"].key for m in rules_met(case)] == ["tjc-fluoro-15gy"]
    client.force_login(rso)
    page = client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).content.decode()
    assert "data-rule-met" in page and "15 Gy" in page
    act = lambda a, **data: client.post(reverse("cases:incident_action", kwargs={"case_id": case.pk, "action": a}), data)  # noqa: E731
    assert act("sign_off", note="x").status_code == 403  # an RSO does not sign off for the physicist
    act("declare", rule="tjc-fluoro-15gy", note="16.6 Gy Ka,r in one procedure")
    inc = Incident.objects.get()
    assert inc.number == f"{timezone.localdate().year}-0001" and inc.category == "tissue_reaction"
    assert inc.rule_snapshot["key"] == "tjc-fluoro-15gy" and inc.rule_snapshot["version"] == 1 and inc.dose_basis == "kar"
    act("note", note="operator interviewed; long run at one projection")
    client.force_login(physicist)
    assert act("declare", note="x").status_code == 403  # physicists read and sign off, do not declare
    act("sign_off", note="PSD estimate pending; Ka,r overstates")
    client.force_login(rso)
    act("report", reference="REG-2026-117", reported_at="2026-12-01")
    inc.refresh_from_db()
    assert inc.signed_off_by == physicist and inc.status == "reported" and inc.regulator_reference == "REG-2026-117"
    assert "operator interviewed" in inc.investigation_notes
    actions = list(CaseEvent.objects.filter(case=case).values_list("action", flat=True))
    assert ["incident_declared", "incident_note", "physicist_sign_off", "regulator_reference"] == [a for a in actions if "incident" in a or a in ("physicist_sign_off", "regulator_reference")]
    html = client.get(reverse("cases:incidents")).content.decode()
    assert inc.number in html and "Ka,r" in html
    text = client.get(reverse("cases:incidents_export") + f"?year={inc.year}").content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][0] == inc.number and rows[1][12] == "Ka,r (no PSD)" and rows[1][18] == "REG-2026-117"
    assert len(list(csv.reader(io.StringIO(client.get(reverse("cases:incidents_export") + "?year=2001").content.decode())))) == 1


def test_recorded_peak_skin_dose_is_the_basis(tmp_path, import_file, rso):
    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=3), kar=16.0, kap=900, patient_id="INC-2"))
    case = Case.objects.get(kind="procedure")
    case_close(case_id=case.pk, user=rso, data={"skin_reaction": "none", "psd_gy": "9.5"})
    case.refresh_from_db()
    assert skin_dose_basis(case)[:2] == ("psd", 9.5)
    assert rules_met(case) == []  # 9.5 Gy PSD: below the 15 Gy level, whatever Ka,r says


def test_the_computed_peak_skin_dose_is_the_basis_until_a_physicist_records_one(tmp_path, import_file, rso):
    from dosereg.skindose.models import StudySkinDose

    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=3), kar=16.0, kap=900, patient_id="INC-3"))
    case = Case.objects.get(kind="procedure")
    assert skin_dose_basis(case)[0] == "kar"
    StudySkinDose.objects.update_or_create(study_id=case.study_id, defaults={"computable": True, "psd_gy": 7.2,
                                                                           "phantom": "cylinder"})
    basis, value, how = skin_dose_basis(case)
    assert (basis, value) == ("psd", 7.2) and "computed" in how and "cylinder" in how
    assert rules_met(case) == []  # 7.2 Gy PSD: below the 15 Gy review level although Ka,r is 16 Gy
    case_close(case_id=case.pk, user=rso, data={"skin_reaction": "none", "psd_gy": "15.5"})
    case.refresh_from_db()
    assert skin_dose_basis(case)[:2] == ("psd", 15.5)  # the physicist's estimate comes first


def _pdf_text(body: bytes) -> str:
    from pypdf import PdfReader

    assert body.startswith(b"%PDF-")
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages)


def _declare(client, case, **data):
    r = client.post(reverse("cases:incident_action", kwargs={"case_id": case.pk, "action": "declare"}), data)
    assert r.status_code == 302
    return Incident.objects.get(case=case)


def test_one_incident_exports_as_csv_and_pdf_saying_ka_r_was_used(tmp_path, import_file, client, rso, physicist):
    from dosereg.audit.models import AuditEvent

    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=3), kar=16.6, kap=900, patient_id="INC-X1"))
    case = Case.objects.get(kind="procedure")
    client.force_login(rso)
    inc = _declare(client, case, rule="tjc-fluoro-15gy", note="16.6 Gy Ka,r in one procedure")
    page = client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).content.decode()
    assert reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "pdf"}) in page
    # CSV: one row, the basis named and explained
    r = client.get(reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "csv"}))
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert f'dosereg-incident-{inc.number}.csv' in r["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode())))
    assert len(rows) == 2 and rows[0][12] == "dose_basis" and rows[0][-1] == "dose_basis_note"
    assert rows[1][0] == inc.number and rows[1][10] == "INC-X1" and rows[1][12] == "Ka,r (no PSD)" and rows[1][13] == "16.6"
    assert "No peak skin dose estimate was recorded" in rows[1][-1] and "Ka,r is not the skin dose" in rows[1][-1]
    # PDF: the same, readable
    r = client.get(reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "pdf"}))
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf"
    text = " ".join(_pdf_text(r.content).split())
    assert f"Incident {inc.number}" in text and "INC-X1" in text and "16.6 Gy" in text
    assert "Skin dose basis: Ka,r (reference air kerma; no PSD estimate recorded): 16.6 Gy" in text
    assert "Fluoroscopy skin dose review level: 15 Gy to a single field (v1, level 15 Gy)" in text
    assert "The Joint Commission" in text and "16.6 Gy Ka,r in one procedure" in text and "Physicist sign-off: pending" in text
    # audited as exports of this patient's data
    ev = AuditEvent.objects.filter(action=AuditEvent.ACTION_EXPORT, object_type__in=["incident_csv", "incident_pdf"])
    assert sorted(ev.values_list("object_type", flat=True)) == ["incident_csv", "incident_pdf"]
    assert set(ev.values_list("patient_pk", flat=True)) == {case.patient_id}
    # physicists read it too; a case that is no incident, or an unknown format, is not found
    client.force_login(physicist)
    assert client.get(reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "pdf"})).status_code == 200
    assert client.get(reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "xlsx"})).status_code == 404
    Incident.objects.filter(pk=inc.pk).delete()
    assert client.get(reverse("cases:incident_file", kwargs={"case_id": case.pk, "fmt": "csv"})).status_code == 404


def test_the_year_register_pdf_lists_each_incident_with_psd_or_ka_r(tmp_path, import_file, client, rso):
    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=3), kar=16.0, kap=900, patient_id="INC-PSD"))
    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=2), kar=17.2, kap=950, patient_id="INC-KAR"))
    psd_case = Case.objects.get(kind="procedure", patient__patient_id="INC-PSD")
    kar_case = Case.objects.get(kind="procedure", patient__patient_id="INC-KAR")
    case_close(case_id=psd_case.pk, user=rso, data={"skin_reaction": "observed", "skin_grade": "1", "psd_gy": "9.5"})
    client.force_login(rso)
    psd_inc = _declare(client, psd_case, category="tissue_reaction", note="transient erythema after a long ablation")
    kar_inc = _declare(client, kar_case, rule="tjc-fluoro-15gy", note="17 Gy Ka,r")
    assert (psd_inc.dose_basis, kar_inc.dose_basis) == ("psd", "kar")
    year = timezone.localdate().year
    html = client.get(reverse("cases:incidents") + f"?year={year}").content.decode()
    assert f"{reverse('cases:incidents_pdf')}?year={year}" in html
    r = client.get(reverse("cases:incidents_pdf") + f"?year={year}")
    assert r.status_code == 200 and r["Content-Type"] == "application/pdf" and f"dosereg-incidents-{year}.pdf" in r["Content-Disposition"]
    text = " ".join(_pdf_text(r.content).split())
    assert f"Incident register {year}" in text and "2 incident(s)" in text
    assert psd_inc.number in text and kar_inc.number in text and "INC-PSD" in text and "INC-KAR" in text
    assert "Skin dose basis: Peak skin dose (PSD) estimate: 9.5 Gy" in text and "assessed on the PSD, not on Ka,r" in text
    assert "Skin dose basis: Ka,r (reference air kerma; no PSD estimate recorded): 17.2 Gy" in text
    # CSV per year says the same
    rows = list(csv.reader(io.StringIO(client.get(reverse("cases:incidents_export") + f"?year={year}").content.decode())))
    assert {(r[0], r[12], r[13]) for r in rows[1:]} == {(psd_inc.number, "peak skin dose", "9.5"), (kar_inc.number, "Ka,r (no PSD)", "17.2")}
    # another year: an empty register
    empty = " ".join(_pdf_text(client.get(reverse("cases:incidents_pdf") + "?year=2001").content).split())
    assert "Incident register 2001" in empty and "No incidents." in empty and psd_inc.number not in empty

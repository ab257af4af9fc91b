"""The incident register: versioned reportable-event rules with sources, the skin-dose basis (PSD where recorded,
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

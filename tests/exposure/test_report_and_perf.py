"""exposure_report --json, and recompute in a fixed number of queries."""
from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dosereg.exposure.recompute import patient_exposure_recompute
from dosereg.registry.models import Patient, Study
from tests.exposure.builders import rf_rdsr

pytestmark = pytest.mark.django_db
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def test_exposure_report_json(tmp_path, import_file):
    import_file(rf_rdsr(tmp_path, when=D0, kar=6.0, kap=120, patient_id="REP-1"))
    import_file(rf_rdsr(tmp_path, when=D0 + dt.timedelta(days=1), kar=0.5, kap=20, patient_id="REP-1"))
    out = StringIO()
    call_command("exposure_report", "--patient", "REP-1", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["patient"]["patient_id"] == "REP-1"
    assert len(data["studies"]) == 2
    latest = [w for w in data["windows"] if w["window_days"] == 84 and w["anchor"] == "study"][-1]
    assert latest["kap_gy_cm2"] == pytest.approx(140) and latest["kar_max_gy"] == pytest.approx(6.5)
    assert latest["effective_dose_label"].startswith("population-average estimate")
    assert {a["rule_key"] for a in data["alerts"]["open"]} >= {"fgi-kar-srdl", "cum-kar-12w-srdl"}
    assert data["alerts"]["closed"] == []
    text = StringIO()
    call_command("exposure_report", "--patient", "REP-1", stdout=text)
    assert "Alerts open" in text.getvalue()
    # the text goes through dosereg.formatting: units with every number, Ka,r in Gy whatever its size
    assert "KAP 120 Gy·cm²  Ka,r 6 Gy  Fluoro time 1:00 min:s  DLP —" in text.getvalue()
    assert "Ka,r 0.5 Gy" in text.getvalue()
    assert "KAP 140 Gy·cm²  Ka,r 6.5 Gy" in text.getvalue()  # the 84-day window ending now


def _bulk_patient(n: int) -> Patient:
    p = Patient.objects.create(patient_id="BULK-1")
    Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.{i}", patient=p, study_datetime=D0 - dt.timedelta(days=3 * i), procedure_modality="RF",
              dap_total_gy_cm2=10.0 + i % 7, dose_rp_max_plane_gy=0.1, fluoro_time_total_s=120.0, event_count=1)
        for i in range(n)
    ])
    return p


@pytest.mark.parametrize("n", [20, 200])
def test_recompute_query_count_does_not_grow_with_studies(n):
    p = _bulk_patient(n)
    patient_exposure_recompute(patient_id=p.pk)  # cold: per-study facts derived in bulk
    with CaptureQueriesContext(connection) as ctx:
        patient_exposure_recompute(patient_id=p.pk)
    warm = len(ctx.captured_queries)
    Study.objects.filter(patient=p).update(dap_total_gy_cm2=1.0, updated_at=dt.datetime.now(dt.timezone.utc))
    with CaptureQueriesContext(connection) as ctx:
        res = patient_exposure_recompute(patient_id=p.pk)
    changed = len(ctx.captured_queries)
    assert res.refreshed_studies == n
    # fixed numbers, whatever n is (SQLite may split a very large bulk insert into batches)
    assert warm <= 12, [q["sql"][:80] for q in ctx.captured_queries]
    limit = 20 if connection.vendor == "postgresql" else 20 + (n * 3 * 15) // 999
    assert changed <= limit, [q["sql"][:80] for q in ctx.captured_queries]


def test_recompute_skips_when_inputs_unchanged_and_redoes_when_they_change():
    from dosereg.exposure.models import PatientExposureWindow, Rule

    p = Patient.objects.create(patient_id="SKIP-1")
    Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.77{i}", patient=p, study_datetime=D0 - dt.timedelta(days=10 * i), procedure_modality="RF",
              dap_total_gy_cm2=10.0, dose_rp_max_plane_gy=0.1, fluoro_time_total_s=60.0, event_count=1)
        for i in range(3)
    ])
    now = D0 + dt.timedelta(days=1)
    assert not patient_exposure_recompute(patient_id=p.pk, now=now).skipped
    again = patient_exposure_recompute(patient_id=p.pk, now=now + dt.timedelta(hours=1))
    assert again.skipped and again.studies == 3
    # the oldest study (D0 - 20 d) leaves the 60-day window ending now at D0 + 40 d: no longer skipped
    later = patient_exposure_recompute(patient_id=p.pk, now=D0 + dt.timedelta(days=41))
    assert not later.skipped
    now_60 = PatientExposureWindow.objects.get(patient=p, anchor_study__isnull=True, window_days=60)
    assert now_60.procedure_count == 2
    # a changed study row or rule is new input
    Study.objects.filter(patient=p).update(dap_total_gy_cm2=11.0)
    assert not patient_exposure_recompute(patient_id=p.pk, now=D0 + dt.timedelta(days=41)).skipped
    assert patient_exposure_recompute(patient_id=p.pk, now=D0 + dt.timedelta(days=41)).skipped
    Rule.objects.filter(key="fgi-kap-first").update(threshold_value=25.0)
    res = patient_exposure_recompute(patient_id=p.pk, now=D0 + dt.timedelta(days=41))
    assert not res.skipped
    # going back in time is never skipped
    assert not patient_exposure_recompute(patient_id=p.pk, now=D0).skipped

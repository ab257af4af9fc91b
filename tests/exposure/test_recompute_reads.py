"""What a recompute reads. A worker keeps the active rules and effective-dose factors between recomputes while
their stamp (read in the patient-lock statement) is unchanged; any edit, even one that bypasses ``save()``, is seen
by the next recompute. The group's existing alerts are read only when an alert names the patient or one of its
studies."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dosereg.exposure import recompute
from dosereg.exposure.models import Alert, EffectiveDoseFactor, Rule, StudyExposure
from tests.conftest import require
from tests.exposure.builders import ct_rdsr, rf_rdsr

pytestmark = pytest.mark.django_db
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def _rule_reads(queries) -> int:
    return sum(1 for q in queries if 'FROM "exposure_rule"' in q["sql"])


def test_a_rule_edited_without_save_applies_to_the_next_recompute(tmp_path, import_file):
    a = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-A"))
    assert Alert.objects.filter(patient_id=a.study.patient_id, rule_key="fgi-kar-first").exists()
    assert not Alert.objects.filter(rule_key="fgi-kar-srdl").exists()  # 5 Gy
    Rule.objects.filter(ruleset__active=True, key="fgi-kar-srdl").update(threshold_value=3.5)  # no save(), no signal
    b = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-B"))
    assert Alert.objects.filter(patient_id=b.study.patient_id, rule_key="fgi-kar-srdl").exists()
    Rule.objects.filter(ruleset__active=True, key="fgi-kar-srdl").update(enabled=False)
    c = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-C"))
    assert not Alert.objects.filter(patient_id=c.study.patient_id, rule_key="fgi-kar-srdl").exists()


def test_an_edited_factor_applies_to_the_next_recompute(tmp_path, import_file):
    first = import_file(ct_rdsr(tmp_path, when=D0, ctdivol=10, dlp=400, region="chest", patient_id="CACHE-CT1"))
    e1 = StudyExposure.objects.get(study_id=first.study_id).effective_dose_msv
    assert e1 and e1 > 0
    n = EffectiveDoseFactor.objects.filter(active=True, kind=EffectiveDoseFactor.KIND_CT_DLP,
                                           age_bracket="adult").update(value=0.1)
    assert n
    second = import_file(ct_rdsr(tmp_path, when=D0, ctdivol=10, dlp=400, region="chest", patient_id="CACHE-CT2"))
    assert StudyExposure.objects.get(study_id=second.study_id).effective_dose_msv == pytest.approx(40.0)


def test_unchanged_rules_are_not_read_again(tmp_path, import_file):
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL): the stamp is read in the lock statement")
    a = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-D"))
    with CaptureQueriesContext(connection) as ctx:
        res = recompute.patient_exposure_recompute(patient_id=a.study.patient_id, now=D0 + dt.timedelta(days=400))
    assert not res.skipped and _rule_reads(ctx.captured_queries) == 0
    Rule.objects.filter(ruleset__active=True, key="fgi-kar-first").update(title="Ka,r first level (edited)")
    with CaptureQueriesContext(connection) as ctx:
        recompute.patient_exposure_recompute(patient_id=a.study.patient_id, now=D0 + dt.timedelta(days=401))
    assert _rule_reads(ctx.captured_queries) == 1


def _alert_reads(queries) -> int:
    return sum(1 for q in queries if q["sql"].startswith('SELECT "exposure_alert"."id"'))


def test_existing_alerts_are_read_only_when_there_can_be_some(tmp_path, import_file):
    low = import_file(rf_rdsr(tmp_path, when=D0, kar=0.2, kap=10, patient_id="CACHE-E"))
    with CaptureQueriesContext(connection) as ctx:
        res = recompute.patient_exposure_recompute(patient_id=low.study.patient_id, now=D0 + dt.timedelta(days=400))
    assert not res.skipped and not Alert.objects.exists() and _alert_reads(ctx.captured_queries) == 0
    high = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-F"))
    assert Alert.objects.filter(patient_id=high.study.patient_id).exists()
    with CaptureQueriesContext(connection) as ctx:
        res = recompute.patient_exposure_recompute(patient_id=high.study.patient_id, now=D0 + dt.timedelta(days=400))
    assert _alert_reads(ctx.captured_queries) == 1 and not res.alerts_created  # the alert was found, not raised again


def test_an_alert_of_a_study_moved_to_another_patient_is_found(tmp_path, import_file):
    """A study whose alert was raised under another record (before a correction moved it): the new patient has no
    alert of its own, but the study's alert is read, moved, not raised twice."""
    from dosereg.registry.models import Patient, Study

    obj = import_file(rf_rdsr(tmp_path, when=D0, kar=4.0, kap=100, patient_id="CACHE-G"))
    alert = Alert.objects.get(study_id=obj.study_id, rule_key="fgi-kar-first")
    other = Patient.objects.create(patient_id="CACHE-H", issuer="DOSEREG")
    Study.objects.filter(pk=obj.study_id).update(patient=other)  # as a correction would, before the recompute
    res = recompute.patient_exposure_recompute(patient_id=other.pk, now=D0 + dt.timedelta(days=1))
    alert.refresh_from_db()
    assert alert.patient_id == other.pk and alert.id not in res.alerts_created
    assert Alert.objects.filter(study_id=obj.study_id, rule_key="fgi-kar-first").count() == 1

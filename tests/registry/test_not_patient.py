"""Phantom / QA / test exposures ("not a patient"): recognised from the Patient ID or name by a configurable
pattern, stored and alerted like any study, left out of protocol audit statistics and device trends."""
from __future__ import annotations

import datetime as dt

import pydicom
import pytest
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.rdsr import builder as B
from dosereg.registry.models import DoseObject, Study
from dosereg.pipeline.flow import file_import
from dosereg.registry.studies import not_patient_reason

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("patient_id,name,reason", [
    ("QA-0001", "Daily^Check", "QA"),
    ("12345", "PHANTOM^CATPHAN", "PHANTOM"),
    ("12345", "QC_WEEKLY", "QC"),
    ("CAL7", "Calibration^Dose", "Calibration"),
    ("12345", "Qadir^Ali", ""),        # a word, not a prefix
    ("A1", "Testa^Mario", ""),
    ("QAZ123", "Smith^John", ""),
    ("PHANTOM01", "Test", "PHANTOM"),     # digits may touch the word
    ("CT-QC2", "Weekly", "QC"),
    ("12345", "Aqua^Maria", ""),
    ("", None, ""),
])
def test_not_patient_pattern(patient_id, name, reason):
    assert not_patient_reason(patient_id, name) == reason


def test_pattern_is_configurable_and_can_be_switched_off(settings):
    settings.NOT_PATIENT_PATTERN = r"\bwater\b"
    assert not_patient_reason("W1", "Water^Cylinder") == "Water"
    assert not_patient_reason("QA1", "Phantom") == ""
    settings.NOT_PATIENT_PATTERN = ""
    assert not_patient_reason("QA1", "Phantom") == ""


def _rdsr(tmp_path, name, patient_id, pid_seed, kap):
    now = timezone.now().replace(microsecond=0) - dt.timedelta(days=3)
    spec = B.ProjectionRDSRSpec(
        patient_id=patient_id, patient_name=name, study_description="Coronary angiography", modality="XA",
        study_datetime=timezone.make_naive(now), events=[B.ProjectionEventSpec(dap_gy_cm2=kap, dose_rp_gy=kap / 100)],
        study_instance_uid=pydicom.uid.generate_uid(), sop_instance_uid=pydicom.uid.generate_uid())
    path = tmp_path / f"{pid_seed}.dcm"
    B.write(B.build_projection_rdsr(spec), path)
    return path


def test_phantom_exposures_are_kept_but_not_audited(tmp_path, django_capture_on_commit_callbacks):
    from dosereg.protocols.selectors import audit_groups
    from dosereg.web.selectors import audit_studies, device_trends

    spool = Spool(tmp_path / "spool")
    real = [file_import(path=_rdsr(tmp_path, f"Doe^Jane{i}", f"P{i}", i, 10.0 + i), spool=spool)[0] for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):  # the follow-up: cumulative exposure and alerts
        qa, _ = file_import(path=_rdsr(tmp_path, "PHANTOM^ACR", "QA-0001", 99, 600.0), spool=spool)
    for obj in [*real, qa]:
        assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    qa_study = Study.objects.get(pk=qa.study_id)
    assert qa_study.not_patient_reason == "QA"  # the Patient ID is read first (the name "PHANTOM^ACR" would match too)
    assert all(Study.objects.get(pk=o.study_id).not_patient_reason == "" for o in real)

    now = timezone.now()
    since, until = now - dt.timedelta(days=30), now + dt.timedelta(days=1)
    groups = audit_groups(since=since, until=until)
    assert sum(g.n for g in groups.values()) == 3  # the phantom is not a procedure to compare with a DRL
    kap = next(iter(groups.values())).quantity("dap_total_gy_cm2")
    assert kap.n == 3 and kap.maximum < 600.0
    assert set(audit_studies(since=since, until=until).values_list("pk", flat=True)) == {o.study_id for o in real}
    # the same from the monthly summaries, once they are built
    from dosereg.protocols.services import summaries_rebuild_all

    summaries_rebuild_all()
    assert sum(g.n for g in audit_groups(since=since, until=until).values()) == 3
    trends = device_trends(now=now)
    assert sum(p["n"] for pts in trends["series"].values() for p in pts) == 3
    # still in the registry and alerted like any study (600 Gy·cm² is over the KAP notification levels)
    from dosereg.exposure.models import Alert

    assert Alert.objects.filter(patient_id=qa_study.patient_id).exists()

"""Mammography and NM/PET through the real stack (issue 16): DCMTK storescu -> listener -> spool -> Redis ->
Celery worker -> PostgreSQL. An MG For Processing / For Presentation pair is one event; an RRDSR is stored with
its administration; a Patient Radiation Dose SR is recorded; a Comprehensive SR that is no dose report is kept as
"not a dose object" -- nothing is quarantined."""
from __future__ import annotations

import datetime as dt

import pytest

from dosereg.rdsr import builder as B
from dosereg.registry.models import DoseObject, RadiopharmaceuticalAdministration, Study
from dosereg.registry.selectors import study_breast_agd
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e


def test_mg_pair_rrdsr_prdsr_and_non_dose_sr_through_the_stack(stack, tmp_path):
    when = dt.datetime(2026, 3, 2, 9, 41, 7)
    mg_uid, nm_uid = B.deterministic_uid("e2e-mg", tmp_path), B.deterministic_uid("e2e-nm", tmp_path)
    other = B.build_patient_dose_sr(study_instance_uid=nm_uid)
    other.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # a Comprehensive SR without dose content
    datasets = [
        B.build_mg_image(study_instance_uid=mg_uid, presentation_intent="FOR PROCESSING", acquisition_datetime=when),
        B.build_mg_image(study_instance_uid=mg_uid, presentation_intent="FOR PRESENTATION", acquisition_datetime=when),
        B.build_rrdsr(B.RRDSRSpec(study_instance_uid=nm_uid, administrations=[
            B.RadiopharmaceuticalSpec(administered_activity_mbq=251.3)])),
        B.build_patient_dose_sr(study_instance_uid=nm_uid),
        other,
    ]
    files = [B.write(ds, tmp_path / f"{i}.dcm") for i, ds in enumerate(datasets)]
    uids = [ds.SOPInstanceUID for ds in datasets]
    stack.start_worker()
    stack.start_listener()
    res = stack.storescu(files, extra=["-R"])  # propose the files' classes (storescu's default list lacks 88.68)
    assert res.returncode == 0, res.stderr + stack.logs()

    def settled():
        objs = list(DoseObject.objects.filter(sop_instance_uid__in=uids).exclude(status=DoseObject.STATUS_RECEIVED))
        return objs if len(objs) == len(uids) else None

    objs = wait_until(settled, timeout=90)
    assert objs, stack.logs()
    status = {o.sop_instance_uid: o.status for o in objs}
    assert [status[u] for u in uids] == [DoseObject.STATUS_INGESTED] * 4 + [DoseObject.STATUS_NOT_DOSE], stack.logs()
    assert not DoseObject.objects.filter(status=DoseObject.STATUS_QUARANTINED).exists()
    mg = Study.objects.get(study_instance_uid=mg_uid)
    assert mg.event_count == 1 and mg.procedure_modality == "MG"
    assert study_breast_agd(mg.pk)["L"]["agd_mgy"] == pytest.approx(1.25)
    (a,) = RadiopharmaceuticalAdministration.objects.filter(study__study_instance_uid=nm_uid)
    assert a.administered_activity_mbq == pytest.approx(251.3) and a.radiopharmaceutical_code == "SCT:35321007"

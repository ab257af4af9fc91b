"""The study's copy of its patient record's sex (``Study.patient_sex``), which the study browser filters and sorts
on: set by the ingest writer with the study's patient, filled in on the record's earlier studies when a later
report fills in the record's sex, "" for a study without a patient; the browser's sex filter and sort read it."""
from __future__ import annotations

import datetime as dt

import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline import flow
from dosereg.rdsr import builder as b
from dosereg.registry.models import Patient, Study
from dosereg.web import browse

pytestmark = pytest.mark.django_db
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def _report(directory, name: str, *, patient_id: str, sex: str, minutes: int):
    ev = b.ProjectionEventSpec(datetime=D0 + dt.timedelta(minutes=minutes), event_type="fluoroscopy", dap_gy_cm2=3.0,
                               dose_rp_gy=0.02, irradiation_duration_s=30.0, pulse_rate=7.5, kvp=70,
                               tube_current_ma=10, target_region=b.ANATOMY["chest"])
    spec = b.ProjectionRDSRSpec(patient_id=patient_id, issuer_of_patient_id="DOSEREG", patient_sex=sex,
                                birth_date=dt.date(1970, 1, 1), study_datetime=D0 + dt.timedelta(minutes=minutes),
                                study_description="Hip fixation", modality="RF", events=[ev], station_name="CARM1",
                                device_serial="SN-CARM1", institution="Northfield General Hospital")
    return b.write(b.build_projection_rdsr(spec), directory / f"{name}.dcm")


def test_ingest_keeps_the_copy_and_a_later_report_fills_it_in(tmp_path, django_capture_on_commit_callbacks):
    spool = Spool(tmp_path / "spool")

    def file_import(*, path):
        with django_capture_on_commit_callbacks(execute=True):
            return flow.file_import(path=path, spool=spool)

    file_import(path=_report(tmp_path, "first", patient_id="SEX-1", sex="", minutes=0))
    first = Study.objects.get()
    assert Patient.objects.get(patient_id="SEX-1").sex == "" and first.patient_sex == ""
    assert [s.pk for s in browse.study_page(browse.read_filters({"sex": "U"})).rows] == [first.pk]

    file_import(path=_report(tmp_path, "second", patient_id="SEX-1", sex="M", minutes=60))  # fills the record in
    assert Patient.objects.get(patient_id="SEX-1").sex == "M"
    assert set(Study.objects.values_list("patient_sex", flat=True)) == {"M"}  # the first study's copy too
    assert browse.study_page(browse.read_filters({"sex": "U"})).rows == []
    assert {s.pk for s in browse.study_page(browse.read_filters({"sex": "M"})).rows} == set(Study.objects.values_list("pk", flat=True))

    file_import(path=_report(tmp_path, "third", patient_id="SEX-2", sex="F", minutes=120))
    assert Study.objects.get(patient__patient_id="SEX-2").patient_sex == "F"
    # every study's copy is its record's sex
    assert all(s.patient_sex == (s.patient.sex if s.patient else "") for s in Study.objects.select_related("patient"))
    page = browse.study_page(browse.read_filters({"sort": "sex"}))
    assert [s.patient.sex for s in page.rows] == ["F", "M", "M"]

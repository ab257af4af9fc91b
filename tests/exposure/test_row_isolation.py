"""Per-row isolation (issue #18): one patient whose rows cannot be read (here a study stored with year 10000,
which PostgreSQL accepts and Python cannot read back: the original poison) must not stop the exposure
recompute of the other patients, nor ``exposure_report`` for them. The failure is logged and recorded in
the ops failures (TaskFailure) with the patient it concerns."""
from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.ops.models import TaskFailure
from dosereg.pipeline.flow import EXPOSURE, file_import, follow_up
from dosereg.rdsr import builder as B
from dosereg.registry.models import Patient, Study
from dosereg.registry.changes import StudyChanges

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning")]


def _ingest(tmp_path, pid: str, n: int) -> Patient:
    when = (timezone.now() - dt.timedelta(days=5)).replace(tzinfo=None, microsecond=0)
    ds = B.build_projection_rdsr(B.ProjectionRDSRSpec(patient_id=pid, study_datetime=when, events=[
        B.ProjectionEventSpec(dap_gy_cm2=20.0, dose_rp_gy=0.4, kvp=80.0, tube_current_ma=10.0, irradiation_duration_s=30.0)]))
    path = tmp_path / f"{pid}-{n}.dcm"
    path.write_bytes(B.to_bytes(ds))
    file_import(path=path, spool=Spool(tmp_path / "spool"))
    return Patient.objects.get(patient_id=pid)


@pytest.fixture
def three(tmp_path):
    """Patients A (poisoned: processed first), B and C."""
    a, b, c = (_ingest(tmp_path, pid, i) for i, pid in enumerate(["ISO-A", "ISO-B", "ISO-C"]))
    with connection.cursor() as cur:
        cur.execute(f"UPDATE {Study._meta.db_table} SET study_datetime = '10000-06-01 10:00:00+00' WHERE patient_id = %s",
                    [a.pk])
    with pytest.raises(ValueError):  # the row really is poisoned: reading it raises
        list(Study.objects.filter(patient=a).values_list("study_datetime", flat=True))
    TaskFailure.objects.all().delete()
    return a, b, c


def test_a_poisoned_patient_does_not_stop_the_recompute_of_the_others(three, django_capture_on_commit_callbacks):
    a, b, c = three
    studies = tuple(Study.objects.filter(patient__in=[b, c]).values_list("pk", flat=True))
    with django_capture_on_commit_callbacks(execute=False):  # the failed step is queued, not re-run here
        done = follow_up(StudyChanges(study_ids=studies, patient_ids=(a.pk, b.pk, c.pk)), inline=True)
    ran = {args[0] for name, args in done.ran if name == EXPOSURE}
    queued = {args[0] for name, args in done.queued if name == EXPOSURE}
    assert ran == {b.pk, c.pk}       # the others after the poisoned one were recomputed
    assert queued == {a.pk}          # the failed one is queued as its own task (retried there)
    failure = TaskFailure.objects.get()
    assert failure.task_name == "pipeline exposure" and failure.task_id == str(a.pk)
    assert failure.exception_type == "ValueError" and "year 10000" in failure.message


def test_exposure_report_goes_on_after_a_poisoned_patient_and_records_it(three):
    a, b, c = three
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 of 3 patients could not be reported"):
        call_command("exposure_report", "--all", "--recompute", stdout=out, stderr=err)
    text = out.getvalue()
    assert "Patient ISO-B" in text and "Patient ISO-C" in text and "ISO-A" not in text
    assert f"patient record {a.pk}: could not be reported (ValueError" in err.getvalue()
    failure = TaskFailure.objects.get()
    assert failure.task_name == "exposure report" and failure.task_id == str(a.pk)
    # one healthy patient alone still reports, as before
    out = StringIO()
    call_command("exposure_report", "--patient", "ISO-B", stdout=out)
    assert "Patient ISO-B" in out.getvalue()

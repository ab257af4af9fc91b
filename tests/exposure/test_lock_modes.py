"""Row locks that serialise work never make a foreign-key check wait (the cause of the deadlocks seen under the
hostile load: a recompute holding FOR UPDATE on a patient waited for an ingest that waited for it).

The recompute's patient lock and the ingest's study lock are FOR NO KEY UPDATE: two recomputes of one patient (two
ingests of one study) still wait for each other, but a transaction that only writes a row referring to the locked
row (its foreign-key check takes FOR KEY SHARE) goes through. Checked on PostgreSQL with two connections: the
second one runs with a lock timeout, so a wait fails the test instead of hanging it."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection

from dosereg.exposure import recompute
from dosereg.exposure.models import StudyExposure
from dosereg.pipeline.flow import file_import
from dosereg.registry import ingest as registry_ingest
from dosereg.registry import receiving as registry_receiving
from dosereg.registry import studies as registry_studies
from dosereg.registry.models import DoseObject, Study
from tests.conftest import require

from .builders import rf_rdsr

WHEN = dt.datetime(2026, 11, 2, 9, 0)


def _paused(monkeypatch, module, name):
    """Patch ``module.name`` so that the first call (in the worker thread) stops until released."""
    reached, release = threading.Event(), threading.Event()
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread() and not reached.is_set():
            reached.set()
            release.wait(30)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return reached, release


def _in_thread(fn):
    errors: list[str] = []

    def run():
        try:
            fn()
        except Exception as exc:  # reported by the test
            errors.append(repr(exc))
        finally:
            connection.close()

    t = threading.Thread(target=run)
    t.start()
    return t, errors


def _lock_timeout(ms: int) -> None:
    with connection.cursor() as cur:
        cur.execute(f"SET lock_timeout = {int(ms)}")


@pytest.mark.django_db(transaction=True)
def test_a_recompute_in_progress_does_not_hold_up_the_ingest_of_a_new_study_of_its_patient(tmp_path, spool, monkeypatch):
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL) for row-lock modes")
    first = file_import(path=rf_rdsr(tmp_path, when=WHEN, kar=0.2, kap=20, patient_id="LOCK-1"), spool=spool)[0]
    patient_id = first.study.patient_id
    # the recompute stops right after taking its patient lock (it takes the active rules and factors next)
    reached, release = _paused(monkeypatch, recompute, "_rules_and_factors")
    worker, errors = _in_thread(lambda: recompute.patient_exposure_recompute(patient_id=patient_id))
    try:
        assert reached.wait(20), "the recompute did not start"
        # meanwhile a second procedure of the same patient is ingested: its study row refers to the patient
        obj, _ = registry_receiving.dose_file_register(
            path=rf_rdsr(tmp_path, when=WHEN + dt.timedelta(days=1), kar=0.3, kap=30, patient_id="LOCK-1"),
            spool=spool, enqueue=False)
        _lock_timeout(3000)
        obj = registry_ingest.dose_object_ingest(dose_object_id=obj.pk)  # raises OperationalError (lock timeout) if it waits
        assert obj.status == DoseObject.STATUS_INGESTED
        assert Study.objects.filter(patient_id=patient_id).count() == 2
    finally:
        release.set()
        worker.join(30)
    assert not errors


@pytest.mark.django_db(transaction=True)
def test_an_ingest_in_progress_does_not_hold_up_a_recompute_writing_its_studys_facts(tmp_path, spool, monkeypatch):
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL) for row-lock modes")
    study_uid = "1.2.826.0.1.3680043.10.511.77.1"
    first = file_import(path=rf_rdsr(tmp_path, when=WHEN, kar=0.2, kap=20, patient_id="LOCK-2", study_uid=study_uid),
                        spool=spool)[0]
    study_id, patient_id = first.study_id, first.study.patient_id
    StudyExposure.objects.filter(study_id=study_id).delete()  # so that the recompute writes the study's facts again
    # a second report of the same study is being ingested: it stops while holding the study's row lock
    reached, release = _paused(monkeypatch, registry_studies, "_study_fields")
    second, _ = registry_receiving.dose_file_register(
        path=rf_rdsr(tmp_path, when=WHEN, kar=0.4, kap=40, patient_id="LOCK-2", study_uid=study_uid),
        spool=spool, enqueue=False)
    worker, errors = _in_thread(lambda: registry_ingest.dose_object_ingest(dose_object_id=second.pk))
    try:
        assert reached.wait(20), "the ingest did not start"
        _lock_timeout(3000)
        res = recompute.patient_exposure_recompute(patient_id=patient_id)  # OperationalError if it waits
        assert res.refreshed_studies >= 1
        assert StudyExposure.objects.filter(study_id=study_id).exists()
    finally:
        release.set()
        worker.join(30)
    assert not errors
    assert DoseObject.objects.get(pk=second.pk).status == DoseObject.STATUS_INGESTED

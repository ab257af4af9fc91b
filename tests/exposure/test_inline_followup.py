"""The ingest task does an object's follow-up work itself (INGEST_DERIVED_INLINE) and re-announces an object
delivered again after its worker died, so no exposure recompute is lost."""
from __future__ import annotations

import datetime as dt

import pytest

from dicom_listener.spool import Spool
from dosereg.exposure import services as exposure_services
from dosereg.exposure.models import Alert, PatientExposureWindow
from dosereg.registry.models import DoseObject
from dosereg.registry.services import dose_object_register
from dosereg.registry.signals import studies_changed
from dosereg.registry.tasks import ingest_object_task
from tests.exposure.builders import rf_rdsr

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit callbacks run inside the task, as in a worker
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def register(path, spool):
    stored = spool.store(path.stem, path.read_bytes())
    obj, _ = dose_object_register(sop_instance_uid=path.stem.replace("rf-", "1.2.3."), sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
                                  path=stored.path, sha256=stored.sha256, size_bytes=stored.size_bytes, enqueue=False)
    return obj


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(exposure_services, "enqueue_recompute", lambda pk: calls.append(pk) or True)
    return calls


def test_ingest_task_recomputes_inline_and_queues_nothing(tmp_path, settings, queued):
    settings.INGEST_DERIVED_INLINE = True
    obj = register(rf_rdsr(tmp_path, when=D0, kar=5.5, kap=300, patient_id="INL-1"), Spool(tmp_path / "spool"))
    assert ingest_object_task.apply(args=[obj.pk]).get() == DoseObject.STATUS_INGESTED
    assert queued == []
    patient_id = DoseObject.objects.get(pk=obj.pk).study.patient_id
    assert PatientExposureWindow.objects.filter(patient_id=patient_id).exists()
    assert Alert.objects.filter(patient_id=patient_id, rule_key="fgi-kar-srdl").count() == 1


def test_with_inline_off_the_recompute_is_queued(tmp_path, settings, queued):
    settings.INGEST_DERIVED_INLINE = False
    obj = register(rf_rdsr(tmp_path, when=D0, kar=5.5, kap=300, patient_id="INL-2"), Spool(tmp_path / "spool"))
    ingest_object_task.apply(args=[obj.pk]).get()
    patient_id = DoseObject.objects.get(pk=obj.pk).study.patient_id
    assert queued == [patient_id]
    assert not Alert.objects.filter(patient_id=patient_id).exists()


def test_inline_failure_falls_back_to_the_queue(tmp_path, settings, queued, monkeypatch):
    settings.INGEST_DERIVED_INLINE = True

    def broken(**kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(exposure_services, "patient_exposure_recompute", broken)
    obj = register(rf_rdsr(tmp_path, when=D0, kar=5.5, kap=300, patient_id="INL-3"), Spool(tmp_path / "spool"))
    assert ingest_object_task.apply(args=[obj.pk]).get() == DoseObject.STATUS_INGESTED
    assert queued == [DoseObject.objects.get(pk=obj.pk).study.patient_id]


def test_task_delivered_again_re_announces_the_study(tmp_path, settings, queued):
    settings.INGEST_DERIVED_INLINE = False
    obj = register(rf_rdsr(tmp_path, when=D0, kar=1.0, kap=30, patient_id="INL-4"), Spool(tmp_path / "spool"))
    ingest_object_task.apply(args=[obj.pk]).get()
    obj.refresh_from_db()
    seen = []

    def receiver(sender, study_ids=(), patient_ids=(), **kw):
        seen.append((list(study_ids), list(patient_ids)))
    studies_changed.connect(receiver, dispatch_uid="test-redelivery")
    try:
        # the worker died after the ingest committed: the broker delivers the task again
        assert ingest_object_task.apply(args=[obj.pk]).get() == DoseObject.STATUS_INGESTED
    finally:
        studies_changed.disconnect(dispatch_uid="test-redelivery")
    assert seen == [([obj.study_id], [obj.study.patient_id])]
    assert queued == [obj.study.patient_id] * 2  # the first ingest's and the redelivery's

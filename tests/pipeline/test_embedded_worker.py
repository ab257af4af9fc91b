"""The embedded default (no broker, tasks eager): the C-STORE handler only stores, registers and answers; the
listener's in-process worker thread ingests, follows up and sends the alert e-mail afterwards, and sweeps up
objects left stranded. Real listener, real pynetdicom SCU, real SMTP server, real database."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pydicom
import pytest
from django.contrib.auth.models import Group, User
from pynetdicom import AE, build_context

from dicom_listener.server import start_listener
from dicom_listener.spool import Spool
from dosereg.exposure.constants import RSO_GROUP
from dosereg.exposure.models import Alert
from dosereg.pipeline import flow
from dosereg.pipeline.worker import InProcessWorker
from dosereg.registry.models import DoseObject
from dosereg.registry.receiving import dose_object_register
from tests.e2e.conftest import free_port
from tests.exposure.builders import rf_rdsr
from tests.notifications.smtp import smtp_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)  # the worker thread has its own database connection
D0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.timezone.utc)


def send(port: int, ds) -> int:
    ae = AE(ae_title="TESTSCU")
    ae.requested_contexts = [build_context(ds.SOPClassUID)]
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assoc.release()
    return status.Status


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_the_handler_answers_before_the_ingest_and_the_worker_sends_the_alert(tmp_path, settings, monkeypatch,
                                                                              smtp_server):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    rso = User.objects.create_user("rso-embedded", email="rso-embedded@hospital.test")
    rso.groups.add(Group.objects.get_or_create(name=RSO_GROUP)[0])
    started, release = threading.Event(), threading.Event()
    real = flow.ingest_object

    def held(*args, **kwargs):  # the ingest waits until the test has seen the answer
        started.set()
        release.wait(30)
        return real(*args, **kwargs)
    monkeypatch.setattr(flow, "ingest_object", held)
    port = free_port()
    server, stats = start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool", allowed=["TESTSCU"])
    try:
        assert server.ingest_worker is not None
        ds = pydicom.dcmread(rf_rdsr(tmp_path, when=D0, kar=5.5, kap=300, patient_id="EMB-1"))
        assert send(port, ds) == 0x0000
        assert started.wait(10)  # the worker took it after the answer ...
        obj = DoseObject.objects.get(sop_instance_uid=ds.SOPInstanceUID)
        assert obj.status == DoseObject.STATUS_RECEIVED  # ... which did not wait for the ingest
        assert smtp_server.messages == []
        release.set()
        assert server.ingest_worker.wait_idle(60)
        obj.refresh_from_db()
        assert obj.status == DoseObject.STATUS_INGESTED
        assert Alert.objects.filter(patient_id=obj.study.patient_id, rule_key="fgi-kar-srdl").exists()
        assert wait_for(lambda: smtp_server.to("rso-embedded@hospital.test"), 30)  # the alert e-mail, from the worker
    finally:
        release.set()
        server.shutdown()
    assert stats.stored == 1


def test_the_worker_sweeps_up_stranded_objects(tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SWEEP_STALE_AFTER_S = 0
    spool = Spool(tmp_path / "spool")
    path = rf_rdsr(tmp_path, when=D0, kar=1.0, kap=30, patient_id="EMB-2")
    # registered by a listener that stopped before its worker ingested it
    stored = spool.store("1.2.826.0.1.3680043.10.2.1", path.read_bytes())
    obj, _ = dose_object_register(sop_instance_uid="1.2.826.0.1.3680043.10.2.1", sop_class_uid="", path=stored.path,
                                  sha256=stored.sha256, size_bytes=stored.size_bytes, enqueue=False)
    # stored, but the database was down: no row at all
    orphan = spool.store("1.2.826.0.1.3680043.10.2.2", rf_rdsr(tmp_path, when=D0, kar=1.0, kap=30,
                                                                patient_id="EMB-3").read_bytes())
    worker = InProcessWorker(spool=spool, sweep_interval_s=0.2).start()
    try:
        assert wait_for(lambda: DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count() == 2)
    finally:
        worker.stop()
    obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_INGESTED and obj.deliveries == 1
    assert DoseObject.objects.get(path=str(orphan.path)).status == DoseObject.STATUS_INGESTED

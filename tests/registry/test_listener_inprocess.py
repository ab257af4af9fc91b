"""The listener in-process with a pynetdicom SCU: runs anywhere (SQLite, tasks in-process)."""
from __future__ import annotations

import time

import pydicom
import pytest
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification

from dicom_listener import server as listener
from dicom_listener.spool import Spool, SpoolError
from dosereg.registry.models import DoseObject
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    port = free_port()
    server, stats = listener.start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool",
                                            allowed=["TESTSCU"])
    yield port, stats, tmp_path / "spool"
    server.shutdown()


def send(port, ds, calling="TESTSCU"):
    ae = AE(ae_title=calling)
    ae.requested_contexts = [build_context(ds.SOPClassUID), build_context(Verification)]
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    if not assoc.is_established:
        return None
    status = assoc.send_c_store(ds)
    assoc.release()
    return status.Status


def test_store_echo_and_allow_list(running, corpus_files):
    port, stats, spool_dir = running
    ds = pydicom.dcmread(next(f for f in corpus_files if "canon_cxdi_DX.dcm" in f.name))
    assert send(port, ds) == 0x0000
    obj = DoseObject.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    deadline = time.monotonic() + 60  # the listener's in-process worker ingests after the answer
    while obj.status == DoseObject.STATUS_RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
        obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_INGESTED
    assert (spool_dir / "objects").exists() and obj.path.startswith(str(spool_dir))
    assert send(port, ds, calling="UNKNOWN") is None  # rejected at association
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()


def test_out_of_resources_when_spool_cannot_store(running, corpus_files, monkeypatch):
    port, stats, _ = running

    def full(self, incoming, uid, meta=None):
        raise SpoolError("disk full")

    monkeypatch.setattr(Spool, "commit", full)
    ds = pydicom.dcmread(next(f for f in corpus_files if "canon_cxdi_DX.dcm" in f.name))
    assert send(port, ds) == 0xA700
    assert not DoseObject.objects.exists()


def test_spool_refuses_below_min_free_space(tmp_path):
    spool = Spool(tmp_path, min_free_bytes=10**18)
    with pytest.raises(SpoolError):
        spool.store("1.2.3", b"x" * 10)
    assert list(spool.iter_files()) == []


def test_spool_names_cannot_escape(tmp_path):
    spool = Spool(tmp_path)
    stored = spool.store("../../etc/passwd", b"data")
    assert stored.path.resolve().is_relative_to((tmp_path / "objects").resolve())

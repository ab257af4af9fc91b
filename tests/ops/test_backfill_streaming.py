"""Backfill by C-GET keeps memory bounded (issue #18, "bounded memory everywhere"): each retrieved object is
streamed into the spool while it arrives, by the same intake as the listener, instead of being assembled in
memory by pynetdicom and copied. A real Orthanc serves a 48 MB RDSR; the receiving process's Python heap
peak stays far below the object's size, and the spooled original is byte-identical to what Orthanc holds."""
from __future__ import annotations

import hashlib
import os
import tracemalloc

import pytest

from dicom_listener.backfill import Backfill, parse_date, parse_remote
from dosereg.ops.models import BackfillItem
from dosereg.registry.models import DoseObject
from tests.conftest import require
from tests.e2e.conftest import free_port
from tests.ops.orthanc import ORTHANC, Orthanc

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]

BIG_MB = 48


def _big_rdsr(tmp_path):
    from tests.badinput import objects as O

    data = O.oversize(BIG_MB * 1024 * 1024)  # a valid RDSR with a 48 MB private OB element
    path = tmp_path / "big.dcm"
    path.write_bytes(data)
    return path, O.sop_uid(data), _body_sha(data)


def _body_sha(data: bytes) -> str:
    """The data set after the File Meta (the meta is the sender's and the receiver's own, not the object's)."""
    from tests.badinput import objects as O

    return hashlib.sha256(data[O._meta_end(data):]).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_c_get_streams_each_object_to_the_spool_not_to_memory(tmp_path, settings, monkeypatch):
    require(os.path.exists(ORTHANC), f"Orthanc ({ORTHANC})")
    # what is measured is the receive: the ingest (a worker's job, reading the object) is queued, not run here
    queued: list[int] = []
    monkeypatch.setattr("dosereg.registry.receiving.enqueue_ingest", queued.append)
    settings.SPOOL_DIR = tmp_path / "spool"
    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.DICOM_MAX_OBJECT_BYTES = 256 * 1024 * 1024
    big, uid, sha = _big_rdsr(tmp_path)
    o = Orthanc(tmp_path / "orthanc", free_port(), free_port(), {"backfill": ["BACKFILL", "127.0.0.1", 104]})
    o.start()
    try:
        o.upload(big)
        del big
        job = Backfill(parse_remote(f"ORTHANC@127.0.0.1:{o.dicom_port}"), parse_date("1990-01-01"),
                       parse_date("2030-12-31"), rate=100)
        tracemalloc.start()
        try:
            summary = job.run()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        o.stop()
    assert summary.retrieved == 1 and summary.failed == 0, summary.as_dict()
    assert BackfillItem.objects.get().status == BackfillItem.RETRIEVED
    obj = DoseObject.objects.get(sop_instance_uid=uid)
    assert obj.calling_ae == "BACKFILL" and queued == [obj.pk]
    assert obj.size_bytes > BIG_MB * 1024 * 1024
    with open(obj.path, "rb") as fh:
        assert _body_sha(fh.read()) == sha  # the data set, byte-identical in the spool
    assert not list((tmp_path / "spool" / "tmp").glob("*.part"))  # nothing half-received left behind
    # held in memory (pynetdicom's in-memory receive, then a copy) the peak is over twice the object's size;
    # streamed, it is the PDUs in flight plus the registry's work
    assert peak < 16 * 1024 * 1024, f"peak Python heap {peak / 1e6:.1f} MB while retrieving a {BIG_MB} MB object"

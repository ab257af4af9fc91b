"""The ingest spine end to end: DCMTK storescu -> listener -> spool -> Redis -> Celery worker -> PostgreSQL."""
from __future__ import annotations

import subprocess

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dosereg.registry.models import DoseObject, IrradiationEvent
from dosereg.registry.selectors import registry_stats
from tests.e2e.conftest import ECHOSCU, wait_until

pytestmark = pytest.mark.e2e

RDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"


def sop_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def settled(expected: int):
    def check():
        n = DoseObject.objects.exclude(status=DoseObject.STATUS_RECEIVED).count()
        return n if n >= expected else 0
    return check


def garbage_rdsr(path) -> str:
    """A DICOM object of the RDSR SOP class whose SR tree is missing: must be quarantined, not lost."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RDSR_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RDSR_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "SR"
    ds.PatientID = "GARBAGE"
    ds.ValueType = "CONTAINER"
    ds.add_new(0x00291010, "OB", b"\xde\xad\xbe\xef" * 64)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def test_whole_corpus_arrives_exactly_once_and_resend_changes_nothing(stack, corpus_files, tmp_path):
    stack.start_worker()
    stack.start_listener()
    # one entry per file: two corpus files re-use one SOP Instance UID for different objects
    uids = sorted(sop_uid(f) for f in corpus_files)

    res = stack.storescu(corpus_files)
    assert res.returncode == 0, res.stderr + stack.logs()
    assert wait_until(settled(len(uids)), timeout=90), stack.logs()

    objs = DoseObject.objects.all()
    assert sorted(o.sop_instance_uid for o in objs) == uids  # each object exactly once
    quarantined = {o.sop_instance_uid: o.quarantine_reason for o in objs if o.status != DoseObject.STATUS_INGESTED}
    assert quarantined == {}
    # the 316-event Philips file and the Artis zee file: every event stored once
    assert IrradiationEvent.objects.filter(dose_object__path__contains=sop_uid(
        next(f for f in corpus_files if "316events" in f.name))).count() == 316
    before = registry_stats()
    ingested_at = dict(DoseObject.objects.values_list("sop_instance_uid", "ingested_at"))

    res = stack.storescu(corpus_files)
    assert res.returncode == 0, res.stderr
    # the listener acknowledged; give workers a chance to (wrongly) do anything
    wait_until(lambda: False, timeout=3)
    assert registry_stats() == before
    assert dict(DoseObject.objects.values_list("sop_instance_uid", "ingested_at")) == ingested_at
    assert before["objects_received"] == len(corpus_files)


def test_unknown_caller_rejected_and_garbage_quarantined_while_listener_keeps_serving(stack, corpus_files, tmp_path):
    stack.start_worker()
    stack.start_listener()
    one = next(f for f in corpus_files if f.name.startswith("canon_cxdi_DX.dcm"))

    rejected = stack.storescu([one], calling_ae="INTRUDER")
    assert rejected.returncode != 0
    assert "Association Rejected" in (rejected.stderr + rejected.stdout)
    assert DoseObject.objects.count() == 0

    bad = tmp_path / "garbage.dcm"
    bad_uid = garbage_rdsr(bad)
    res = stack.storescu([bad, one])
    assert res.returncode == 0, res.stderr
    assert wait_until(settled(2), timeout=60), stack.logs()
    garbage = DoseObject.objects.get(sop_instance_uid=bad_uid)
    assert garbage.status == DoseObject.STATUS_QUARANTINED
    assert garbage.quarantine_reason  # a specific reason, not empty
    assert DoseObject.objects.get(sop_instance_uid=sop_uid(one)).status == DoseObject.STATUS_INGESTED

    echo = subprocess.run([ECHOSCU, "-aet", "MODALITY1", "-aec", "DOSEREG", "127.0.0.1", str(stack.port)],
                          capture_output=True, text=True, timeout=30)
    assert echo.returncode == 0, echo.stderr
    assert stack.listener.poll() is None

"""Bad-input rig: the real listener in-process (tasks eager: the ingest runs before the C-STORE
response, so an acknowledged object is already ingested or quarantined) and a pynetdicom SCU that
sends files *as bytes* (pynetdicom's chunked mode parses only the File Meta), so truncated files and
garbage reach the listener exactly as a broken modality would send them."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pynetdicom import AE, _config, build_context
from pynetdicom.sop_class import Verification
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.e2e.conftest import free_port

from . import objects as O

CALLING_AE = "BADSCU"
UNKNOWN_TS = "1.2.840.10008.1.2.4.999999.1"  # no such transfer syntax
PER_OBJECT_BOUND_S = 20.0  # receive + store of one object (the in-process worker ingests after), generous for slow CI


def requested_contexts():
    """What a sloppy modality might propose: RDSR in three encodings and an unknown one, SC, CT, Comprehensive SR."""
    cx = [build_context(Verification)]
    for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, UNKNOWN_TS):
        cx.append(build_context(O.RDSR_CLASS, [ts]))
    for cls in (O.COMPREHENSIVE_SR, O.CT_IMAGE, O.SECONDARY_CAPTURE):
        cx.append(build_context(cls, [ExplicitVRLittleEndian]))
    return cx


@dataclass
class Sent:
    name: str
    sop_uid: str
    status: int | None  # None: not sent (no presentation context)
    seconds: float
    error: str = ""


@dataclass
class Session:
    assoc: object
    tmp: Path
    sent: list[Sent] = field(default_factory=list)

    def send(self, name: str, data: bytes, sop_uid: str | None = None) -> Sent:
        path = self.tmp / f"{len(self.sent):03d}-{name}.dcm"
        path.write_bytes(data)
        sop_uid = sop_uid or O.sop_uid(data)
        started = time.perf_counter()
        try:
            status = self.assoc.send_c_store(path)
            code = int(status.Status) if "Status" in status else None
            err = "" if code is not None else "no response"
        except ValueError as exc:  # no accepted presentation context for it
            code, err = None, str(exc)
        s = Sent(name, sop_uid, code, time.perf_counter() - started, err)
        self.sent.append(s)
        return s

    def send_dataset(self, name: str, ds) -> Sent:
        started = time.perf_counter()
        try:
            status = self.assoc.send_c_store(ds)
            code, err = int(status.Status), ""
        except ValueError as exc:
            code, err = None, str(exc)
        s = Sent(name, str(ds.SOPInstanceUID), code, time.perf_counter() - started, err)
        self.sent.append(s)
        return s


def echo(port: int, calling: str = CALLING_AE) -> int | None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


@contextmanager
def association(port: int, tmp: Path, contexts=None, calling: str = CALLING_AE):
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # send files as bytes: no parsing on our side
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.requested_contexts = contexts or requested_contexts()
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    try:
        assert assoc.is_established, "association with the listener failed"
        tmp.mkdir(parents=True, exist_ok=True)
        yield Session(assoc, tmp)
    finally:
        if assoc.is_established:
            assoc.release()
        _config.STORE_SEND_CHUNKED_DATASET = old


@dataclass
class Listener:
    port: int
    stats: object
    spool: Path


@pytest.fixture
def listener(tmp_path, settings):
    """The real listener, in-process, tasks eager; max object size 12 MB."""
    from dicom_listener.server import start_listener
    from dosereg.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.DICOM_MAX_OBJECT_BYTES = 12 * 1024 * 1024
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    port = free_port()
    server, stats = start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool", allowed=[CALLING_AE])
    try:
        yield Listener(port, stats, tmp_path / "spool")
    finally:
        server.shutdown()
        app.conf.task_always_eager = eager

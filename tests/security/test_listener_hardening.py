"""Issue #18 against the real listener (in-process, tasks eager, PostgreSQL) with DCMTK's storescu:

* Denial of service: idle TCP connections (no association) are closed within DICOM_ASSOCIATION_TIMEOUT_S,
  one peer address holds at most DICOM_MAX_CONNECTIONS_PER_PEER connections, and a modality associates
  while 32 idle connections are open.
* Safe defaults: DCMTK's STORESCU is not an allowed calling AE by default; an association to another
  called AE title is rejected; a replacement of a report (same SOP Instance UID, other content) from
  another calling AE is kept but held for review, never applied.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from dosereg.registry.models import DoseObject, IrradiationEvent
from tests.conftest import REPO, require
from tests.e2e.conftest import STORESCU

pytestmark = pytest.mark.django_db(transaction=True)

MODALITIES = ["CT_OR1", "ANGIO2"]


@pytest.fixture
def listener(tmp_path, settings):
    require(os.path.exists(STORESCU), "DCMTK storescu (/usr/bin/storescu)")
    from dicom_listener.server import start_listener
    from dosereg.celery import app

    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.DICOM_ASSOCIATION_TIMEOUT_S = 2
    settings.DICOM_MAX_CONNECTIONS_PER_PEER = 8
    eager, app.conf.task_always_eager = app.conf.task_always_eager, True
    server, stats = start_listener(port=0, address="127.0.0.1", spool_dir=tmp_path / "spool", allowed=MODALITIES)
    yield server.server_address[1]
    server.shutdown()
    app.conf.task_always_eager = eager


def rdsr(path, *, patient_id="HARD0001", sop_instance_uid=None, study_instance_uid=None, dap=1.2):
    from dosereg.rdsr import builder as B

    spec = B.ProjectionRDSRSpec(patient_id=patient_id, events=[B.ProjectionEventSpec(dap_gy_cm2=dap, dose_rp_gy=0.01)])
    if sop_instance_uid:
        spec.sop_instance_uid = sop_instance_uid
    if study_instance_uid:
        spec.study_instance_uid = study_instance_uid
    ds = B.build_projection_rdsr(spec)
    B.write(ds, path)
    return str(ds.SOPInstanceUID), str(ds.StudyInstanceUID)


def storescu(port, files, *, aet="CT_OR1", aec="DOSEREG", timeout=30):
    args = [STORESCU, "-aet", aet, "-aec", aec, "-to", "10", "-ta", "10", "-td", "10", "127.0.0.1", str(port),
            *map(str, files)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    _wait_ingested()
    return r.returncode, r.stdout + r.stderr


def _wait_ingested(timeout_s: float = 60.0) -> None:
    """The listener answers before its in-process worker ingests: wait until nothing is left "received"."""
    deadline = time.monotonic() + timeout_s
    while DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def idle_sockets(port, n, source="127.0.0.1"):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def closed_by_server(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except (socket.timeout, TimeoutError):
        return False
    except OSError:
        return True


def test_a_modality_associates_while_32_idle_connections_are_open(listener, tmp_path):
    path = tmp_path / "r.dcm"
    uid, _ = rdsr(path)
    idle = idle_sockets(listener, 32, source="127.0.0.2")  # an attacker's address: no association, no AE title
    try:
        time.sleep(0.3)
        started = time.monotonic()
        code, out = storescu(listener, [path])
        assert code == 0, out
        assert time.monotonic() - started < 5
        # the cap per peer address: all but 8 of the attacker's connections were closed at once
        assert sum(closed_by_server(s, 0.05) for s in idle) >= 24
    finally:
        for s in idle:
            s.close()
    assert DoseObject.objects.get(sop_instance_uid=uid).status == DoseObject.STATUS_INGESTED


def test_idle_connections_are_timed_out_and_the_same_peer_gets_in_after_them(listener, tmp_path):
    path = tmp_path / "r.dcm"
    uid, _ = rdsr(path)
    idle = idle_sockets(listener, 32)  # from the modality's own address: its 8 connections are all taken
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert all(closed_by_server(s, 4) for s in idle)  # DICOM_ASSOCIATION_TIMEOUT_S = 2
        assert time.monotonic() - started < 5
        # a half-sent association request (slowloris) is cut off at the same deadline
        slow = socket.create_connection(("127.0.0.1", listener))
        slow.sendall(b"\x01\x00\x00\x00\x01\x00")  # A-ASSOCIATE-RQ announcing 256 bytes, none of them sent
        t = time.monotonic()
        for _ in range(10):
            try:
                slow.sendall(b"\x00")
            except OSError:
                break
            if closed_by_server(slow, 0.5):
                break
        assert time.monotonic() - t < 4
        slow.close()
        code, out = storescu(listener, [path])
        assert code == 0, out
    finally:
        for s in idle:
            s.close()
    assert DoseObject.objects.filter(sop_instance_uid=uid).exists()


def test_a_connection_cut_off_at_the_deadline_logs_one_line_and_no_traceback(listener, caplog):
    """A connection that has not sent its association request by the deadline (here: half a PDU header) is closed
    and the listener says why in one warning; pynetdicom's reader would log the same close again with a traceback
    (on the demo's terminal, in a service's journal): that record is dropped."""
    import logging

    caplog.set_level(logging.INFO)
    slow = socket.create_connection(("127.0.0.1", listener))
    try:
        slow.sendall(b"\x01\x00\x00")  # 3 of the 6 bytes of a PDU header, then nothing
        assert closed_by_server(slow, 6)  # DICOM_ASSOCIATION_TIMEOUT_S = 2
        time.sleep(0.5)
    finally:
        slow.close()
    ours = [r for r in caplog.records if "no association request within" in r.getMessage()]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.name.startswith("pynetdicom") and r.exc_info], \
        [(r.name, r.getMessage()) for r in caplog.records if r.exc_info]
    assert "Traceback" not in caplog.text


def test_storescu_is_not_an_allowed_calling_ae_by_default(tmp_path):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("DICOM_ALLOWED_CALLING_AES", None)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                          "print(','.join(settings.DICOM_ALLOWED_CALLING_AES), settings.DICOM_REQUIRE_CALLED_AE)"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    allowed, required = out.stdout.split()
    assert "STORESCU" not in allowed.split(",") and "*" not in allowed and allowed
    assert required == "True"


def test_default_allow_list_rejects_dcmtk_default_calling_ae(tmp_path, settings):
    require(os.path.exists(STORESCU), "DCMTK storescu (/usr/bin/storescu)")
    from dicom_listener.server import start_listener

    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.DICOM_ALLOWED_CALLING_AES = ["DOSEREG_DEMO", "BACKFILL"]  # the shipped default
    path = tmp_path / "r.dcm"
    rdsr(path)
    server, _ = start_listener(port=0, address="127.0.0.1", spool_dir=tmp_path / "spool")
    try:
        code, out = storescu(server.server_address[1], [path], aet="STORESCU")
        assert code != 0 and "Association Rejected" in out, out
    finally:
        server.shutdown()
    assert not DoseObject.objects.exists()


def test_an_association_to_another_called_ae_title_is_rejected(listener, tmp_path):
    path = tmp_path / "r.dcm"
    uid, _ = rdsr(path)
    for called in ("ANY-SCP", "DOSEREG2", "PACS"):
        code, out = storescu(listener, [path], aec=called)
        assert code != 0 and "Association Rejected" in out, out
        assert "Called AE Title Not Recognized" in out or "called-ae-title-not-recognized" in out.lower(), out
    assert not DoseObject.objects.exists()
    code, out = storescu(listener, [path], aec="DOSEREG")
    assert code == 0, out


def test_a_replacement_from_another_calling_ae_is_held_for_review(listener, tmp_path):
    original, replacement, correction = tmp_path / "o.dcm", tmp_path / "r.dcm", tmp_path / "c.dcm"
    uid, study = rdsr(original, dap=1.2)
    rdsr(replacement, sop_instance_uid=uid, study_instance_uid=study, dap=95.0)  # same SOP Instance UID, other content
    rdsr(correction, sop_instance_uid=uid, study_instance_uid=study, dap=1.4)
    assert storescu(listener, [original], aet="CT_OR1")[0] == 0
    first = DoseObject.objects.get(sop_instance_uid=uid)
    assert first.status == DoseObject.STATUS_INGESTED and first.calling_ae == "CT_OR1"

    code, out = storescu(listener, [replacement], aet="ANGIO2")
    assert code == 0, out  # acknowledged (kept), but not applied
    held = DoseObject.objects.get(sop_instance_uid=uid, calling_ae="ANGIO2")
    assert held.status == DoseObject.STATUS_QUARANTINED
    assert "replacement from another calling AE" in held.quarantine_reason and "CT_OR1" in held.quarantine_reason
    first.refresh_from_db()
    assert first.superseded_by_id is None
    assert [round(e.dap_gy_cm2, 2) for e in IrradiationEvent.objects.filter(study=first.study)] == [1.2]

    # a correction from the device that sent the original replaces it as before
    assert storescu(listener, [correction], aet="CT_OR1")[0] == 0
    corrected = DoseObject.objects.get(sop_instance_uid=uid, calling_ae="CT_OR1", status=DoseObject.STATUS_INGESTED,
                                       superseded_by__isnull=True)
    assert [round(e.dap_gy_cm2, 2) for e in IrradiationEvent.objects.filter(study=corrected.study)] == [1.4]

"""Acknowledged means kept (issue #18), through the real listener (in-process, tasks eager) and PostgreSQL.

* A C-STORE whose Affected SOP Instance UID is not a conformant UID (a NUL inside, letters, over 64
  characters, an empty component) is refused with 0xC000 and an Error Comment before anything is stored:
  no spool file, no row. The association goes on.
* An object the listener stored but could not record (database unreachable) is registered by the sweeper
  with the UID, SOP class and calling AE of its side-car; a spooled file without side-car whose UID cannot
  be made valid is registered under a derived key and quarantined, never skipped.
* ``manage.py reconcile_spool`` reports any spooled object in neither registry nor quarantine.
* Objects are streamed to disk while they are received: the handler never asks pynetdicom for the object
  in memory; over-size objects and an exhausted in-flight budget are refused without leaving files.
"""
from __future__ import annotations

import io
import json
import socket
import struct
import time

import pytest
from django.core.management import call_command
from django.db import OperationalError

from dicom_listener.reconcile import spool_reconcile
from dicom_listener.spool import Spool
from dosereg.registry.models import DoseObject

from . import objects as O
from .conftest import association, echo

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000


def _meta_with(uid: str) -> bytes:
    # pydicom will not write a NUL inside a UI value: build the File Meta with a placeholder of the same length
    placeholder = "1" * len(uid)
    meta = O._meta_bytes(O.RDSR_CLASS, placeholder)
    return meta.replace(placeholder.encode(), uid.encode("latin-1"), 1)


def _spooled(spool_dir) -> list[str]:
    return sorted(p.name for p in (spool_dir / "objects").rglob("*.dcm"))


BAD_UIDS = {
    "nul": "1.2.826.0.1.3680043.10.1077.5\x00.7",
    "letters": "1.2.826.0.1.3680043.10.1077.abc",
    "too-long": "1.2." + "1234567890" * 7,
    "empty-component": "1.2..826",
}


def test_non_conformant_uids_are_refused_before_anything_is_stored(listener, tmp_path, caplog, monkeypatch):
    caplog.set_level("WARNING", logger="dicom_listener")
    # pynetdicom refuses to *send* a UID over 64 characters (and, receiving one, aborts the association:
    # nothing acknowledged). With that check off on both sides the listener's own check must refuse it.
    from pynetdicom import dimse_primitives

    real_set_uid = dimse_primitives.set_uid
    monkeypatch.setattr(dimse_primitives, "set_uid", lambda value, name, *a, **k: real_set_uid(value, name, validate=False))
    with association(listener.port, tmp_path / "send") as s:
        for name, uid in BAD_UIDS.items():
            data = _meta_with(uid) + O.good("BADUID01")[O._meta_end(O.good("BADUID01")):]
            status = s.assoc.send_c_store(_write(tmp_path, name, data))
            assert int(status.Status) == CANNOT_UNDERSTAND, (name, status)
            assert "not a valid DICOM UID" in str(status.get("ErrorComment", "")), status
        good = O.good("AFTERBAD1")
        r = s.send("good", good)
        assert r.status == SUCCESS
    assert list(DoseObject.objects.values_list("sop_instance_uid", flat=True)) == [r.sop_uid]
    deadline = time.monotonic() + 60  # the embedded listener ingests in its worker thread, after answering
    while DoseObject.objects.get().status == DoseObject.STATUS_RECEIVED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert DoseObject.objects.get().status == DoseObject.STATUS_INGESTED
    assert len(_spooled(listener.spool)) == 1
    assert not list((listener.spool / "tmp").iterdir())  # no partial file left behind
    assert listener.stats.refused == len(BAD_UIDS)
    refused = [r for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(refused) == len(BAD_UIDS) and "\\x00" in refused[0].getMessage()
    assert spool_reconcile(spool=Spool(listener.spool))["unregistered"] == 0


def _write(tmp_path, name, data):
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(data)
    return path


def test_object_stored_while_the_database_is_unreachable_is_registered_by_the_sweeper(listener, tmp_path, monkeypatch,
                                                                                       settings):
    from dosereg.ops.health import check_spool_reconciliation
    from dosereg.registry import receiving

    settings.SPOOL_DIR = listener.spool

    def unreachable(**kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    real = receiving.dose_object_register
    monkeypatch.setattr(receiving, "dose_object_register", unreachable)
    with association(listener.port, tmp_path / "send") as s:
        r = s.send("db-down", O.good("DBDOWN01"))
    assert r.status == SUCCESS  # durable on disk: acknowledged
    assert not DoseObject.objects.exists()
    report = spool_reconcile(spool=Spool(listener.spool))
    assert report["unregistered"] == 1 and not report["ok"]
    side = json.loads(next((listener.spool / "objects").rglob("*.json")).read_text())
    assert side["sop_instance_uid"] == r.sop_uid and side["calling_ae"] == "BADSCU"
    health = check_spool_reconciliation(grace_s=0)  # the listener health check's item
    assert not health["ok"] and health["unregistered"] == 1 and "reconcile_spool" in health["error"]
    assert check_spool_reconciliation()["ok"]  # within the grace period the sweeper may still register it
    monkeypatch.setattr(receiving, "dose_object_register", real)

    out = receiving.dose_objects_sweep(spool=Spool(listener.spool))
    assert out["registered"] == 1
    obj = DoseObject.objects.get(sop_instance_uid=r.sop_uid)
    assert obj.calling_ae == "BADSCU" and obj.sop_class_uid == O.RDSR_CLASS
    assert obj.status == DoseObject.STATUS_INGESTED  # eager: enqueued and ingested
    assert spool_reconcile(spool=Spool(listener.spool))["ok"] and check_spool_reconciliation(grace_s=0)["ok"]
    assert receiving.dose_objects_sweep(spool=Spool(listener.spool))["registered"] == 0


def test_spooled_files_without_a_usable_uid_are_registered_under_a_derived_key(listener, tmp_path, settings):
    """Files an older listener acknowledged under a hashed name (a NUL in the UID), without side-car."""
    spool = Spool(listener.spool)
    nul = _meta_with(BAD_UIDS["nul"]) + b"\xde\xad" * 64  # garbage after the meta
    hidden_good = O.good("LEGACY01")
    legacy_nul = spool.store(BAD_UIDS["nul"], nul)
    legacy_good = spool.store("not a uid", hidden_good)  # a valid UID inside the file, a hashed name outside
    assert legacy_nul.path.name.startswith("x") and legacy_good.path.name.startswith("x")
    assert spool_reconcile(spool=spool)["unregistered"] == 2

    code = None
    buf = io.StringIO()
    try:
        call_command("reconcile_spool", "--json", "--grace", "0", "--spool", str(listener.spool), stdout=buf)
    except SystemExit as exc:
        code = exc.code
    report = json.loads(buf.getvalue())
    assert code == 1 and report["unregistered"] == 2 and len(report["unregistered_paths"]) == 2

    from dosereg.registry.receiving import dose_objects_sweep

    assert dose_objects_sweep(spool=spool)["registered"] == 2
    derived = DoseObject.objects.get(path=str(legacy_nul.path))
    assert derived.sop_instance_uid == f"unidentified-{legacy_nul.sha256[:40]}"
    assert derived.status == DoseObject.STATUS_QUARANTINED and "not a valid DICOM UID" in derived.quarantine_reason
    recovered = DoseObject.objects.get(path=str(legacy_good.path))
    assert recovered.sop_instance_uid == O.sop_uid(hidden_good)
    assert recovered.status == DoseObject.STATUS_INGESTED
    buf = io.StringIO()
    call_command("reconcile_spool", "--json", "--grace", "0", "--spool", str(listener.spool), stdout=buf)
    assert json.loads(buf.getvalue())["ok"] is True


def test_objects_are_streamed_to_disk_not_held_in_memory(listener, tmp_path, monkeypatch):
    from pynetdicom.events import Event

    def in_memory(self, include_meta=True):
        raise AssertionError("the listener asked for the whole object in memory")

    monkeypatch.setattr(Event, "encoded_dataset", in_memory)
    data = O.oversize(8 * 1024 * 1024)  # 8 MB: under the rig's 12 MB limit
    with association(listener.port, tmp_path / "send") as s:
        r = s.send("eight-mb", data)
    assert r.status == SUCCESS, r
    obj = DoseObject.objects.get(sop_instance_uid=r.sop_uid)
    assert obj.size_bytes >= 8 * 1024 * 1024
    import hashlib

    assert hashlib.sha256(open(obj.path, "rb").read()).hexdigest() == obj.sha256


def test_in_flight_budget_and_size_limit_leave_nothing_behind(listener, tmp_path, settings):
    from dicom_listener.server import start_listener

    settings.DICOM_MAX_INFLIGHT_BYTES = 2 * 1024 * 1024
    server, stats = start_listener(port=0, address="127.0.0.1", spool_dir=tmp_path / "spool2", allowed=["BADSCU"])
    port = server.server_address[1]
    try:
        with association(port, tmp_path / "send") as s:
            big = s.send("three-mb", O.oversize(3 * 1024 * 1024))
            assert big.status == OUT_OF_RESOURCES, big  # the modality keeps it and retries later
            small = s.send("small", O.good("SMALL001"))
            assert small.status == SUCCESS
        assert not list((tmp_path / "spool2" / "tmp").iterdir())
        assert DoseObject.objects.filter(sop_instance_uid=small.sop_uid).exists()
        assert not DoseObject.objects.filter(sop_instance_uid=big.sop_uid).exists()
        intake = server.ae.dosereg_intake
        assert intake.budget.used == 0 and 0 < intake.budget.peak <= 2 * 1024 * 1024
    finally:
        server.shutdown()


def test_a_peer_that_goes_on_sending_far_past_the_limit_is_aborted(listener, tmp_path):
    with association(listener.port, tmp_path / "send") as s:
        r = s.send("runaway", O.oversize(30 * 1024 * 1024))  # limit 12 MB: aborted past 24 MB
        assert r.status is None or not s.assoc.is_established, r
    assert not list((listener.spool / "tmp").iterdir())
    assert not DoseObject.objects.exists()
    assert echo(listener.port) == SUCCESS


def test_a_pdu_announcing_gigabytes_ends_the_connection(listener):
    """pynetdicom would read the whole announced PDU into memory: a 4 GB A-ASSOCIATE-RQ is cut off."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
        s.sendall(struct.pack(">BBL", 0x01, 0x00, 0xFFFFFFF0) + b"\x00" * 4096)
        assert s.recv(10) == b""  # closed by the listener
    assert time.monotonic() - started < 5
    assert echo(listener.port) == SUCCESS

"""Bad input through the real processes: listener subprocess -> spool -> Redis -> Celery worker ->
PostgreSQL, sent by DCMTK's storescu and by a raw-bytes SCU. Bad objects end refused (failure status)
or quarantined with their reason, good objects in the same associations are ingested, and both
processes are still alive and answering afterwards."""
from __future__ import annotations

import subprocess
import time

import pytest

from dosereg.registry.models import DoseObject, IrradiationEvent
from tests.e2e.conftest import ECHOSCU, dcmtk, pg_url, redis_url, stack, wait_until  # noqa: F401 (fixtures)

from . import objects as O
from .conftest import association, echo

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::UserWarning")]

SUCCESS, CANNOT_UNDERSTAND = 0x0000, 0xC000
SETTLE_S = 120  # every acknowledged object ingested or quarantined by the worker within this


def test_bad_input_through_listener_redis_worker_postgresql(stack, tmp_path):
    stack.env["DICOM_MAX_OBJECT_BYTES"] = str(3 * 1024 * 1024)
    stack.start_worker()
    stack.start_listener()
    expect_q: dict[str, str] = {}
    expect_w: dict[str, str] = {}
    goods: list[str] = []

    # 1. raw bytes (what DCMTK would refuse to send): one association, good objects around the bad ones
    with association(stack.port, tmp_path / "raw", calling="MODALITY1") as s:
        for i, (name, factory) in enumerate([("truncated", O.truncated), ("garbage", lambda: O.garbage_with_preamble(seed=11)),
                                             ("sc-as-csr", O.secondary_capture_as), ("fake-deflated", O.fake_deflated)]):
            r = s.send(f"good{i}", O.good(f"STKGOOD{i}"))
            assert r.status == SUCCESS, r
            goods.append(r.sop_uid)
            made = factory()
            data, reason = made[0], made[-1]
            uid = made[1] if len(made) == 3 else None
            r = s.send(name, data, uid)
            assert r.status == SUCCESS, r
            expect_q[r.sop_uid] = reason
        over = s.send("oversize", O.oversize(4 * 1024 * 1024))
        assert over.status == CANNOT_UNDERSTAND, over
        r = s.send("good-last", O.good("STKGOODLAST"))
        assert r.status == SUCCESS, r
        goods.append(r.sop_uid)

    # 2. DCMTK storescu: well-formed DICOM with bad content, one association
    files = []
    for factory in (O.absurd_dose, O.negative_dose, O.absurd_ctdi, O.no_content, O.deep_nesting):
        data, reason = factory()
        path = tmp_path / f"{factory.__name__}.dcm"
        path.write_bytes(data)
        files.append(path)
        expect_q[O.sop_uid(data)] = reason
    for factory in (O.wrong_value_types, O.future_dates):
        data, warning = factory()
        path = tmp_path / f"{factory.__name__}.dcm"
        path.write_bytes(data)
        files.append(path)
        expect_w[O.sop_uid(data)] = warning
    for i in range(2):
        data = O.good(f"STKDCMTK{i}")
        path = tmp_path / f"good-dcmtk-{i}.dcm"
        path.write_bytes(data)
        files.insert(2 + 3 * i, path)
        goods.append(O.sop_uid(data))
    big = tmp_path / "oversize-dcmtk.dcm"
    big.write_bytes(O.oversize(4 * 1024 * 1024))
    files.insert(4, big)
    started = time.perf_counter()
    # --no-halt: a modality's queue goes on after one refused object
    res = stack.storescu(files, calling_ae="MODALITY2", extra=["-v", "--no-halt"], timeout=120)
    out = res.stdout + res.stderr
    assert time.perf_counter() - started < 60, out
    assert out.count("Received Store Response (Error: CannotUnderstand)") == 1, out
    assert out.count("Received Store Response (Success)") == len(files) - 1, out

    total = len(goods) + len(expect_q) + len(expect_w)

    def settled():
        n = DoseObject.objects.exclude(status=DoseObject.STATUS_RECEIVED).count()
        return n if n >= total else 0

    assert wait_until(settled, timeout=SETTLE_S), stack.logs()
    assert DoseObject.objects.count() == total  # the refused objects left no row
    for uid in goods:
        obj = DoseObject.objects.get(sop_instance_uid=uid)
        assert obj.status == DoseObject.STATUS_INGESTED, (uid, obj.quarantine_reason)
        assert IrradiationEvent.objects.filter(dose_object=obj).count() == 3
    for uid, fragment in expect_q.items():
        obj = DoseObject.objects.get(sop_instance_uid=uid)
        assert obj.status == DoseObject.STATUS_QUARANTINED and fragment in obj.quarantine_reason, \
            (fragment, obj.status, obj.quarantine_reason)
    for uid, fragment in expect_w.items():
        obj = DoseObject.objects.get(sop_instance_uid=uid)
        assert obj.status == DoseObject.STATUS_INGESTED and any(fragment in w for w in obj.warnings), obj.warnings

    # both processes survived and answer
    assert stack.listener.poll() is None and all(w.poll() is None for w in stack.workers), stack.logs()
    e = subprocess.run([ECHOSCU, "-aet", "MODALITY2", "-aec", "DOSEREG", "127.0.0.1", str(stack.port)],
                       capture_output=True, text=True, timeout=30)
    assert e.returncode == 0, e.stderr
    assert echo(stack.port, calling="MODALITY1") == SUCCESS
    # and the worker still ingests
    with association(stack.port, tmp_path / "after", calling="MODALITY1") as s:
        r = s.send("after", O.good("STKAFTER"))
    assert r.status == SUCCESS
    assert wait_until(lambda: DoseObject.objects.filter(sop_instance_uid=r.sop_uid,
                                                        status=DoseObject.STATUS_INGESTED).exists(), timeout=60)

"""Fault suite: kill -9 the worker, stop Redis for 30 s, stop PostgreSQL for 30 s, kill the listener
mid-association, fill the spool's filesystem. After recovery every SOP Instance UID that the sender saw
acknowledged with Success is in the registry exactly once, cumulative totals equal a from-scratch
recomputation, no alert e-mail was sent twice, and the spool reconciles with the registry (no stored object in
neither registry nor quarantine). Refusals were failure statuses, never a silent loss."""
from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User

from dosereg.registry.models import DoseObject, IrradiationEvent
from tests.e2e.conftest import wait_until
from tests.faults.conftest import Sender, kill9_group, start_worker_with_beat

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
OUTAGE_S = 30


def make_datasets(n: int, seed: int):
    """Realistic procedures for a handful of patients; some cross alert levels."""
    from dosereg.rdsr import builder as B

    rng = random.Random(seed)
    base = datetime(2026, 10, 1, 8, 0)
    out = []
    for i in range(n):
        when = base + timedelta(days=rng.randint(0, 40), minutes=rng.randint(0, 600))
        spec = B.random_projection_spec(rng, patient_id=f"FAULT{seed}-{i % 6}", study_datetime=when)
        ds = B.build_projection_rdsr(spec)
        B.to_bytes(ds)  # gives it file meta (transfer syntax) as a stored file would have
        out.append(ds)
    return out


@pytest.fixture
def rso(transactional_db):
    group, _ = Group.objects.get_or_create(name="rso")
    user = User.objects.create_user("rso-fault", email="rso@hospital.test", password="x")
    user.groups.add(group)
    return user


def check_invariants(sender: Sender, datasets, smtp=None, timeout: float = 180.0, *, spool_dir) -> None:
    expected = {str(d.SOPInstanceUID) for d in datasets}
    assert set(sender.acked) == expected, f"sender gave up on {len(expected - set(sender.acked))} objects"
    assert len(sender.acked) == len(set(sender.acked)), "an object was acknowledged twice"

    def all_in():
        return DoseObject.objects.filter(sop_instance_uid__in=expected, status=DoseObject.STATUS_INGESTED).count() == len(expected)

    assert wait_until(all_in, timeout=timeout), Counter(DoseObject.objects.values_list("status", flat=True))
    counts = Counter(DoseObject.objects.values_list("sop_instance_uid", flat=True))
    assert {u: c for u, c in counts.items() if c != 1} == {}
    assert set(counts) == expected
    from dosereg.rdsr import extract_bytes
    from dosereg.rdsr.builder import to_bytes

    for ds in datasets[:10]:
        n_events = len(extract_bytes(to_bytes(ds)).events)
        assert IrradiationEvent.objects.filter(dose_object__sop_instance_uid=str(ds.SOPInstanceUID)).count() == n_events
    _check_cumulative_totals()
    _check_reconciliation(spool_dir)
    if smtp is not None:
        time.sleep(3)
        seen = Counter((m["To"], m["Subject"]) for m in smtp.messages)
        assert {k: v for k, v in seen.items() if v > 1} == {}, "an alert e-mail was sent twice"


def _check_reconciliation(spool_dir) -> None:
    """Acknowledged means kept: every object in the spool is in the registry (or its quarantine)."""
    from dicom_listener.reconcile import spool_reconcile
    from dicom_listener.spool import Spool

    report = spool_reconcile(spool=Spool(spool_dir), grace_s=0)
    assert report["unregistered"] == 0 and report["ok"], report
    assert report["files"] >= 1


def _check_cumulative_totals() -> None:
    """What the workers left equals a recomputation from scratch."""
    try:
        from dosereg.exposure.models import PatientExposureWindow
        from dosereg.exposure.recompute import patient_exposure_recompute
    except ImportError:
        return
    from dosereg.registry.models import Patient

    def snapshot():
        return sorted(
            PatientExposureWindow.objects.values_list(
                "patient_id", "anchor_study_id", "window_days", "procedure_count", "kap_gy_cm2", "kar_max_gy",
                "fluoro_time_s", "dlp_mgy_cm")
            .exclude(anchor_study__isnull=True),
            key=repr,
        )

    time.sleep(2)  # recompute tasks run after ingest commits
    before = snapshot()
    for pid in Patient.objects.values_list("pk", flat=True):
        patient_exposure_recompute(patient_id=pid, notify=False)
    assert snapshot() == before


def test_worker_killed_mid_burst(fault_stack, rso):
    datasets = make_datasets(40, seed=1)
    start_worker_with_beat(fault_stack)
    fault_stack.start_listener()
    sender = Sender(fault_stack.port, datasets)
    t = sender.start()
    sender.wait_acked(12)
    kill9_group(fault_stack.workers[0])
    t.join(240)
    start_worker_with_beat(fault_stack)
    check_invariants(sender, datasets, smtp=fault_stack.smtp, spool_dir=fault_stack.env["SPOOL_DIR"])


def test_redis_stopped_for_30s(fault_stack, rso):
    datasets = make_datasets(40, seed=2)
    start_worker_with_beat(fault_stack)
    fault_stack.start_listener()
    sender = Sender(fault_stack.port, datasets, pause_s=0.5)
    t = sender.start()
    sender.wait_acked(8)
    fault_stack.redis.kill()  # the queue's contents are gone with it
    time.sleep(OUTAGE_S)
    fault_stack.redis.start()
    t.join(240)
    check_invariants(sender, datasets, smtp=fault_stack.smtp, spool_dir=fault_stack.env["SPOOL_DIR"])


def test_postgresql_stopped_for_30s(fault_stack, rso):
    datasets = make_datasets(40, seed=3)
    start_worker_with_beat(fault_stack)
    fault_stack.start_listener()
    sender = Sender(fault_stack.port, datasets, pause_s=0.5)
    t = sender.start()
    sender.wait_acked(8)
    fault_stack.proxy.down()
    time.sleep(OUTAGE_S)
    fault_stack.proxy.up()
    t.join(240)
    check_invariants(sender, datasets, smtp=fault_stack.smtp, spool_dir=fault_stack.env["SPOOL_DIR"])


def test_listener_killed_mid_association(fault_stack, rso):
    datasets = make_datasets(40, seed=4)
    start_worker_with_beat(fault_stack)
    fault_stack.start_listener()
    sender = Sender(fault_stack.port, datasets)
    t = sender.start()
    sender.wait_acked(10)
    fault_stack.listener.kill()
    fault_stack.listener.wait()
    time.sleep(2)
    fault_stack.start_listener()
    t.join(240)
    check_invariants(sender, datasets, smtp=fault_stack.smtp, spool_dir=fault_stack.env["SPOOL_DIR"])


def test_spool_filesystem_full(fault_stack, rso, tmp_path):
    mnt = tmp_path / "small-spool"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True, text=True)
    from tests.conftest import require

    require(r.returncode == 0, f"a tmpfs mount for the spool ({r.stderr.strip()})")
    try:
        fault_stack.env["SPOOL_DIR"] = str(mnt)
        datasets = make_datasets(40, seed=5)
        start_worker_with_beat(fault_stack)
        fault_stack.start_listener()
        sender = Sender(fault_stack.port, datasets, pause_s=0.05)
        t = sender.start()
        assert wait_until(lambda: sender.refused().get(0xA700, 0) > 0, timeout=120), "the spool never filled up"
        assert t.is_alive()  # the modality keeps the refused object and retries
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        t.join(240)
        assert sender.refused()[0xA700] >= 1
        check_invariants(sender, datasets, smtp=fault_stack.smtp, spool_dir=fault_stack.env["SPOOL_DIR"])
    finally:
        fault_stack.stop()
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)

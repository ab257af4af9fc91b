"""An object whose ingest kills its worker every time (the kernel's OOM killer ending the pool process that
parses it) is not delivered forever: after INGEST_MAX_DELIVERIES deliveries it is quarantined with the reason,
and the worker goes on with the next object. Real listener, real Celery worker, Redis and PostgreSQL."""
from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from dosereg.registry.models import DoseObject
from tests.e2e.conftest import dcmtk, pg_url, redis_url, stack, wait_until  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _write(path, *, patient_id: str, n_events: int):
    from dosereg.rdsr import builder as B

    spec = B.random_projection_spec(random.Random(n_events), kind="fixed_angio", n_events=n_events,
                                    patient_id=patient_id)
    return B.write(B.build_projection_rdsr(spec), path)


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of stat: the parent's pid
            out.append(int(stat.parent.name))
    return out


def _kill_pool_processes(worker) -> int:
    children = _children(worker.pid)
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(children)


def test_an_object_that_kills_its_worker_is_quarantined_after_max_deliveries(stack, tmp_path):
    stack.env["INGEST_MAX_DELIVERIES"] = "3"
    stack.start_listener()
    worker = stack.start_worker(concurrency=1)
    big = _write(tmp_path / "big.dcm", patient_id="POISON-1", n_events=6000)
    r = stack.storescu([big])
    assert r.returncode == 0, r.stderr
    obj = wait_until(lambda: DoseObject.objects.filter(calling_ae="MODALITY1").first(), timeout=60)
    assert obj is not None
    for delivery in (1, 2, 3):
        # the delivery is counted before the parse starts: the pool process dies while parsing (as under OOM)
        assert wait_until(lambda: DoseObject.objects.get(pk=obj.pk).deliveries >= delivery, timeout=120, interval=0.05)
        assert DoseObject.objects.get(pk=obj.pk).status == DoseObject.STATUS_RECEIVED, "ingested before the kill"
        assert _kill_pool_processes(worker) >= 1
    # the broker delivers it a 4th time: quarantined at once, not parsed again
    assert wait_until(lambda: DoseObject.objects.get(pk=obj.pk).status != DoseObject.STATUS_RECEIVED, timeout=120)
    obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_QUARANTINED, obj.status
    assert obj.deliveries == 3 and "worker lost" in obj.quarantine_reason and obj.study_id is None
    # the worker is still serving: the next object gets in
    small = _write(tmp_path / "small.dcm", patient_id="POISON-2", n_events=3)
    assert stack.storescu([small]).returncode == 0
    assert wait_until(lambda: DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count() == 1, timeout=120)
    assert worker.poll() is None

"""The skin queue's own worker, as compose runs it (-Q skin, -c 1), through the real listener, Redis and PostgreSQL
(issue 15 part 4): it computes a procedure's peak skin dose after the ingest, and while ingest tasks wait in the
broker it waits for them (SKIN_YIELD_MAX_S) instead of competing with them."""
from __future__ import annotations

import datetime as dt
import sys
import time

import pytest

from dosereg.rdsr import builder as b
from dosereg.registry.models import DoseObject, Study
from dosereg.skindose.models import StudySkinDose
from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.e2e


def procedure(path, patient_id: str):
    event = dict(dose_rp_gy=0.5, dap_gy_cm2=40.0, kvp=80.0, event_type="fluoroscopy", positioner_primary_angle_deg=0.0,
                 positioner_secondary_angle_deg=0.0, distance_source_to_detector_mm=1200.0,
                 distance_source_to_isocenter_mm=800.0, table_longitudinal_position_mm=0.0,
                 table_lateral_position_mm=500.0, table_height_position_mm=0.0, collimated_field_area_m2=0.01,
                 filters=[("copper", 0.1)])
    spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2026, 11, 30, 9), manufacturer="Siemens",
                                model="AXIOM-Artis", patient_id=patient_id, patient_name="Skin^Worker",
                                events=[b.ProjectionEventSpec(**event) for _ in range(6)])
    return b.write(b.build_projection_rdsr(spec), path)


def test_the_skin_worker_waits_for_an_ingest_backlog_then_computes(stack, tmp_path):
    stack.env.update(SKIN_YIELD_MAX_S="120", SKIN_YIELD_POLL_S="1")
    stack.start_listener()
    ingest_worker = stack.start_worker()
    r = stack.storescu([procedure(tmp_path / "p1.dcm", "SKINQ-1")])
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count() == 1, 90), stack.logs()
    first = Study.objects.get(patient__patient_id="SKINQ-1")
    # its skin task is on the "skin" queue, which no worker takes yet
    assert not StudySkinDose.objects.filter(study_id=first.pk).exists()

    # the ingest worker stops; the next procedure's ingest task waits in the broker: a backlog
    ingest_worker.terminate()
    ingest_worker.wait(30)
    stack.workers.remove(ingest_worker)
    r = stack.storescu([procedure(tmp_path / "p2.dcm", "SKINQ-2")])
    assert r.returncode == 0, r.stderr
    assert DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED).count() == 1

    # the skin-only worker starts and takes the first procedure's task, but waits: an ingest is waiting
    skin = stack._spawn([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-Q", "skin", "-c", "1",
                         "--without-gossip", "--without-mingle", "-n", "skin@%h", "-l", "INFO"], "skin")
    stack.workers.append(skin)
    log = stack.logdir / "skin.log"
    assert wait_until(lambda: "ready" in log.read_text(errors="replace"), 60), stack.logs()
    assert wait_until(lambda: "dosereg.skin_dose_studies" in log.read_text(errors="replace") and "Task" in
                      log.read_text(errors="replace"), 30), stack.logs()  # received, not yet done
    time.sleep(5)
    assert not StudySkinDose.objects.exists(), "the skin worker computed while an ingest waited in the broker"
    assert skin.poll() is None

    # the ingest worker comes back: the backlog drains, then the skin worker computes both procedures
    stack.start_worker()
    assert wait_until(lambda: StudySkinDose.objects.count() == 2, 120), stack.logs()
    for row in StudySkinDose.objects.all():
        assert row.computable and row.psd_gy > 0
    assert DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count() == 2

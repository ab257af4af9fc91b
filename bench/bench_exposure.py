#!/usr/bin/env python
"""Benchmark: cumulative exposure recompute for one patient with 500 studies.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_exp python bench/bench_exposure.py [--studies 500] [--repeat 15]

Creates a throw-away test database (``test_<name>``), bulk-creates a patient with N
studies (RF/XA with plane totals and CT with events, over ~2 years), then times
``patient_exposure_recompute`` and counts its queries with CaptureQueriesContext:

* cold    — first run: per-study facts derived for all N studies, all window rows written
* warm    — nothing changed (the steady state for a re-sent object)
* late    — one earlier study arrives late (changes the windows of later studies)
* all     — every study changed (e.g. after a parser upgrade)

Target: < 50 ms and a fixed number of queries independent of N.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")  # a benchmark on PostgreSQL is not a deployment (settings.PRODUCTION)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_exp")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=timezone.utc)


def populate(n: int):
    from dosereg.registry.models import DoseObject, IrradiationEvent, Patient, PlaneTotal, Study

    p = Patient.objects.create(patient_id="BENCH-500", issuer="BENCH")
    studies = []
    for i in range(n):
        ct = i % 5 == 0
        studies.append(Study(
            study_instance_uid=f"2.25.9{i:06d}", patient=p, study_datetime=T0 - timedelta(hours=35 * i),  # ~2 years
            procedure_modality="CT" if ct else ("XA" if i % 2 else "RF"), study_description="Chest abdomen pelvis" if ct else "Coronary angiography",
            dap_total_gy_cm2=None if ct else 20.0 + i % 40, dose_rp_max_plane_gy=None if ct else 0.2 + (i % 9) / 10,
            fluoro_time_total_s=None if ct else 300.0 + i % 200, dlp_total_mgy_cm=600.0 + i % 300 if ct else None,
            ctdivol_max_mgy=8.0 + i % 20 if ct else None, event_count=1,
        ))
    Study.objects.bulk_create(studies, batch_size=1000)
    studies = list(Study.objects.filter(patient=p).order_by("id"))
    objs = DoseObject.objects.bulk_create([
        DoseObject(sop_instance_uid=f"2.25.8{i:06d}", sha256=f"{i:064x}", path="/dev/null", status=DoseObject.STATUS_INGESTED, study=s)
        for i, s in enumerate(studies)
    ], batch_size=1000)
    PlaneTotal.objects.bulk_create([
        PlaneTotal(dose_object=o, study=s, plane="single", dap_total_gy_cm2=s.dap_total_gy_cm2, dose_rp_total_gy=s.dose_rp_max_plane_gy,
                   fluoro_time_total_s=s.fluoro_time_total_s, reference_point_code="DCM:113860")
        for o, s in zip(objs, studies) if s.procedure_modality != "CT"
    ], batch_size=1000)
    IrradiationEvent.objects.bulk_create([
        IrradiationEvent(study=s, dose_object=o, irradiation_event_uid=f"2.25.7{s.pk}", ctdivol_mgy=s.ctdivol_max_mgy,
                         dlp_mgy_cm=s.dlp_total_mgy_cm, target_region="Chest, Abdomen and Pelvis", ctdiw_phantom="body_32cm")
        for o, s in zip(objs, studies) if s.procedure_modality == "CT"
    ], batch_size=1000)
    return p, studies


def timed(fn, repeat: int):
    times, queries = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        queries.append(len(ctx.captured_queries))
    return times, queries


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        from django.utils import timezone

        from dosereg.exposure.models import Alert, PatientExposureWindow
        from dosereg.exposure.recompute import patient_exposure_recompute
        from dosereg.registry.models import Study

        p, studies = populate(args.studies)
        print(f"database: {connection.vendor} {connection.settings_dict['NAME']}; patient with {len(studies)} studies")

        def run():
            return patient_exposure_recompute(patient_id=p.pk)

        rows = []
        t, q = timed(run, 1)
        rows.append(("cold (derive all per-study facts, write all windows)", t, q))
        t, q = timed(run, args.repeat)
        rows.append(("warm (nothing changed)", t, q))

        late = studies[-1]

        t, q = timed(lambda: (Study.objects.filter(pk=late.pk).update(updated_at=timezone.now()), run()), args.repeat)
        rows.append(("one study changed", t, [x - 1 for x in q]))

        def all_changed():
            Study.objects.filter(patient=p).update(updated_at=timezone.now())
            run()

        t, q = timed(all_changed, max(3, args.repeat // 3))
        rows.append((f"all {len(studies)} studies changed", t, [x - 1 for x in q]))

        print(f"{'scenario':58} {'best ms':>8} {'median ms':>10} {'queries':>8}")
        for name, t, q in rows:
            print(f"{name:58} {min(t):8.1f} {statistics.median(t):10.1f} {max(q):8d}")
        print(f"window rows: {PatientExposureWindow.objects.filter(patient=p).count()}  alerts: {Alert.objects.filter(patient=p).count()}")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

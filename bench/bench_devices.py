#!/usr/bin/env python
"""Benchmark: device split and merge with their software history, and the studies API with each study's identity as
received (issue 16).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_devices python bench/bench_devices.py \
        [--scales 10000,100000] [--repeat 20] [--keep]

For each scale (studies) a throw-away PostgreSQL test database is filled with generate_series: one device whose
studies arrived with two received identities (serials SN-A and SN-B, half each), two reports per study (Software
Versions "VA" / "VB", every third study's reports "VS", a version both units ran), the device's software history
(VA, VB, VS). Then, timed with their SQL statements:
  * split: the SN-B identity off to a new device (half the studies and reports, the VB history row, VS shared);
  * merge: the new device back into the first (VS combined);
  * GET /api/v1/studies/?page_size=100 and =1000 as a physicist (each study's received identity: its identity row
    joined, the reports' calling AE and Software Versions in one query for the page), p50/p95 ms and queries, and the
    same list without the identity (as before it was added) in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_devices")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from bench.bench_pages import measure, pct  # noqa: E402


def populate(n_studies: int) -> dict:
    from dosereg.registry import device_identity as DI
    from dosereg.registry.models import Device, DeviceIdentifier, DeviceIdentity, DeviceSoftwareVersion

    device = Device.objects.create(manufacturer="Vendor", model="Angio 9", serial_number="SN-A", station_name="ROOM-X",
                                   display_name="ROOM-X", modality="XA", institution="Northfield")
    idents = {}
    for serial in ("SN-A", "SN-B"):
        rid = DI.received("Vendor", "Angio 9", serial, "ROOM-X", "")
        idents[serial] = DeviceIdentity.objects.create(device=device, key=rid.key, manufacturer="Vendor", model="Angio 9",
                                                       serial_number=serial, station_name="ROOM-X")
        DeviceIdentifier.objects.bulk_create([DeviceIdentifier(device=device, kind=k, value=v) for k, v in rid.identifiers()],
                                             ignore_conflicts=True)
    for sw in ("VA", "VB", "VS"):
        DeviceSoftwareVersion.objects.create(device=device, software_versions=sw)
    n_patients = max(1, n_studies // 2)
    a, b = idents["SN-A"].pk, idents["SN-B"].pk
    with connection.cursor() as c:
        c.execute(f"""
            INSERT INTO registry_patient (patient_id, issuer, name, sex, pseudonymised, created_at)
            SELECT 'DP' || g, 'BENCH', 'Bench^Device' || g, 'O', false, now() FROM generate_series(1, {n_patients}) g""")
        c.execute(f"""
            INSERT INTO registry_study (study_instance_uid, patient_id, device_id, received_identity_id, study_datetime,
                accession_number, study_description, procedure_modality, pregnancy_status, pregnancy_status_override,
                dap_total_gy_cm2, event_count, has_ionising_dose, not_patient_reason, flags, created_at, updated_at)
            SELECT '2.25.77' || g, (SELECT min(id) FROM registry_patient) + g % {n_patients}, {device.pk},
                   CASE WHEN g % 2 = 0 THEN {a} ELSE {b} END, now() - g * interval '7 minutes', 'A' || g, 'Bench', 'XA',
                   '', '', 1.5, 1, true, '', '[]'::jsonb, now(), now()
            FROM generate_series(1, {n_studies}) g""")
        c.execute("""
            INSERT INTO registry_doseobject (sop_instance_uid, sop_class_uid, calling_ae, software_versions, path, size_bytes,
                sha256, status, quarantine_reason, attempts, deliveries, received_at, ingested_at, study_id, device_id,
                source_kind, template_id, scope_of_accumulation, warnings, flags)
            SELECT '2.25.78' || s.id || '.' || k, '1.2.840.10008.5.1.4.1.1.88.67', 'ANGIO9', CASE
                       WHEN s.id %% 3 = 0 THEN 'VS' WHEN s.received_identity_id = %s THEN 'VA' ELSE 'VB' END,
                   '/dev/null', 0, md5(s.id || '.' || k), 'ingested', '', 1, 1, s.study_datetime + k * interval '1 minute',
                   s.study_datetime, s.id, s.device_id, 'rdsr', '10001', 'study', '[]'::jsonb, '[]'::jsonb
            FROM registry_study s CROSS JOIN generate_series(1, 2) k""", [a])
        c.execute("VACUUM ANALYZE registry_study")
        c.execute("VACUUM ANALYZE registry_doseobject")
    return {"studies": n_studies, "reports": 2 * n_studies, "device": device.pk, "split_identity": b}


def timed(fn):
    connection.queries_log.clear()  # the log keeps 9,000 statements: a full one counts nothing
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        out = fn()
        ms = (time.perf_counter() - t0) * 1000
    return out, ms, len(ctx.captured_queries)


def run_scale(n: int, repeat: int, keep: bool) -> dict:
    from django.conf import settings
    from django.test import Client

    from dosereg.registry.models import DeviceSoftwareVersion
    from dosereg.web.services import user_create

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        t0 = time.perf_counter()
        size = populate(n)
        fill_s = time.perf_counter() - t0
        # the registry's part (pipeline.flow.device_split / device_merge then run the follow-up: not timed here)
        from dosereg.registry import devices as registry_devices

        change, split_ms, split_q = timed(lambda: registry_devices.device_split(
            device_id=size["device"], identity_ids=[size["split_identity"]], display_name="Bench split"))
        hist = {d: sorted(DeviceSoftwareVersion.objects.filter(device_id=d).values_list("software_versions", flat=True))
                for d in (size["device"], change.device_id)}
        merged, merge_ms, merge_q = timed(lambda: registry_devices.device_merge(source_id=change.device_id,
                                                                               target_id=size["device"]))
        client = Client()
        client.force_login(user_create(username="bench-dev-phys", password="bench-pass-123", role="physicist"))
        from dosereg.web import api as web_api

        api = {}
        with_identity = (web_api._with_received_identity, web_api._attach_received_objects)
        without = (lambda qs, request: qs, lambda studies, request: None)
        for label, (select, attach) in (("with identity", with_identity), ("without (before)", without)):
            # the same list without the identity (as before it was added): what it costs
            web_api._with_received_identity, web_api._attach_received_objects = select, attach
            try:
                for page in (100, 1000):
                    connection.queries_log.clear()
                    times, counts = measure(client, [f"/api/v1/studies/?page_size={page}"], repeat)
                    api[(label, page)] = {"p50": statistics.median(times), "p95": pct(times, 95), "queries": sorted(counts)}
            finally:
                web_api._with_received_identity, web_api._attach_received_objects = with_identity
        return {"size": size, "fill_s": fill_s, "split": (split_ms, split_q, change.moved, hist),
                "merge": (merge_ms, merge_q, merged.moved), "api": api}
    finally:
        if keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=keep)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="10000,100000", help="studies per run, comma-separated")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    setup_test_environment()
    for n in [int(x) for x in args.scales.split(",")]:
        r = run_scale(n, args.repeat, args.keep)
        s = r["size"]
        print(f"\n{s['studies']:,} studies, {s['reports']:,} reports on one device (filled in {r['fill_s']:.0f} s)")
        ms, q, moved, hist = r["split"]
        print(f"  split (half the studies)   {ms:8.1f} ms  {q:3d} statements  moved {moved}")
        print(f"    software history after:   device {hist[s['device']]}  new device {hist[max(hist)]}")
        ms, q, moved = r["merge"]
        print(f"  merge back                 {ms:8.1f} ms  {q:3d} statements  moved {moved}")
        for (label, page), v in r["api"].items():
            print(f"  GET /api/v1/studies/?page_size={page:<5} {label:17} p50 {v['p50']:7.1f} ms  p95 {v['p95']:7.1f} ms  "
                  f"queries {','.join(map(str, v['queries']))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

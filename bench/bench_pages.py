#!/usr/bin/env python
"""Benchmark: server time and SQL queries of the main pages and API lists at two registry sizes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_pages python bench/bench_pages.py \
        [--scales 100000,1000000] [--repeat 30] [--sql] [--exposure service|sql] [--templates 3000] [--keep]
    python bench/bench_pages.py --scales 1000000 --existing test_dosereg_bench_pages   # re-measure a kept database

For each scale (irradiation events; studies = events/10, patients = studies x 0.3) a throw-away
PostgreSQL test database is filled by ``bench/generate.py`` (builder-made RDSRs parsed by the project's
parser and written by the ingest writer as templates, replicated server-side with new patients, dates, UIDs
and scaled doses; exposure windows and alerts by the exposure services; protocol mappings; protocol audit
summaries), ANALYZEd, and each page is requested in-process through Django's test client (middleware, view,
template, audit write: the server's whole share of a request). ``--sql`` fills it the old way instead
(generate_series, synthetic values). Prints p50/p95 ms and the SQL query count per page, and the 1M/100k
time ratio.

Targets (issue 5): dashboard, patient history and protocol audit p95 < 300 ms at 1M events, a fixed number
of queries per page, and time at 1M <= 2x time at 100k.
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
os.environ.setdefault("DOSEREG_PRODUCTION", "false")  # a benchmark on PostgreSQL is not a deployment (settings.PRODUCTION)
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_pages")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

N_DEVICES = 24
MODALITIES = ["RF", "RF", "XA", "CT", "CT", "DX"]  # by device_id % 6
DESCRIPTIONS = {
    "RF": ["Coronary angiography", "PCI", "Barium swallow", "Hip fracture fixation", "ERCP", "Nephrostomy",
           "Cerebral angiography", "Lumbar facet injection"],
    "XA": ["Coronary angiography", "PCI", "Cerebral embolisation", "EVAR", "Peripheral angioplasty", "Hepatic chemoembolisation"],
    "CT": ["CT Chest", "CT Head", "CT Abdomen Pelvis", "CT Chest Abdomen Pelvis", "CTPA", "CT KUB", "CT Cervical Spine", "CT Sinuses"],
    "DX": ["Chest PA", "Abdomen AP", "Pelvis AP", "Knee AP/LAT", "Hand", "Lumbar spine AP/LAT"],
}


def sql_array(items: list[str]) -> str:
    return "ARRAY[" + ",".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def _literal(field) -> str:
    """SQL literal of a model field's default (other apps' tables gain columns; fill what we do not set)."""
    from django.db import models

    default = field.get_default()
    if isinstance(field, models.JSONField):
        import json

        return "'" + json.dumps(default if default is not None else {}).replace("'", "''") + "'::jsonb"
    if isinstance(field, (models.DateTimeField,)):
        return "now()"
    if isinstance(field, models.DateField):
        return "current_date"
    if isinstance(field, models.BooleanField):
        return "true" if default else "false"
    if isinstance(field, (models.IntegerField, models.FloatField)):
        return str(default or 0)
    return "'" + str(default if default is not None else "").replace("'", "''") + "'"


def insert_select(model, given: dict[str, str], from_sql: str) -> str:
    """INSERT ... SELECT with ``given`` column expressions plus defaults for every other NOT NULL column."""
    cols = dict(given)
    for f in model._meta.concrete_fields:
        if f.primary_key or f.column in cols or f.null:
            continue
        cols[f.column] = _literal(f)
    names = ", ".join(f'"{c}"' for c in cols)
    return f"INSERT INTO {model._meta.db_table} ({names}) SELECT {', '.join(cols.values())} {from_sql}"


def populate_sql(n_events: int) -> dict:
    """The former fill: generate_series, synthetic values ("now" windows and open alerts only)."""
    from dosereg.exposure.models import Alert, PatientExposureWindow
    n_studies = n_events // 10
    n_patients = max(1, int(n_studies * 0.3))
    with connection.cursor() as c:
        c.execute(f"""
            INSERT INTO registry_device (manufacturer, model, serial_number, station_name, device_observer_uid, software_versions,
                institution, department, display_name, modality, first_seen, last_seen)
            SELECT 'Vendor ' || (g % 4), 'Model ' || g, 'SN' || g, 'ROOM' || g, '2.25.' || g, 'v' || (g % 3), 'Northfield', '',
                   'ROOM' || g || ' Vendor ' || (g % 4), (ARRAY['RF','RF','XA','CT','CT','DX'])[1 + g % 6],
                   now() - interval '900 days', now() - (g % 3) * interval '1 hour'
            FROM generate_series(1, {N_DEVICES}) g""")
        c.execute(f"""
            INSERT INTO registry_patient (patient_id, issuer, name, sex, birth_date, pseudonymised, created_at)
            SELECT 'BP' || lpad(g::text, 8, '0'), 'BENCH', 'Bench^Patient' || g, CASE WHEN g % 2 = 0 THEN 'F' ELSE 'M' END,
                   date '1940-01-01' + (g % 25000), false, now()
            FROM generate_series(1, {n_patients}) g""")
        desc_case = "CASE d.modality " + " ".join(
            f"WHEN '{m}' THEN ({sql_array(v)})[1 + (g * 31) % {len(v)}]" for m, v in DESCRIPTIONS.items()) + " END"
        c.execute(f"""
            INSERT INTO registry_study (study_instance_uid, patient_id, device_id, study_datetime, accession_number, study_description,
                procedure_modality, pregnancy_status, pregnancy_status_override, dap_total_gy_cm2, dose_rp_max_plane_gy,
                fluoro_time_total_s, dlp_total_mgy_cm, ctdivol_max_mgy, event_count, has_ionising_dose, created_at, updated_at)
            SELECT '2.25.1' || g, 1 + (g::bigint * 7919) % {n_patients}, d.id,
                   now() - ((g * 104729) % (730 * 24 * 60)) * interval '1 minute', 'A' || g, {desc_case}, d.modality,
                   CASE WHEN g % 997 = 0 THEN 'possibly_pregnant' WHEN g % 3 = 0 THEN 'not_pregnant' ELSE '' END, '',
                   CASE WHEN d.modality IN ('RF','XA','DX') THEN 0.1 + ((g * 13) % 1000) / 10.0 END,
                   CASE WHEN d.modality IN ('RF','XA') THEN ((g * 17) % 3000) / 1000.0 END,
                   CASE WHEN d.modality IN ('RF','XA') THEN 10 + (g * 7) % 3000 END,
                   CASE WHEN d.modality = 'CT' THEN 50 + (g * 11) % 1500 END,
                   CASE WHEN d.modality = 'CT' THEN 2 + (g * 3) % 60 END,
                   10, true, now(), now()
            FROM generate_series(1::bigint, {n_studies}) g JOIN registry_device d ON d.id = 1 + g % {N_DEVICES}""")
        c.execute(f"""
            INSERT INTO registry_doseobject (sop_instance_uid, sop_class_uid, calling_ae, path, size_bytes, sha256, status,
                quarantine_reason, attempts, received_at, enqueued_at, ingested_at, study_id, device_id, source_kind, template_id,
                scope_of_accumulation, warnings)
            SELECT '2.25.2' || s.id, '1.2.840.10008.5.1.4.1.1.88.67', 'MODALITY', '/dev/null', 0, '', 'ingested', '', 1,
                   s.study_datetime + interval '5 minutes', s.study_datetime, s.study_datetime, s.id, s.device_id, 'rdsr', '10001',
                   'study', '[]'::jsonb
            FROM registry_study s""")
        c.execute("""
            INSERT INTO registry_doseobject (sop_instance_uid, sop_class_uid, calling_ae, path, size_bytes, sha256, status,
                quarantine_reason, attempts, received_at, warnings, source_kind, template_id, scope_of_accumulation)
            SELECT 'bad.' || g, '', 'MODALITY', '/dev/null', 0, '', 'quarantined', 'not a DICOM file', 1, now() - g * interval '1 hour',
                   '[]'::jsonb, '', '', ''
            FROM generate_series(1, 40) g""")
        c.execute(f"""
            INSERT INTO registry_irradiationevent (study_id, dose_object_id, irradiation_event_uid, event_type, datetime, plane,
                protocol, dap_gy_cm2, dose_rp_gy, reference_point_definition, pulse_rate_per_s, number_of_frames,
                irradiation_duration_s, fluoro_mode, dose_mode, ctdivol_mgy, dlp_mgy_cm, ctdiw_phantom, target_region,
                target_region_code, extra)
            SELECT s.id, o.id, '2.25.3' || s.id || '.' || k,
                   CASE WHEN s.procedure_modality = 'CT' THEN 'ct_spiral' WHEN k % 3 = 0 THEN 'stationary' ELSE 'fluoroscopy' END,
                   s.study_datetime + k * interval '1 minute', 'single', 'Protocol ' || (k % 4),
                   s.dap_total_gy_cm2 / 10, s.dose_rp_max_plane_gy / 10, '',
                   CASE WHEN s.procedure_modality IN ('RF','XA') THEN (ARRAY[3.75, 7.5, 15, 30])[1 + (s.id + k) % 4] END,
                   CASE WHEN s.procedure_modality IN ('RF','XA') THEN (s.id + k) % 60 END,
                   CASE WHEN s.procedure_modality IN ('RF','XA') THEN 5 + (s.id * k) % 120 END,
                   CASE WHEN s.procedure_modality IN ('RF','XA') THEN 'pulsed' ELSE '' END,
                   CASE WHEN s.procedure_modality IN ('RF','XA') THEN (ARRAY['low','normal','high'])[1 + (s.id + k) % 3] ELSE '' END,
                   s.ctdivol_max_mgy, s.dlp_total_mgy_cm / 10, '', '', '', '{{}}'::jsonb
            FROM registry_study s JOIN registry_doseobject o ON o.study_id = s.id CROSS JOIN generate_series(1, 10) k""")
        # protocol mappings for every vendor name (the audit page groups by standard name)
        c.execute("""
            INSERT INTO web_standardname (name, modality, notes)
            SELECT DISTINCT study_description, CASE WHEN procedure_modality = 'XA' THEN 'RF' ELSE procedure_modality END, ''
            FROM registry_study
            ON CONFLICT DO NOTHING""")
        c.execute("""
            INSERT INTO web_protocolmapping (modality, source_name, standard_name_id, updated_at)
            SELECT DISTINCT s.procedure_modality, s.study_description, sn.id, now()
            FROM registry_study s JOIN web_standardname sn
              ON sn.name = s.study_description AND sn.modality = CASE WHEN s.procedure_modality = 'XA' THEN 'RF' ELSE s.procedure_modality END
            ON CONFLICT DO NOTHING""")
        # cumulative windows ("now") per patient, as the exposure app keeps them, and open alerts
        c.execute(insert_select(PatientExposureWindow, {
            "patient_id": "p.id", "window_days": "w", "start": "now() - w * interval '1 day'", "end": "now()",
            "procedure_count": "1 + p.id % 5", "kap_gy_cm2": "(p.id * 37) % 900 / 3.0", "fluoro_time_s": "(p.id * 7) % 5000",
            "dlp_mgy_cm": "(p.id * 11) % 4000", "kar_max_gy": "(p.id % 50) / 10.0",
        }, "FROM registry_patient p CROSS JOIN unnest(ARRAY[60, 84, 365]) w"))
        c.execute(insert_select(Alert, {
            "patient_id": "s.patient_id", "rule_id": "(SELECT min(id) FROM exposure_rule)", "rule_key": "'bench-rule'",
            "level": "'first'", "subject": "'bench-' || s.id", "study_id": "s.id", "study_uid": "s.study_instance_uid",
            "quantity": "'kap_gy_cm2'", "value": "s.dap_total_gy_cm2", "unit": "'Gy·cm²'", "threshold": "50",
            "severity": "(ARRAY['low','normal','high'])[1 + s.id % 3]",
            "status": "CASE WHEN s.id % 4 = 0 THEN 'follow_up' ELSE 'open' END",
            "title": "'KAP above first notification level'", "message": "'bench alert'", "raised_at": "s.study_datetime",
            "follow_up_due": "CASE WHEN s.id % 4 = 0 THEN current_date + (s.id % 10)::int END",
        }, "FROM registry_study s WHERE s.id % 97 = 0 AND s.dap_total_gy_cm2 IS NOT NULL LIMIT 600"))
        c.execute("ANALYZE")
        c.execute("SELECT count(*) FROM registry_irradiationevent")
        events = c.fetchone()[0]
    from dosereg.protocols.services import summaries_rebuild_all

    summaries_rebuild_all()
    return {"events": events, "studies": n_studies, "patients": n_patients}


def populate(n_events: int, *, sql: bool = False, **options) -> dict:
    if sql:
        return populate_sql(n_events)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import generate

    return generate.populate(n_events, **options)


def users():
    from django.utils import timezone

    from dosereg.registry.models import Patient
    from dosereg.web.models import PatientAccount
    from dosereg.web.services import user_create

    out = {r: user_create(username=f"bench-{r}", password="bench-pass-123", role=r) for r in ("rso", "physicist", "patient")}
    busiest = Patient.objects.get(pk=1)
    PatientAccount.objects.get_or_create(user=out["patient"], defaults={
        "patient": busiest, "token_sha256": "bench", "expires_at": timezone.now(), "verified_at": timezone.now()})
    return out


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def measure(client, urls: list[str], repeat: int) -> tuple[list[float], set[int]]:
    times, counts = [], set()
    for url in urls[:1]:
        client.get(url)  # warm caches (templates, plans)
    for i in range(repeat):
        url = urls[i % len(urls)]
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            resp = client.get(url)
            if hasattr(resp, "streaming_content"):
                b"".join(resp.streaming_content)
            times.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, (url, resp.status_code)
        counts.add(len(ctx.captured_queries))
    return times, counts


def measure_pages(size: dict, repeat: int) -> dict:
    from django.test import Client

    from dosereg.registry.models import Study

    u = users()
    patient_ids = list(range(1, 1 + min(size["patients"], 997 * 30), 997))[:30]
    # the same work at every registry size: the most recent study with (at least) each of these event counts,
    # so that the 1M / 100k ratio measures the registry's size, not which procedures happened to be newest
    study_ids = []
    for k in (1, 2, 3, 5, 10, 20, 40, 80, 120, 160):
        pk = (Study.objects.filter(event_count__gte=k).order_by("event_count", "-study_datetime")
              .values_list("pk", flat=True).first())
        if pk is not None and pk not in study_ids:
            study_ids.append(pk)
    pages = {
        "dashboard": ("rso", ["/dashboard/"]),
        "patient history": ("rso", [f"/patients/{p}/" for p in patient_ids]),
        "study detail": ("rso", [f"/studies/{s}/" for s in study_ids]),
        "protocol audit (12 months)": ("physicist", ["/protocols/"]),
        "patient portal": ("patient", ["/portal/"]),
        # the patients list (issue 17): true count, every patient's exams and 12-month window as subqueries
        "patients list (last exam first)": ("rso", ["/patients/"]),
        "patients list (by 12-month KAP)": ("rso", ["/patients/?sort=-kap"]),
        "patients list (search, page 2)": ("rso", ["/patients/?q=P&page=2&sort=name"]),
        "API studies page": ("rso", ["/api/v1/studies/?page_size=100"]),
        "API alerts page": ("rso", ["/api/v1/alerts/"]),
        "API patients page": ("rso", ["/api/v1/patients/?page_size=100"]),
    }
    results = {}
    for name, (role, urls) in pages.items():
        c = Client()
        c.force_login(u[role])
        times, counts = measure(c, urls, repeat)
        results[name] = {"p50": statistics.median(times), "p95": pct(times, 95), "queries": sorted(counts)}
    return results


def run_scale(n_events: int, repeat: int, keep: bool = False, existing: str = "", **fill) -> dict:
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if existing:  # measure a kept database as it is
        connection.close()
        connection.settings_dict["NAME"] = existing
        with connection.cursor() as c:
            c.execute("SELECT (SELECT count(*) FROM registry_irradiationevent), (SELECT count(*) FROM registry_study), "
                      "(SELECT count(*) FROM registry_patient)")
            events, studies, patients = c.fetchone()
        size = {"events": events, "studies": studies, "patients": patients}
        return {"size": size, "fill_s": 0.0, "pages": measure_pages(size, repeat)}
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        t0 = time.perf_counter()
        size = populate(n_events, **fill)
        fill_s = time.perf_counter() - t0
        return {"size": size, "fill_s": fill_s, "pages": measure_pages(size, repeat)}
    finally:
        if keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=keep)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="100000,1000000", help="irradiation events per run, comma-separated")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--keep", action="store_true", help="keep the last database for inspection")
    ap.add_argument("--existing", default="", help="measure this (kept, filled) database instead of filling one")
    ap.add_argument("--sql", action="store_true", help="fill with generate_series (synthetic) instead of bench/generate.py")
    ap.add_argument("--exposure", choices=("service", "sql"), default="service", help="generator: how windows/alerts are made")
    ap.add_argument("--templates", type=int, default=3000, help="generator: distinct builder-made procedures")
    ap.add_argument("--workers", type=int, default=2, help="generator: processes")
    args = ap.parse_args()
    fill = {"sql": True} if args.sql else {"exposure": args.exposure, "templates": args.templates, "workers": args.workers}
    if connection.vendor != "postgresql":
        print("needs PostgreSQL (DATABASE_URL)")
        return 2
    setup_test_environment()
    runs = {}
    for n in (int(x) for x in args.scales.split(",")):
        r = run_scale(n, args.repeat, keep=args.keep, existing=args.existing, **fill)
        runs[n] = r
        s = r["size"]
        print(f"\n{s['events']:,} events, {s['studies']:,} studies, {s['patients']:,} patients (filled in {r['fill_s']:.0f} s; "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
        if s.get("steps"):
            print("generation: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["steps"].items()))
        print(f"{'page':30} {'p50 ms':>8} {'p95 ms':>8} {'queries':>9}")
        for name, v in r["pages"].items():
            print(f"{name:30} {v['p50']:8.1f} {v['p95']:8.1f} {','.join(map(str, v['queries'])):>9}")
    if len(runs) >= 2:
        small, big = min(runs), max(runs)
        print(f"\nratio p95 at {big:,} / {small:,} events:")
        for name in runs[big]["pages"]:
            a, b = runs[small]["pages"][name], runs[big]["pages"][name]
            same = "same" if a["queries"] == b["queries"] else f"{a['queries']} vs {b['queries']}"
            print(f"  {name:30} {b['p95'] / a['p95']:5.2f}x   queries: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark: server time and SQL queries of the RSO's worklist and case page with many cases (issue 14).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_cases python bench/bench_cases.py \
        [--scales 10000,100000] [--repeat 30] [--keep] [--existing]

For each scale (cases) a throw-away PostgreSQL test database is filled with generate_series (synthetic values):
N cases over 24 devices at two sites (5 % pregnancy, 10 % cumulative, 2 % staff-less CT Dose Check; 80 % active),
3 exposure alerts per case (a rule's first, subsequent and SRDL levels) with their case links, and 10 timeline
events per case (so 1M events at 100k cases). VACUUM ANALYZEd, then each page is requested in-process through Django's
test client as an RSO (middleware, view, template and the audit write: the server's whole share of a request).
Prints p50/p95 ms and the SQL query count per page and the ratio of the two scales.

Each scale's database is named after DATABASE_URL's with the scale appended (dosereg_bench_cases_100000). --keep keeps
it after the run; --existing measures the kept, filled databases of those names instead of filling new ones (to
measure a code change without a refill; it says which migrations the database lacks: apply them with migrate).

Targets (issue 14): worklist and case page p95 < 300 ms at 100,000 cases and 1M events, a fixed number of queries
per page, and the larger scale within 2x the smaller.
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
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_cases")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

from bench.bench_pages import insert_select, measure, pct  # noqa: E402

N_DEVICES = 24
N_PATIENTS_PER_CASE = 0.6
EVENTS_PER_CASE = 10


def populate(n_cases: int) -> dict:
    from dosereg.cases.models import Case, CaseAlert, CaseEvent
    from dosereg.exposure.models import Alert, Rule

    n_patients = max(1, int(n_cases * N_PATIENTS_PER_CASE))
    rule = Rule.objects.filter(key="fgi-kar-srdl", ruleset__active=True).first()
    with connection.cursor() as c:
        c.execute(f"""
            INSERT INTO registry_device (manufacturer, model, serial_number, station_name, device_observer_uid, software_versions,
                institution, department, display_name, modality, first_seen, last_seen)
            SELECT 'Vendor', 'Model ' || g, 'SN' || g, 'ROOM' || g, '2.25.' || g, 'v1',
                   CASE WHEN g % 2 = 0 THEN 'Northfield General' ELSE 'Riverside Clinic' END, '', 'ROOM' || g,
                   (ARRAY['RF','XA','CT'])[1 + g % 3], now() - interval '900 days', now()
            FROM generate_series(1, {N_DEVICES}) g""")
        c.execute(f"""
            INSERT INTO registry_patient (patient_id, issuer, name, sex, birth_date, pseudonymised, created_at)
            SELECT 'CP' || lpad(g::text, 8, '0'), 'BENCH', 'Bench^Patient' || g, 'F', date '1950-01-01' + (g % 20000), false, now()
            FROM generate_series(1, {n_patients}) g""")
        kind = ("CASE WHEN g % 20 = 5 THEN 'pregnancy' WHEN g % 10 = 1 THEN 'cumulative' WHEN g % 50 = 3 THEN 'dose_check' "
                "ELSE 'procedure' END")
        sev = "(ARRAY['high','normal','low'])[1 + g % 3]"
        c.execute(insert_select(Case, {
            "key": f"{kind} || ':2.25.5' || g", "kind": kind,
            "status": "CASE WHEN g % 10 = 0 THEN 'closed' WHEN g % 10 = 1 THEN 'acknowledged' WHEN g % 10 = 2 THEN 'follow_up' ELSE 'open' END",
            "severity": sev,
            "sort_rank": f"(CASE {sev} WHEN 'high' THEN 20 WHEN 'normal' THEN 10 ELSE 0 END) + CASE WHEN g % 20 = 5 THEN 5 ELSE 0 END",
            "patient_id": f"1 + (g::bigint * 7919) % {n_patients}", "study_uid": "'2.25.5' || g",
            "device_id": f"1 + g % {N_DEVICES}", "site": "CASE WHEN (1 + g % 24) % 2 = 0 THEN 'northfield general' ELSE 'riverside clinic' END",
            "modality": "(ARRAY['RF','XA','CT'])[1 + (1 + g % 24) % 3]",
            "exam_date": "now() - ((g::bigint * 104729) % (1460 * 24 * 60)) * interval '1 minute'",
            "title": "'Procedure: Ka,r substantial radiation dose level: ' || (5 + g % 7) || ' Gy ≥ 5 Gy'",
            "top_rule_key": "'fgi-kar-srdl'", "top_level": "'srdl'", "top_class": "23", "rule_keys": "',fgi-kar-first,fgi-kar-subsequent,fgi-kar-srdl,'",
            "level_count": "3", "notify_state": "CASE WHEN g % 9 = 0 THEN 'historical' ELSE 'queued' END",
            "notify_note": "CASE WHEN g % 9 = 0 THEN 'no e-mail: the exam is older than 30 days (ALERT_NOTIFY_MAX_AGE_DAYS)' ELSE 'rso@x' END",
            "opened_at": "now() - (g % 1000) * interval '1 hour'",
            "follow_up_due": "CASE WHEN g % 10 = 2 THEN current_date + (g % 30) END",
        }, f"FROM generate_series(1, {n_cases}) g"))
        c.execute(insert_select(Alert, {
            "patient_id": f"1 + ((j / 3)::bigint * 7919) % {n_patients}", "rule_id": str(rule.pk),
            "rule_key": "(ARRAY['fgi-kar-first','fgi-kar-subsequent','fgi-kar-srdl'])[1 + j % 3]",
            "level": "(ARRAY['first','subsequent+1','srdl'])[1 + j % 3]", "subject": "'2.25.5' || (j / 3)",
            "study_uid": "'2.25.5' || (j / 3)", "quantity": "'kar_gy'", "value": "5.0 + (j % 7)", "unit": "'Gy'",
            "threshold": "(ARRAY[3.0, 4.0, 5.0])[1 + j % 3]", "severity": "'high'", "status": "'open'",
            "title": "'Ka,r level'", "message": "''", "detail": "'{\"rule_title\": \"Ka,r\", \"source\": \"NCRP Report 168 (2010)\"}'::jsonb",
            "raised_at": "now()",
        }, f"FROM generate_series(3, {n_cases * 3 + 2}) j"))
        c.execute(f"""INSERT INTO cases_casealert (case_id, alert_id, added_at)
                      SELECT (a.id - 1) / 3 + 1, a.id, now() FROM exposure_alert a WHERE a.id <= {n_cases * 3}""")
        c.execute(insert_select(CaseEvent, {
            "case_id": f"1 + (k / {EVENTS_PER_CASE})", "at": "now() - (k % 1000) * interval '1 minute'",
            "action": f"(ARRAY['raised','notified','escalated','level_added','acknowledged','follow_up','level_added','not_notified','level_added','closed'])[1 + k % {EVENTS_PER_CASE}]",
            "note": "'note ' || k", "detail": "'{}'::jsonb",
        }, f"FROM generate_series(0, {n_cases * EVENTS_PER_CASE - 1}) k"))
    from dosereg.cases.case_counts import compact

    compact()  # as beat does every minute: the trigger's count deltas folded into one row per key
    with connection.cursor() as c:
        c.execute("VACUUM ANALYZE")  # as autovacuum would: the visibility map lets index-only scans skip the heap
    # the fill's 2 x N count deltas left cases_casecount's file at their size with its few rows at the end (a seq
    # scan of 11,000 empty pages on every counts read at 1M cases): the next compaction moves them to the front and a
    # vacuum truncates the rest, as beat and vacuum do within minutes of a bulk load (index cleanup on: the default
    # bypasses it for a few dead rows, and the dead rows in the last pages would stop the truncation)
    compact()
    with connection.cursor() as c:
        c.execute("VACUUM (INDEX_CLEANUP ON, ANALYZE) cases_casecount")
    return {"cases": n_cases, "events": n_cases * EVENTS_PER_CASE, "alerts": n_cases * 3, "patients": n_patients,
            "active": Case.objects.filter(status__in=["open", "acknowledged", "follow_up"]).count(),
            "links": CaseAlert.objects.count()}


def measure_pages(size: dict, repeat: int) -> dict:
    from django.test import Client

    from dosereg.web.services import user_create

    from django.contrib.auth import get_user_model

    rso = (get_user_model().objects.filter(username="bench-case-rso").first()
           or user_create(username="bench-case-rso", password="bench-pass-123", role="rso"))
    n = size["cases"]
    case_ids = [1 + (i * 7907) % n for i in range(30)]
    pages = {
        "worklist page 1": ["/alerts/"],
        "worklist page 40": ["/alerts/?page=40"],
        "worklist page 400": ["/alerts/?page=400"],
        "worklist filtered (kind, severity)": ["/alerts/?kind=pregnancy&severity=high", "/alerts/?kind=cumulative",
                                               "/alerts/?kind=staff", "/alerts/?severity=low"],
        "worklist search patient": ["/alerts/?q=CP00000042", "/alerts/?q=bench^patient7"],
        "worklist site + date range": ["/alerts/?site=riverside%20clinic&from=2025-01-01&to=2025-06-30"],
        # filters the counts were not kept by (issue 14): their totals counted the cases
        "worklist device, modality": ["/alerts/?device=5", "/alerts/?modality=RF", "/alerts/?device=7&severity=high"],
        "worklist rule, date range": ["/alerts/?rule=fgi-kar-first", "/alerts/?from=2025-01-01&to=2025-06-30"],
        "worklist rule no case has": ["/alerts/?rule=no-such-rule"],
        "case page": [f"/alerts/{i}/" for i in case_ids],
        "due list": ["/alerts/due/"],
        "due list page 40": ["/alerts/due/?page=40"],
        "dashboard": ["/dashboard/"],
    }
    results = {}
    c = Client()
    c.force_login(rso)
    for name, urls in pages.items():
        times, counts = measure(c, urls, repeat)
        results[name] = {"p50": statistics.median(times), "p95": pct(times, 95), "queries": sorted(counts)}
    return results


def existing_size() -> dict:
    from dosereg.cases.models import Case, CaseAlert, CaseEvent
    from dosereg.exposure.models import Alert
    from dosereg.registry.models import Patient

    return {"cases": Case.objects.count(), "events": CaseEvent.objects.count(), "alerts": Alert.objects.count(),
            "patients": Patient.objects.count(), "active": Case.objects.filter(status__in=["open", "acknowledged", "follow_up"]).count(),
            "links": CaseAlert.objects.count()}


def run_scale(n_cases: int, repeat: int, keep: bool = False, existing: bool = False) -> dict:
    from django.conf import settings
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    old_name = connection.settings_dict["NAME"]
    name = f"{old_name}_{n_cases}"
    if existing:
        connection.close()
        connection.settings_dict["NAME"] = name
        try:
            from django.db.migrations.executor import MigrationExecutor

            ex = MigrationExecutor(connection)
            todo = ex.migration_plan(ex.loader.graph.leaf_nodes())
            if todo:  # measured as it is: migrate it first (manage.py migrate) to measure the code's indexes
                print(f"note: {name} lacks {len(todo)} migration(s): {', '.join(f'{m.app_label}.{m.name}' for m, _ in todo)}")
            size = existing_size()
            return {"size": size, "fill_s": 0.0, "pages": measure_pages(size, repeat)}
        finally:
            connection.close()
            connection.settings_dict["NAME"] = old_name
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        t0 = time.perf_counter()
        size = populate(n_cases)
        fill_s = time.perf_counter() - t0
        return {"size": size, "fill_s": fill_s, "pages": measure_pages(size, repeat)}
    finally:
        if keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=keep)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="10000,100000", help="cases per run, comma-separated")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--existing", action="store_true", help="measure the kept databases <DATABASE_URL's name>_<scale>")
    args = ap.parse_args()
    setup_test_environment()
    runs = {}
    for n in [int(x) for x in args.scales.split(",")]:
        r = runs[n] = run_scale(n, args.repeat, keep=args.keep, existing=args.existing)
        s = r["size"]
        print(f"\n{n:,} cases ({s['active']:,} active, {s['events']:,} events, {s['alerts']:,} alerts), filled in {r['fill_s']:.0f} s; "
              f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"{'page':38} {'p50 ms':>8} {'p95 ms':>8} {'queries':>9}")
        for name, v in r["pages"].items():
            print(f"{name:38} {v['p50']:8.1f} {v['p95']:8.1f} {','.join(map(str, v['queries'])):>9}")
    if len(runs) >= 2:
        small, big = sorted(runs)[0], sorted(runs)[-1]
        print(f"\nratio p95 at {big:,} / {small:,} cases:")
        for name in runs[big]["pages"]:
            a, b = runs[small]["pages"][name], runs[big]["pages"][name]
            print(f"  {name:38} {b['p95'] / a['p95']:5.2f}x   queries: {'same' if a['queries'] == b['queries'] else 'DIFFERENT'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Benchmark: the study browser (/studies/) with every single filter and every sort, at two registry sizes.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dosereg_bench_browser python bench/bench_browser.py \
        [--scales 100000,1000000] [--repeat 20] [--keep] [--existing DBNAME]

Each scale (irradiation events; studies = events / 10) is a throw-away PostgreSQL test database filled by
``bench/generate.py`` (builder-made RDSRs parsed by the project's parser, replicated server-side; exposure
windows by one SQL statement: the browser does not read alerts). Each URL is requested ``--repeat`` times through
Django's test client (middleware, view, template, audit write). Prints p50 / p95 ms and the SQL query count per
URL, the worst p95, and the 1M / 100k ratio per URL.

``BENCH_ONLY=standard,page`` measures only the URLs whose label contains one of those words.

Targets (issue 17): p95 < 300 ms with any single filter and sort at 1M events / 100k studies, a fixed number of
queries, 1M <= 2x 100k. Also the acceptance task: the ten highest-DLP CT chest studies of last month on one
scanner (filters combined), and its CSV export of exactly those.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_browser")

import bench_pages as BP  # noqa: E402  (sets up Django)
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402


def browser_urls() -> dict[str, str]:
    """Label -> URL: the default page, one URL per filter, one per sort (both directions of the date), a deep
    page, and the physicist's combined task."""
    from django.db.models import F
    from django.db.models.functions import Lower
    from django.utils import timezone

    from dosereg.registry.models import Device, Study

    today = timezone.localdate()
    month_ago = today - timedelta(days=30)
    ct = Device.objects.filter(modality="CT").order_by("pk").first()
    any_device = Device.objects.order_by("pk").first()
    site = (Device.objects.exclude(institution="").values_list("institution", flat=True).first()) or "x"
    n = Study.objects.count()
    last_page = max(1, n // 50)
    urls = {
        "default (newest first)": "/studies/",
        "filter modality=CT": "/studies/?modality=CT",
        "filter site": f"/studies/?site={site}",
        "filter device": f"/studies/?device={any_device.pk if any_device else 1}",
        "filter last 30 days": f"/studies/?since={month_ago.isoformat()}&until={today.isoformat()}",
        "filter protocol text 'chest'": "/studies/?protocol=chest",
        "filter standard name: unmapped": "/studies/?standard=0",
        "filter age band child": "/studies/?age=child",
        "filter sex F": "/studies/?sex=F",
        "filter not a patient: exclude": "/studies/?not_patient=exclude",
        "filter KAP >= 20 Gy·cm²": "/studies/?kap_gy_cm2_min=20",
        "filter Ka,r >= 1 Gy": "/studies/?kar_gy_min=1",
        "filter DLP >= 1000 mGy·cm": "/studies/?dlp_mgy_cm_min=1000",
        "filter CTDIvol 10-20 mGy": "/studies/?ctdivol_mgy_min=10&ctdivol_mgy_max=20",
        "filter fluoro time >= 600 s": "/studies/?fluoro_time_s_min=600",
        "page 2": "/studies/?page=2",
        f"last page ({last_page})": f"/studies/?page={last_page}",
    }
    from dosereg.web.browse import SORTS

    for key in SORTS:
        urls[f"sort -{key}"] = f"/studies/?sort=-{key}"
    urls["sort date (oldest first)"] = "/studies/?sort=date"
    # deep pages: a jump by page number (the middle of the order, the worst for OFFSET read from the nearer end),
    # the last page, and keyset "next" / "previous" from a cursor in the middle (the old code ignores after/before
    # and shows page 1: compare those rows only with the new code)
    mid = max(1, n // 2)
    urls[f"jump to page {max(1, mid // 50)} (middle)"] = f"/studies/?page={max(1, mid // 50)}"
    urls["last page (end=1)"] = "/studies/?end=1"
    mid_date = Study.objects.order_by("-study_datetime", "-pk").values_list("pk", flat=True)[mid:mid + 1]
    mid_std = Study.objects.order_by(Lower("standard_name").desc(nulls_last=True), "-pk").values_list("pk", flat=True)[mid:mid + 1] \
        if any(f.name == "standard_name" for f in Study._meta.concrete_fields) else []
    mid_kap = Study.objects.order_by(F("dap_total_gy_cm2").desc(nulls_last=True), "-pk").values_list("pk", flat=True)[mid:mid + 1]
    for label, sort, pks in (("date", "-date", mid_date), ("standard name", "-standard", mid_std), ("KAP", "-kap", mid_kap)):
        for pk in pks:
            urls[f"next from the middle, by {label}"] = f"/studies/?sort={sort}&after={pk}"
            urls[f"previous from the middle, by {label}"] = f"/studies/?sort={sort}&before={pk}"
    # the joined sorts (site, device, patient sex): next / previous from the middle, the last page, a jump to the
    # middle page, and one with a row filter (the plain order); the cursor is the middle row in the running code's
    # own order
    from dosereg.web.browse import filtered_studies, ordered, read_filters

    for key in ("site", "device", "sex"):
        f = read_filters({"sort": f"-{key}" if key == "sex" else key})
        for pk in ordered(filtered_studies(f), f).values_list("pk", flat=True)[mid:mid + 1]:
            urls[f"next from the middle, by {key}"] = f"/studies/?sort={f.sort}&after={pk}"
            urls[f"previous from the middle, by {key}"] = f"/studies/?sort={f.sort}&before={pk}"
        urls[f"last page (end=1), by {key}"] = f"/studies/?sort={f.sort}&end=1"
        urls[f"jump to page {max(1, mid // 50)} (middle), by {key}"] = f"/studies/?sort={f.sort}&page={max(1, mid // 50)}"
    urls["sort site, filter modality=CT (row filter)"] = "/studies/?sort=site&modality=CT"
    cts = Study.objects.filter(procedure_modality="CT").order_by("-study_datetime", "-pk").values_list("pk", flat=True)
    for pk in cts[cts.count() // 2:cts.count() // 2 + 1]:
        urls["filter modality=CT, next from the middle"] = f"/studies/?modality=CT&after={pk}"
    # the patients list (issue 17 part 5), as an RSO of every site
    urls["patients list, last exam first (default)"] = "/patients/"
    urls["patients list, by exams"] = "/patients/?sort=-exams"
    urls["patients list, by 12-month KAP"] = "/patients/?sort=-kap"
    urls["patients list, search and page 2"] = "/patients/?q=P&page=2&sort=name"
    if ct is not None:
        task = (f"?modality=CT&device={ct.pk}&protocol=chest&since={month_ago.isoformat()}&until={today.isoformat()}"
                f"&sort=-dlp&per_page=10")
        urls["task: top-10 DLP CT chest, last month, one scanner"] = "/studies/" + task
        urls["task: its CSV export"] = "/studies/export.csv" + task
    return urls


def measure_urls(repeat: int) -> dict:
    from django.test import Client

    users = BP.users()
    clients = {}
    for role in ("physicist", "rso"):
        clients[role] = Client()
        clients[role].force_login(users[role])
    out = {}
    only = [x.strip().lower() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()]
    for label, url in browser_urls().items():
        if only and not any(x in label.lower() for x in only):
            continue
        c = clients["rso" if url.startswith("/patients/") else "physicist"]
        times, counts = BP.measure(c, [url], repeat)
        out[label] = {"url": url, "p50": statistics.median(times), "p95": BP.pct(times, 95), "queries": sorted(counts)}
    return out


def run_scale(n_events: int, repeat: int, keep: bool, existing: str, workers: int) -> dict:
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if existing:
        connection.close()
        connection.settings_dict["NAME"] = existing
        with connection.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM registry_irradiationevent), (SELECT count(*) FROM registry_study)")
            events, studies = cur.fetchone()
        return {"size": {"events": events, "studies": studies}, "fill_s": 0.0, "urls": measure_urls(repeat)}
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        t0 = time.perf_counter()
        size = BP.populate(n_events, exposure="sql", templates=3000, workers=workers)
        fill_s = time.perf_counter() - t0
        return {"size": size, "fill_s": fill_s, "urls": measure_urls(repeat)}
    finally:
        if keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        connection.creation.destroy_test_db(old_name, verbosity=0, keepdb=keep)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="100000,1000000")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--existing", default="", help="measure this kept, filled database instead of filling one")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if connection.vendor != "postgresql":
        print("needs PostgreSQL (DATABASE_URL)")
        return 2
    setup_test_environment()
    runs = {}
    for n in (int(x) for x in args.scales.split(",")):
        r = run_scale(n, args.repeat, args.keep, args.existing, args.workers)
        runs[n] = r
        s = r["size"]
        print(f"\n{s['events']:,} events, {s['studies']:,} studies (filled in {r['fill_s']:.0f} s; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
        print(f"{'study browser URL':52} {'p50 ms':>8} {'p95 ms':>8} {'queries':>9}")
        for label, v in r["urls"].items():
            print(f"{label[:52]:52} {v['p50']:8.1f} {v['p95']:8.1f} {','.join(map(str, v['queries'])):>9}")
        worst = max(r["urls"].items(), key=lambda kv: kv[1]["p95"])
        counts = sorted({q for v in r["urls"].values() for q in v["queries"]})
        print(f"worst p95: {worst[1]['p95']:.1f} ms ({worst[0]}); query counts seen: {counts}")
    if len(runs) >= 2:
        small, big = min(runs), max(runs)
        ratios = {k: runs[big]["urls"][k]["p95"] / runs[small]["urls"][k]["p95"]
                  for k in runs[big]["urls"] if k in runs[small]["urls"]}
        print(f"\nratio p95 at {big:,} / {small:,} events:")
        for k, r in ratios.items():
            print(f"  {k[:52]:52} {r:5.2f}x")
        print(f"  largest ratio: {max(ratios.values()):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark (on demand, never in CI): the study browser's exports of a whole registry, and the memory they need.

    python bench/bench_exports.py --existing DBNAME [--formats csv,xlsx] [--query ""]

Issue 17: "exports of 1M events stream at constant memory (worker or web process RSS under 200 MB)". Each export
runs in a fresh Python process (so that its peak RSS is its own): Django set up on the kept, filled database
(``bench/generate.py``), an RSO of every site, the export URL requested through Django's test client (middleware,
view, audit write) and its body read to the end (the CSV streams; the XLSX is written to a temporary file and
sent from it). Prints rows, bytes, seconds and the process's RSS after set-up and at its peak.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(db: str, fmt: str, query: str) -> dict:
    import resource
    import time

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
    os.environ["DOSEREG_PRODUCTION"] = "false"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{db}"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from dosereg.web.services import user_create

    settings.ALLOWED_HOSTS = ["*"]
    user = get_user_model().objects.filter(username="bench-export-rso").first() \
        or user_create(username="bench-export-rso", password="bench-pass-123", role="rso")
    client = Client()
    client.force_login(user)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    resp = client.get(f"/studies/export.{fmt}" + (f"?{query}" if query else ""))
    assert resp.status_code == 200, resp.status_code
    size, lines = 0, 0
    for chunk in (resp.streaming_content if resp.streaming else [resp.content]):
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"format": fmt, "bytes": size, "csv_lines": lines if fmt == "csv" else None, "seconds": round(seconds, 1),
            "rss_after_setup_mb": round(base_rss, 1), "rss_peak_mb": round(peak, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--existing", required=True, help="a filled database (bench/generate.py)")
    ap.add_argument("--formats", default="csv,xlsx")
    ap.add_argument("--query", default="", help="the browser's filters, e.g. modality=CT")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.existing, a.child, a.query)))
        return 0
    import psycopg2

    with psycopg2.connect(host="127.0.0.1", user="postgres", dbname=a.existing) as conn, conn.cursor() as c:
        c.execute("SELECT (SELECT count(*) FROM registry_irradiationevent), (SELECT count(*) FROM registry_study)")
        events, studies = c.fetchone()
    print(f"export of {a.existing}: {events:,} events, {studies:,} studies; filters {a.query or '(none)'}")
    print(f"{'format':8s} {'size':>10s} {'seconds':>8s} {'RSS after set-up':>17s} {'RSS peak':>9s}  (target: peak < 200 MB)")
    for fmt in a.formats.split(","):
        out = subprocess.run([sys.executable, __file__, "--existing", a.existing, "--child", fmt, "--query", a.query],
                             capture_output=True, text=True, cwd=ROOT)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{fmt:8s} {r['bytes'] / 1e6:8.1f} MB {r['seconds']:8.1f} {r['rss_after_setup_mb']:14.1f} MB "
              f"{r['rss_peak_mb']:6.1f} MB" + (f"  ({r['csv_lines'] - 1:,} rows)" if r["csv_lines"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

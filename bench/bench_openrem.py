#!/usr/bin/env python
"""Side-by-side: the same RDSR import through OpenREM 1.0 (pre-release from PyPI) and dosereg (issue 7).

    python bench/bench_openrem.py [--file PATH] [--repeat N]

Run on demand, never in CI. What it does:

1. Creates once (and then reuses) a virtual environment OUTSIDE the repository, default
   /tmp/dosereg-openrem-venv (env OPENREM_VENV), and installs ``pip install --pre openrem`` into it
   (OpenREM brings its own Django 3.2 / pydicom 2.4 / psycopg2-binary). Nothing is installed into the
   project's environment and no OpenREM code enters the repository.
2. Runs a small driver in the venv's Python that configures OpenREM through the environment variables its
   ``openremproject/settings.py`` reads (SQL_ENGINE, POSTGRES_DB, POSTGRES_USER, SQL_HOST, SQL_PORT,
   MEDIA_ROOT, LOG_ROOT) against a throw-away PostgreSQL database (default ``dosereg_bench_openrem`` on
   127.0.0.1:5432, user postgres; env OPENREM_BENCH_DB), creates OpenREM's migrations the way a fresh 1.0
   install does (``makemigrations remapp``, once, inside the venv) and migrates. Each repetition starts from a
   fresh copy of the freshly migrated database (CREATE DATABASE ... TEMPLATE), then calls OpenREM's own
   extractor ``openrem.remapp.extractors.rdsr.rdsr(path)`` in-process (what ``openrem_rdsr.py`` runs inside
   its Huey worker), timing wall time and counting SQL statements with ``connection.execute_wrapper``.
3. Measures dosereg's parse + store exactly as ``python bench/run.py parse316`` does (that function is
   called, on its own database ``dosereg_bench_vs_openrem``, env BENCH_DATABASE_URL), which also times DCMTK
   ``dsrdump`` (best of 5), and prints a table with ratios plus the totals each tool stored.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("OPENREM_VENV", "/tmp/dosereg-openrem-venv"))
OPENREM_DB = os.environ.get("OPENREM_BENCH_DB", "dosereg_bench_openrem")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", "5432", "postgres"
os.environ.setdefault("LOG_LEVEL", "ERROR")  # dosereg: no per-alert "no recipients" warnings
os.environ.setdefault("BENCH_DATABASE_URL", f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/dosereg_bench_vs_openrem")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")  # a benchmark on PostgreSQL is not a deployment (settings.PRODUCTION)

DRIVER = textwrap.dedent(r'''
    import json, os, sys, time
    import psycopg2

    path, repeat = sys.argv[1], int(sys.argv[2])
    db = os.environ["POSTGRES_DB"]
    tpl = db + "_tpl"

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def admin(*sqls):
        c = psycopg2.connect(host=os.environ["SQL_HOST"], port=os.environ["SQL_PORT"],
                             user=os.environ["POSTGRES_USER"], dbname="postgres")
        c.autocommit = True
        with c.cursor() as cur:
            for s in sqls:
                cur.execute(s)
        c.close()

    admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'DROP DATABASE IF EXISTS "{tpl}" WITH (FORCE)',
          f'CREATE DATABASE "{db}"')

    import django, openrem
    # the same set-up openrem/remapp/extractors/rdsr.py does at import time
    sys.path.insert(1, list(openrem.__path__)[0])
    os.environ["DJANGO_SETTINGS_MODULE"] = "openremproject.settings"
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    migdir = os.path.join(list(openrem.__path__)[0], "remapp", "migrations")
    if not os.path.exists(os.path.join(migdir, "0001_initial.py")):
        log("openrem: makemigrations remapp (fresh-install step, once per venv)")
        call_command("makemigrations", "remapp", verbosity=0)
    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    log(f"openrem: migrated in {time.perf_counter() - t:.1f} s")
    # The singleton settings rows a running OpenREM has: its home page creates them on the first visit
    # (remapp/views.py openrem_home / the fluoro summary view); the RDSR extractor .get()s PatientIDSettings.
    from remapp import models as M
    for name in ("HomePageAdminSettings", "DicomDeleteSettings", "PatientIDSettings",
                 "SkinDoseMapCalcSettings", "HighDoseMetricAlertSettings"):
        model = getattr(M, name, None)
        if model is not None and not model.objects.exists():
            model.objects.create()
    connection.close()
    admin(f'CREATE DATABASE "{tpl}" TEMPLATE "{db}"')

    from openrem.remapp.extractors.rdsr import rdsr
    from remapp.models import (AccumProjXRayDose, GeneralStudyModuleAttr, IrradEventXRayData,
                               IrradEventXRaySourceData)
    import pydicom

    reads = []
    for _ in range(max(2, min(repeat, 5))):  # what rdsr() itself does first: dcmread + decode
        t = time.perf_counter()
        ds = pydicom.dcmread(path)
        ds.decode()
        reads.append(time.perf_counter() - t)
    read_s = min(reads)

    times, counts = [], []
    for i in range(repeat):
        connection.close()
        admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}" TEMPLATE "{tpl}"')
        n = [0]

        def counter(execute, sql, params, many, context):
            n[0] += 1
            return execute(sql, params, many, context)

        connection.ensure_connection()
        with connection.execute_wrapper(counter):
            t = time.perf_counter()
            rc = rdsr(path)
            dt = time.perf_counter() - t
        if rc != 0 or GeneralStudyModuleAttr.objects.count() != 1:
            sys.exit(f"openrem: import failed (rdsr() returned {rc})")
        times.append(dt)
        counts.append(n[0])
        log(f"openrem: import {i + 1}/{repeat}: {dt * 1000:.0f} ms, {n[0]} SQL statements")

    g = GeneralStudyModuleAttr.objects.get()
    planes = [
        {"plane": p.accumulated_xray_dose.acquisition_plane.code_meaning
         if p.accumulated_xray_dose.acquisition_plane else "",
         "dap_gy_cm2": float(p.dose_area_product_total) * 1e4 if p.dose_area_product_total is not None else None,
         "dose_rp_gy": float(p.dose_rp_total) if p.dose_rp_total is not None else None}
        for p in AccumProjXRayDose.objects.select_related("accumulated_xray_dose__acquisition_plane")
    ]
    ev_dap = sum(float(e.dose_area_product or 0) for e in IrradEventXRayData.objects.all()) * 1e4
    ev_rp = sum(float(s.dose_rp or 0) for s in IrradEventXRaySourceData.objects.all())
    n_events = IrradEventXRayData.objects.count()
    connection.close()
    admin(f'DROP DATABASE IF EXISTS "{tpl}" WITH (FORCE)')
    print(json.dumps({
        "version": __import__("importlib.metadata").metadata.version("openrem"),
        "django": django.get_version(), "pydicom": pydicom.__version__,
        "times_s": times, "queries": counts, "pydicom_read_s": read_s,
        "study_total_dap_gy_cm2": float(g.total_dap) * 1e4 if g.total_dap is not None else None,
        "planes": planes, "event_count": n_events,
        "event_dap_sum_gy_cm2": ev_dap, "event_dose_rp_sum_gy": ev_rp,
    }))
''')


def fail(msg: str):
    sys.exit(f"bench_openrem: {msg}")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> str:
    """Create the venv and install OpenREM once; return the installed OpenREM version."""
    py = venv_python()
    probe = [str(py), "-c", "import importlib.metadata as m; print(m.version('openrem'))"]
    if py.exists():
        r = subprocess.run(probe, capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.strip()
    print(f"creating virtual environment {VENV} and installing openrem (pre-release) ...", flush=True)
    r = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"could not create the virtual environment {VENV}:\n{r.stderr}")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--pre", "openrem", "psycopg2-binary"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("`pip install --pre openrem` failed in the venv, so OpenREM cannot be measured here:\n"
             + "\n".join(line for line in r.stderr.splitlines() if "is ignored" not in line)[-4000:])
    r = subprocess.run(probe, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"openrem installed but not importable in {VENV}:\n{r.stderr}")
    return r.stdout.strip()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_openrem(path: Path, repeat: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="openrem-bench-"))
    (work / "media").mkdir()
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, SQL_ENGINE="django.db.backends.postgresql", POSTGRES_DB=OPENREM_DB,
               POSTGRES_USER=PG_USER, POSTGRES_PASSWORD="", SQL_HOST=PG_HOST, SQL_PORT=PG_PORT,
               MEDIA_ROOT=str(work / "media"), LOG_ROOT=str(work / "media"), DEBUG="0",
               LOG_LEVEL="WARNING", LOG_LEVEL_EXTRACTOR="WARNING", PYTHONDONTWRITEBYTECODE="1")
    for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH"):
        env.pop(k, None)
    r = subprocess.run([str(venv_python()), str(driver), str(path), str(repeat)], env=env, cwd=work,
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        fail(f"the OpenREM driver failed (exit {r.returncode}); see the messages above. "
             f"Driver and OpenREM logs: {work}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    shutil.rmtree(work, ignore_errors=True)
    return result


def run_dosereg(path: Path) -> dict:
    sys.path.insert(0, str(REPO / "bench"))
    import run  # bench/run.py

    run.F316 = path
    # bench_parse316 recreates the database before each ingest, but dosereg.registry.device_resolution keeps a
    # per-process device cache (c6d65a9) that then points at a device row that no longer exists
    # (IntegrityError on the second ingest). Empty it with the database: every ingest is a cold first import.
    reset = run.reset_registry

    def reset_registry():
        from dosereg.registry import device_resolution

        device_resolution._DEVICE_CACHE.clear()
        reset()

    run.reset_registry = reset_registry
    # Without REDIS_URL (as in bench/run.py) dosereg's Celery runs eagerly, so the follow-up tasks queued
    # after the ingest commits (cumulative exposure recompute + dose alerts) run inside the timed ingest.
    print("-- dosereg, follow-up tasks eager (what `python bench/run.py parse316` measures today)", flush=True)
    res = run.bench_parse316()
    from dosereg.celery import app

    app.conf.task_always_eager = False  # in-memory broker: queued, as a production ingest task does
    print("-- dosereg, follow-up tasks queued (production shape: they run as separate Celery tasks)", flush=True)
    queued = run.bench_parse316()
    app.conf.task_always_eager = True
    res["queued"] = queued
    from django.db.models import Sum

    from dosereg.registry.models import IrradiationEvent, PlaneTotal, Study

    s = Study.objects.get()
    res["study_total_dap_gy_cm2"] = s.dap_total_gy_cm2
    res["dose_rp_max_plane_gy"] = s.dose_rp_max_plane_gy
    res["event_count"] = IrradiationEvent.objects.count()
    agg = IrradiationEvent.objects.aggregate(dap=Sum("dap_gy_cm2"), rp=Sum("dose_rp_gy"))
    res["event_dap_sum_gy_cm2"], res["event_dose_rp_sum_gy"] = agg["dap"], agg["rp"]
    res["planes"] = [{"plane": p.plane, "dap_gy_cm2": p.dap_total_gy_cm2, "dose_rp_gy": p.dose_rp_total_gy}
                     for p in PlaneTotal.objects.order_by("plane")]
    return res


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--file", type=Path, default=Path(os.environ.get("DOSEREG_CORPUS") or REPO.parent / "shared" / "rdsr")
                    / "philips_allura-xper_RF_316events_no-orientation-modifier.dcm")
    ap.add_argument("--repeat", type=int, default=3, help="OpenREM imports, each on a fresh database (best is reported)")
    args = ap.parse_args()
    path = args.file.resolve()
    if not path.exists():
        fail(f"no such file {path}")
    if not shutil.which("dsrdump"):
        fail("DCMTK dsrdump not found on PATH (apt-get install dcmtk)")
    try:
        import psycopg2

        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres").close()
    except Exception as e:  # noqa: BLE001
        fail(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {e}")

    version = ensure_venv()
    load_start = load_average()
    print(f"file: {path} ({path.stat().st_size / 1e6:.1f} MB); OpenREM {version} in {VENV}; load average {load_start}")

    dr = run_dosereg(path)
    print(f"== OpenREM {version}: {args.repeat} import(s), each on a fresh copy of a migrated database", flush=True)
    om = run_openrem(path, args.repeat)
    load_end = load_average()

    d = dr["dsrdump_ms"]
    ds = dr["parse_store_ms"]
    dq = dr["queued"]["parse_store_ms"]
    o = min(om["times_s"]) * 1000
    oq = max(om["queries"])
    rows = [
        ("DCMTK dsrdump (read + dump)", d, None),
        ("dosereg parse only", dr["parse_ms"], None),
        ("dosereg parse + store (PG), follow-up tasks queued", dq, dr["queued"]["queries"]),
        ("dosereg parse + store (PG) + exposure/alerts eager", ds, dr["queries"]),
        (f"OpenREM {version} pydicom read only", om["pydicom_read_s"] * 1000, None),
        (f"OpenREM {version} rdsr() import (PG)", o, oq),
    ]
    print()
    print("| tool | time (ms) | SQL statements | ratio to dsrdump | OpenREM import / this |")
    print("|---|---|---|---|---|")
    for name, ms, q in rows:
        print(f"| {name} | {ms:,.1f} | {'-' if q is None else f'{q:,}'} | {ms / d:.2f}x | {o / ms:.1f}x |")
    print()
    print(f"OpenREM/dosereg (follow-up tasks queued): time {o / dq:.0f}x, SQL statements {oq / dr['queued']['queries']:.0f}x")
    print(f"OpenREM/dosereg (exposure/alerts eager):  time {o / ds:.0f}x, SQL statements {oq / dr['queries']:.0f}x")
    print(f"dsrdump best of 5: {d:.1f} ms (second dosereg run: {dr['queued']['dsrdump_ms']:.1f} ms)")
    print(f"OpenREM import times (s): {', '.join(f'{t:.2f}' for t in om['times_s'])}; "
          f"statements: {', '.join(str(q) for q in om['queries'])}")
    print(f"OpenREM venv: Django {om['django']}, pydicom {om['pydicom']}")
    print()
    print("| totals stored | dosereg | OpenREM |")
    print("|---|---|---|")
    print(f"| study total DAP (Gy·cm²) | {fmt(dr['study_total_dap_gy_cm2'])} | {fmt(om['study_total_dap_gy_cm2'])} |")
    for dp, op in zip(dr["planes"], om["planes"] + [None] * len(dr["planes"])):
        print(f"| plane {dp['plane']} / {op['plane'] if op else '-'}: DAP total (Gy·cm²) "
              f"| {fmt(dp['dap_gy_cm2'])} | {fmt(op['dap_gy_cm2'] if op else None)} |")
        print(f"| plane {dp['plane']} / {op['plane'] if op else '-'}: dose RP total (Gy) "
              f"| {fmt(dp['dose_rp_gy'])} | {fmt(op['dose_rp_gy'] if op else None)} |")
    print(f"| sum of event DAP (Gy·cm²) | {fmt(dr['event_dap_sum_gy_cm2'])} | {fmt(om['event_dap_sum_gy_cm2'])} |")
    print(f"| sum of event dose RP (Gy) | {fmt(dr['event_dose_rp_sum_gy'])} | {fmt(om['event_dose_rp_sum_gy'])} |")
    print(f"| events | {dr['event_count']} | {om.get('event_count') or '-'} |")
    print()
    print(f"load average: {load_start} at start, {load_end} at end (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

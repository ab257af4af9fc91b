#!/usr/bin/env python
"""Benchmark (on demand, never in CI): what one ingest with its follow-up costs, counted in ways the load on the
machine does not move much. Run from a checkout's root (it works on the 2026-12-03 code too, for comparisons):

    python bench/bench_ingest_statements.py [N] [-v] [--profile]

The first N small corpus objects (rewritten UIDs, about two procedures per patient, as ``run.py ingest``) are
registered, then ingested by the ingest task's function in this process, with a broker configured (REDIS_URL)
so that the skin step is queued as in production. Prints SQL statements per object (``-v``: grouped by
statement), this process's CPU, the PostgreSQL backend's CPU and the WAL written per object; ``--profile`` a cProfile.
Environment: STMT_DB (default postgres://postgres@127.0.0.1:5432/dosereg_stmts, recreated);
PGSS=file.json: pg_stat_statements per statement (needs shared_preload_libraries=pg_stat_statements);
CG=1: toggles callgrind instrumentation around the loop (run under ``valgrind --tool=callgrind
--instr-atstart=no``); CG_PHASE=module:function[,...]: only around those functions (PHASE_PROF=file: cProfile
of them instead); DROP_IDX=regex: drop matching indexes first (what an index costs the ingest)."""
import os, sys, re, time, tempfile, collections, cProfile, pstats
from pathlib import Path
ROOT = Path(os.getcwd())
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DOSEREG_CORPUS", str(ROOT.parent / "shared" / "rdsr"))
import run as benchrun
db = os.environ.get("STMT_DB", "postgres://postgres@127.0.0.1:5432/dosereg_stmts")
benchrun.django_setup(db)
benchrun.reset_registry()
if os.environ.get("DROP_IDX"):
    from django.db import connection as _c
    with _c.cursor() as cur:
        cur.execute("select indexname from pg_indexes where indexname ~ %s", [os.environ["DROP_IDX"]])
        names = [r[0] for r in cur.fetchall()]
        for nm in names: cur.execute(f'DROP INDEX "{nm}"')
    print("dropped", len(names))
from django.db import connection
from django.test.utils import CaptureQueriesContext
from dicom_listener.spool import Spool
try:
    from dosereg.pipeline import flow
    INGEST = lambda pk: flow.ingest_object(pk, count_delivery=True)
except ImportError:
    from dosereg.registry.tasks import ingest_object_task
    INGEST = lambda pk: ingest_object_task.run(pk)
try:
    from dosereg.registry import receiving as registry
except ImportError:  # a checkout before the registry's services module was split
    from dosereg.registry import services as registry
n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
tmp = Path(tempfile.mkdtemp())
files = benchrun._make_objects(n, tmp / "in")
spool = Spool(tmp / "spool")
def _reg(f):
    if hasattr(registry, "dose_file_register"):
        return registry.dose_file_register(path=f, spool=spool, enqueue=False)[0].pk
    import hashlib, pydicom
    data = f.read_bytes(); ds = pydicom.dcmread(f, stop_before_pixels=True)
    return registry.dose_object_register(sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
        path=str(f), sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), calling_ae="BENCHSCU", enqueue=False)[0].pk
ids = [_reg(f) for f in files]
groups = collections.Counter(); total = 0
import importlib, functools
_depth = [0]
PP = cProfile.Profile()
def _toggle(on):
    os.system(f"callgrind_control -i {'on' if on else 'off'} {os.getpid()} >/dev/null")
for spec in filter(None, os.environ.get("CG_PHASE", "").split(",")):
    modname, attr = spec.split(":")
    try:
        mod = importlib.import_module(modname); fn = getattr(mod, attr)
    except (ImportError, AttributeError):
        print("no", spec); continue
    def wrap(fn=fn):
        @functools.wraps(fn)
        def w(*a, **k):
            _depth[0] += 1
            if _depth[0] == 1:
                if os.environ.get("PHASE_PROF"): PP.enable()
                else: _toggle(True)
            try: return fn(*a, **k)
            finally:
                _depth[0] -= 1
                if _depth[0] == 0:
                    if os.environ.get("PHASE_PROF"): PP.disable()
                    else: _toggle(False)
        return w
    setattr(mod, attr, wrap())
prof = cProfile.Profile() if "--profile" in sys.argv else None
def _pgcpu():
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()"); pid = c.fetchone()[0]
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def _wal():
    with connection.cursor() as c:
        c.execute("SELECT pg_current_wal_insert_lsn()"); return c.fetchone()[0]
import psycopg2 as _pg2
_side = _pg2.connect(db); _side.autocommit = True
def _xacts():
    with connection.cursor() as c:
        c.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.2)
    with _side.cursor() as c:
        c.execute("SELECT pg_stat_clear_snapshot()"); c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"); return c.fetchone()[0]
x0 = _xacts()
pg0 = _pgcpu()
wal0 = _wal()
if os.environ.get("PGSS"):
    with connection.cursor() as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); c.execute("SELECT pg_stat_statements_reset()")
t0 = time.process_time()
if os.environ.get('CG'): os.system(f'callgrind_control -i on {os.getpid()} >/dev/null')
for pk in ids:
    with CaptureQueriesContext(connection) as cq:
        if prof: prof.enable()
        INGEST(pk)
        if prof: prof.disable()
    total += len(cq.captured_queries)
    for q in cq.captured_queries:
        s = re.sub(r"\s+", " ", q["sql"])
        s = re.sub(r"'[^']*'", "?", s); s = re.sub(r"\b\d+(\.\d+)?\b", "N", s)
        s = re.sub(r"\(N(, N)*\)", "(..)", s); s = re.sub(r"\"s\d+_x\d+\"", "SP", s)
        groups[s[:150]] += 1
if os.environ.get('CG'): os.system(f'callgrind_control -i off {os.getpid()} >/dev/null')
cpu = time.process_time() - t0
pgcpu = _pgcpu() - pg0
print("XACTS", (_xacts() - x0 - 2) / n)
with connection.cursor() as c:  # WAL written per object: index upkeep shows here, whatever the machine's load
    c.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", [wal0]); wal = float(c.fetchone()[0])
print(f"{n} objects: {total/n:.1f} statements/object, process CPU {cpu/n*1000:.1f} ms/object, PG backend CPU {pgcpu/n*1000:.1f} ms/object, WAL {wal/n/1024:.1f} KiB/object")
from dosereg.registry.models import DoseObject
if os.environ.get("PGSS"):
    with connection.cursor() as c:
        c.execute("SELECT calls, total_exec_time, total_plan_time, rows, shared_blks_hit, left(regexp_replace(query, '\\s+', ' ', 'g'), 150) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time + total_plan_time DESC LIMIT 30")
        rows = c.fetchall()
    tot = sum(r[1] + r[2] for r in rows)
    with connection.cursor() as c:
        c.execute("SELECT sum(total_exec_time), sum(total_plan_time), sum(calls) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
        ex, pl, calls = c.fetchone()
    with connection.cursor() as c:
        c.execute("SELECT calls, total_exec_time, total_plan_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
        import json as _j; _j.dump([list(r) for r in c.fetchall()], open(os.environ["PGSS"], "w"))
    print(f"PGSS all: exec {ex/n:.2f} plan {pl/n:.2f} ms/object ({calls/n:.1f} statements); top-30 exec+plan {tot/n:.2f} ms/object")
    for calls, ex, pl, nrows, hit, q in rows:
        print(f"{calls/n:5.2f} exec {ex/n:6.3f} plan {pl/n:6.3f} ms/obj blks {hit/max(calls,1):7.1f}  {q}")
print(collections.Counter(DoseObject.objects.values_list("status", flat=True)))
if "-v" in sys.argv:
    for s, c in groups.most_common():
        print(f"{c/n:6.2f}  {s}")
if os.environ.get("PHASE_PROF"):
    PP.dump_stats(os.environ["PHASE_PROF"])
if prof:
    prof.dump_stats(os.environ.get("PROF_OUT","/tmp/prof.out")); pstats.Stats(prof).sort_stats("cumulative").print_stats(45)

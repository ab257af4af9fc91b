#!/usr/bin/env python
"""dosereg benchmarks (run on demand, never in CI):

    python bench/run.py                 # all scenarios
    python bench/run.py parse316        # 316-event RDSR: parse + store on PostgreSQL vs DCMTK dsrdump
    python bench/run.py ingest [N]      # N objects via /usr/bin/storescu -> listener -> Redis -> Celery -> PostgreSQL
                                        # vs DCMTK storescp receiving the same files
                                        # (BENCH_SKIN_WORKER=1: with the skin queue's worker beside it;
                                        #  BENCH_FLUORO_EVERY=k: every k-th object a fluoroscopy procedure with
                                        #  beam geometry, so that the skin worker computes peak skin doses)
    python bench/run.py listener_memory [--size-mb 600] [--parallel 4]
                                        # listener peak RSS receiving big objects in parallel (bench_listener_memory.py)

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/dosereg_bench),
Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379/14) and DCMTK. Prints figures and ratios.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CORPUS = Path(os.environ.get("DOSEREG_CORPUS") or REPO.parent / "shared" / "rdsr")
PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("DOSEREG_PRODUCTION", "false")  # a benchmark on PostgreSQL is not a deployment (settings.PRODUCTION)
F316 = CORPUS / "philips_allura-xper_RF_316events_no-orientation-modifier.dcm"


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(port)


def django_setup(db_url: str):
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    _ensure_db(db_url)
    call_command("migrate", verbosity=0)


def _ensure_db(db_url):
    import psycopg2

    name = db_url.rsplit("/", 1)[1]
    conn = psycopg2.connect(db_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname=%s", [name])
        if not cur.fetchone():
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def reset_registry():
    """Empty the registry. Recreating the database keeps what migrations seed (alert rules, limits,
    groups); a TRUNCATE ... CASCADE of registry tables would also empty the rule tables that point at devices."""
    from django.core.management import call_command
    from django.db import connection

    sd = connection.settings_dict  # the database django_setup() was given (each bench has its own)
    connection.close()
    import psycopg2

    admin = psycopg2.connect(host=sd["HOST"] or None, port=sd["PORT"] or None, user=sd["USER"] or None,
                             password=sd["PASSWORD"] or None, dbname="postgres")
    admin.autocommit = True
    name = sd["NAME"]
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    call_command("migrate", verbosity=0)
    from dosereg.registry import device_resolution

    device_resolution._DEVICE_CACHE.clear()  # device rows of the dropped database


def bench_parse316():
    django_setup(PG)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dicom_listener.spool import Spool
    from dosereg.rdsr import extract_file
    from dosereg.registry.models import DoseObject
    from dosereg.registry.ingest import dose_object_ingest
    from dosereg.registry.receiving import dose_object_register

    env = dict(os.environ, TCP_NODELAY="1")
    dsr = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(["dsrdump", str(F316)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
        dsr.append(time.perf_counter() - t)
    parse = []
    for _ in range(5):
        t = time.perf_counter()
        extract_file(F316)
        parse.append(time.perf_counter() - t)
    from dosereg.pipeline.flow import follow_up

    # The ingest task runs the ingest, then the pipeline's follow-up (cumulative exposure, alerts, protocol
    # summaries) in the same call: time the parse + store part apart from the follow-up.
    store, queries, total, total_queries = [], [], [], []
    tmp = Path(tempfile.mkdtemp())
    spool = Spool(tmp)
    data = F316.read_bytes()
    for i in range(5):
        reset_registry()
        stored = spool.store(f"1.2.3.{i}", data)
        obj, _ = dose_object_register(sop_instance_uid=f"1.2.3.{i}", sop_class_uid="", path=stored.path,
                                      sha256=stored.sha256, size_bytes=stored.size_bytes, enqueue=False)
        with CaptureQueriesContext(connection) as ctx:
            t = time.perf_counter()
            obj = dose_object_ingest(dose_object_id=obj.pk)
            t_stored = time.perf_counter()
            assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
            follow_up(obj.changes, inline=True)
            t_end = time.perf_counter()
        store.append(t_stored - t)
        total.append(t_end - t)
        sql = [q["sql"] for q in ctx.captured_queries]
        queries.append(sql.index("COMMIT") + 1)  # up to the ingest's own commit
        total_queries.append(len(sql))
    shutil.rmtree(tmp)
    d, p, s, a = min(dsr), min(parse), min(store), min(total)
    print("== parse316: 316-event Philips Allura RDSR (3.3 MB)")
    print(f"  DCMTK dsrdump              {d*1000:8.1f} ms (best of 5)")
    print(f"  dosereg parse only         {p*1000:8.1f} ms   ratio {p/d:.2f}x dsrdump")
    print(f"  dosereg parse + store (PG) {s*1000:8.1f} ms   ratio {s/d:.2f}x dsrdump (target <= 2x)")
    print(f"  SQL statements per ingest  {max(queries)} (target < 50; OpenREM 1.0 ~21,600)")
    print(f"  + follow-up in the same call (cumulative exposure, alerts, summaries): "
          f"{a*1000:.1f} ms and {max(total_queries)} statements in all")
    return {"dsrdump_ms": d * 1000, "parse_ms": p * 1000, "parse_store_ms": s * 1000, "ratio": s / d, "queries": max(queries),
            "with_followup_ms": a * 1000, "with_followup_queries": max(total_queries)}


def _make_objects(n: int, outdir: Path) -> list[Path]:
    from dosereg.rdsr.builder import rewrite_uids

    outdir.mkdir(parents=True, exist_ok=True)
    sources = [f for f in sorted(CORPUS.glob("*.dcm")) if f.stat().st_size <= 100_000]
    # BENCH_FLUORO_EVERY=k: every k-th object is instead a builder-made fluoroscopy procedure with the beam geometry a
    # Siemens AXIOM-Artis reports (bench_skin.procedure, BENCH_FLUORO_EVENTS events), whose peak skin dose the skin
    # worker can compute: the corpus's small files carry no usable geometry, so without it the skin queue only records
    # "not computable". The same files go to both runs of a with/without-skin-worker comparison.
    every = int(os.environ.get("BENCH_FLUORO_EVERY", "0") or 0)
    fluoro = None
    if every:
        from bench_skin import procedure

        fluoro = rewrite_uids(procedure(int(os.environ.get("BENCH_FLUORO_EVENTS", "50"))), patient_id="BENCHFLUORO")
    files = []
    for i in range(n):
        src = sources[i % len(sources)]
        out = outdir / f"obj{i:05d}.dcm"
        # about 2 procedures per patient, as in a hospital's day (not 100 studies for each corpus patient)
        data = fluoro if fluoro is not None and i % every == every - 1 else src.read_bytes()
        out.write_bytes(rewrite_uids(data, patient_id=f"BENCH{i // 2:05d}"))
        files.append(out)
    return files


def _storescu(port, files, aet="BENCHSCU"):
    env = dict(os.environ, TCP_NODELAY="1")
    t = time.perf_counter()
    # one association for all files, as a modality sending a batch would
    r = subprocess.run(["/usr/bin/storescu", "-aet", aet, "-aec", "DOSEREG", "127.0.0.1", str(port), *map(str, files)],
                       capture_output=True, text=True, env=env)
    return time.perf_counter() - t, r


def _peak_rss_mb(pid: int) -> float:
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    peak = 0.0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return peak


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def _pids_named(fragment: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if fragment in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


class CpuMeter:
    """CPU seconds used by named process groups between start() and stop() (processes alive at stop;
    PostgreSQL: every backend and background process, Redis: the server)."""

    def __init__(self, groups):
        self.groups = groups  # name -> callable returning pids

    def _read(self):
        return {name: {p: _proc_cpu_s(p) for p in find()} for name, find in self.groups.items()}

    def start(self):
        self.t0 = self._read()

    def stop(self) -> dict[str, float]:
        t1 = self._read()
        return {name: sum(v - self.t0[name].get(p, 0.0) for p, v in t1[name].items()) for name in t1}


def bench_ingest(n: int = 2000):
    import redis

    django_setup(PG)
    reset_registry()
    from dosereg.registry.models import DoseObject

    redis.Redis.from_url(REDIS).flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="dosereg-bench-"))
    files = _make_objects(n, tmp / "in")
    sizes = [f.stat().st_size for f in files]
    # DCMTK's own storescp: the protocol's practical ceiling on this machine
    port = free_port()
    (tmp / "scp").mkdir()
    scp = subprocess.Popen(["storescp", "-od", str(tmp / "scp"), "-aet", "DOSEREG", str(port)],
                           env=dict(os.environ, TCP_NODELAY="1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    t_scp, r = _storescu(port, files)
    scp.terminate()
    scp.wait()
    assert r.returncode == 0, r.stderr[-2000:]

    env = dict(os.environ, DATABASE_URL=PG, REDIS_URL=REDIS, SPOOL_DIR=str(tmp / "spool"), LOG_LEVEL="WARNING",
               DICOM_ALLOWED_CALLING_AES="BENCHSCU", SPOOL_MIN_FREE_BYTES="0",
               DOSEREG_LISTENER_STATS_FILE=str(tmp / "listener-stats.json"))
    port = free_port()
    listener = subprocess.Popen([sys.executable, "manage.py", "run_listener", "--port", str(port), "--address", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "listener.log", "w"))
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-Q", "dosereg", "-c", "2",
                               "--without-gossip", "--without-mingle", "-l", "WARNING"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"))
    # BENCH_SKIN_WORKER=1: the skin queue's worker runs beside it (issue 15: ingest no slower with it), as
    # docker-compose runs it: its own process, -c 1, under SCHED_IDLE (WORKER_SCHED_IDLE: CPU time nothing else wants)
    skin_worker = None
    if os.environ.get("BENCH_SKIN_WORKER") == "1":
        skin_worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", "worker",
                                        "-Q", "skin", "-c", "1", "--without-gossip", "--without-mingle", "-l", "WARNING"],
                                       cwd=REPO, env=dict(env, WORKER_SCHED_IDLE="true"), stdout=subprocess.DEVNULL,
                                       stderr=open(tmp / "skin.log", "w"))
    wait_port(port)
    time.sleep(3)  # worker start-up
    meters = {"listener": lambda: _tree(listener.pid), "worker": lambda: _tree(worker.pid),
              "postgres": lambda: _pids_named("postgres"), "redis": lambda: _pids_named("redis-server")}
    if skin_worker is not None:
        meters["skin worker"] = lambda: _tree(skin_worker.pid)
    meter = CpuMeter(meters)
    meter.start()
    t0 = time.perf_counter()
    t_send, r = _storescu(port, files)
    assert r.returncode == 0, r.stderr[-2000:]
    peak = 0.0
    while True:
        peak = max(peak, _peak_rss_mb(worker.pid))
        done = DoseObject.objects.exclude(status=DoseObject.STATUS_RECEIVED).count()
        if done >= n or time.perf_counter() - t0 > 600:
            break
        time.sleep(0.2)
    t_all = time.perf_counter() - t0
    cpu = meter.stop()
    peak = max(peak, _peak_rss_mb(worker.pid))
    listener.terminate()
    listener.wait(20)
    worker.terminate()
    worker.wait(30)
    skin_line = ""
    if skin_worker is not None:
        from dosereg.skindose.models import StudySkinDose

        skin_line = (f"  skin worker beside it          {StudySkinDose.objects.count()} studies' skin dose computed "
                     f"during the run ({StudySkinDose.objects.filter(computable=True).count()} with a PSD)")
        # then its backlog (it waits while ingest tasks wait in the broker, SKIN_YIELD_MAX_S): until the skin queue
        # is empty and no row was added for 3 s
        from dosereg.ops.health import broker_queue_length

        rc, t_end, last, stable_since = redis.Redis.from_url(REDIS), time.perf_counter(), -1, time.perf_counter()
        while time.perf_counter() - t_end < 600:
            count = StudySkinDose.objects.count()
            if count != last or broker_queue_length(rc, "skin"):
                last, stable_since = count, time.perf_counter()
            elif time.perf_counter() - stable_since >= 3:
                break
            time.sleep(0.5)
        skin_line += (f"\n  skin backlog done              {stable_since - t_end:.1f} s after the last ingest: {last} "
                      f"studies ({StudySkinDose.objects.filter(computable=True).count()} with a PSD)")
        skin_worker.terminate()
        skin_worker.wait(60)
    stats = json.loads((tmp / "listener-stats.json").read_text())
    lat = [x * 1000 for x in stats["ack_latencies_s"]]
    ingested = DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED).count()
    quarantined = DoseObject.objects.filter(status=DoseObject.STATUS_QUARANTINED).count()
    print(f"== ingest: {n} objects ({min(sizes)//1024}-{max(sizes)//1024} KB) via /usr/bin/storescu, one association")
    print(f"  DCMTK storescp receive        {n/t_scp:8.1f} obj/s")
    print(f"  dosereg listener acknowledged {n/t_send:8.1f} obj/s   ratio {t_scp/t_send:.2f}x storescp")
    print(f"  committed to PostgreSQL       {n/t_all:8.1f} obj/s   (target >= 50)  ingested={ingested} quarantined={quarantined}")
    print(f"  ack latency p50/p95/p99       {pct(lat,50):.1f} / {pct(lat,95):.1f} / {pct(lat,99):.1f} ms (target p99 < 50)")
    print(f"  worker peak RSS               {peak:8.1f} MB (target < 300)")
    print("  CPU per object                " + ", ".join(f"{k} {v * 1000 / n:.1f} ms" for k, v in cpu.items())
          + f"; total {sum(cpu.values()) * 1000 / n:.1f} ms on {os.cpu_count()} cores"
          + f" (ceiling {os.cpu_count() * n / max(sum(cpu.values()), 1e-9):.0f} obj/s)")
    if skin_line:
        print(skin_line)
    print(f"  load average                  {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"storescp_obj_s": n / t_scp, "ack_obj_s": n / t_send, "committed_obj_s": n / t_all,
            "ack_p50_ms": pct(lat, 50), "ack_p95_ms": pct(lat, 95), "ack_p99_ms": pct(lat, 99), "worker_peak_mb": peak,
            "cpu_ms_per_object": {k: v * 1000 / n for k, v in cpu.items()}}


SCENARIOS = {"parse316": bench_parse316, "ingest": bench_ingest}

if __name__ == "__main__":
    which = sys.argv[1:] or list(SCENARIOS)
    name = which[0]
    if name in SCENARIOS:
        args = [int(a) for a in which[1:]]
        SCENARIOS[name](*args)
    else:
        extra = REPO / "bench" / f"bench_{name}.py"
        if not extra.exists():
            sys.exit(f"unknown scenario {name}; known: {', '.join(SCENARIOS)} and bench/bench_*.py")
        os.execv(sys.executable, [sys.executable, str(extra), *which[1:]])

#!/usr/bin/env python
"""Hostile corpus benchmark (issue #18): N generated hostile objects (default 10,000; ``tests/hostile/corpus.py``)
through the real listener subprocess -> Redis -> Celery worker (-c 2) -> PostgreSQL, over parallel associations.

    python bench/run.py hostile [--n 10000] [--parallel 4] [--seed 18] [--pages 500]

Prints objects/s (acknowledged, and registered end to end), counts per outcome and per family, peak RSS of the
listener and of the worker processes, and every broken invariant (listener dead, acknowledged object lost,
refused object kept, spool object in neither registry nor quarantine, two identities on one patient row, a
500 from a page or API answer about the affected patients; ``--pages``: how many patients and studies are paged).
Exit status 1 if an invariant broke. Needs PostgreSQL (BENCH_HOSTILE_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/dosereg_bench_hostile) and Redis (BENCH_HOSTILE_REDIS_URL, default db 12).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG = os.environ.get("BENCH_HOSTILE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_hostile")
REDIS = os.environ.get("BENCH_HOSTILE_REDIS_URL", "redis://127.0.0.1:6379/12")
CALLING_AE = "HOSTILE1"


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the Celery pool), in MB."""
    import psutil

    try:
        p = psutil.Process(pid)
        return sum(x.memory_info().rss for x in [p, *p.children(recursive=True)]) / 2**20
    except psutil.Error:
        return 0.0


def _max_child_rss_mb(pid: int) -> float:
    import psutil

    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return max(x.memory_info().rss for x in procs) / 2**20
    except (psutil.Error, ValueError):
        return 0.0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--pages", type=int, default=500)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # pydicom warns about every hostile value it is asked to write
    import logging

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    run = _run_module()
    run.django_setup(PG)
    run.reset_registry()
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    from tests.hostile.corpus import generate
    from tests.hostile.run import send_corpus, summary, verify, wait_settled

    tmp = Path(tempfile.mkdtemp(prefix="dosereg-bench-hostile-"))
    env = dict(os.environ, DATABASE_URL=PG, REDIS_URL=REDIS, SPOOL_DIR=str(tmp / "spool"), LOG_LEVEL="WARNING",
               DICOM_ALLOWED_CALLING_AES=CALLING_AE, DOSEREG_VAR_DIR=str(tmp / "var"), SPOOL_MIN_FREE_BYTES="0",
               DOSEREG_PRODUCTION="false")
    port = run.free_port()
    listener = subprocess.Popen([sys.executable, "manage.py", "run_listener", "--port", str(port), "--address", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "listener.log", "w"))
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-Q", "dosereg", "-c", "2",
                               "--without-gossip", "--without-mingle", "-l", "WARNING"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"))
    peaks = {"listener": 0.0, "worker_total": 0.0, "worker_process": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            peaks["listener"] = max(peaks["listener"], _tree_rss_mb(listener.pid))
            peaks["worker_total"] = max(peaks["worker_total"], _tree_rss_mb(worker.pid))
            peaks["worker_process"] = max(peaks["worker_process"], _max_child_rss_mb(worker.pid))
            time.sleep(0.5)

    code = 1
    try:
        run.wait_port(port)
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        records = send_corpus(port, generate(args.n, seed=args.seed, prefix=f"HB{args.seed}-"), parallel=args.parallel,
                              calling_ae=CALLING_AE, workdir=tmp / "send")
        t_sent = time.perf_counter() - t0
        acked = {r.sop_uid for r in records if r.acked}
        pending = wait_settled(acked, timeout_s=3600)
        t_all = time.perf_counter() - t0
        done.set()
        alive = listener.poll() is None and worker.poll() is None
        echo = subprocess.run(["/usr/bin/echoscu", "-aet", CALLING_AE, "-aec", "DOSEREG", "127.0.0.1", str(port)],
                              capture_output=True, text=True, timeout=30).returncode == 0
        t1 = time.perf_counter()
        rep = verify(records, spool_dir=tmp / "spool", max_patients_paged=args.pages)
        t_verify = time.perf_counter() - t1
        if not alive:
            rep.add("the listener or the worker died")
        if not echo:
            rep.add("the listener no longer answers C-ECHO")
        if pending:
            rep.add(f"{pending} acknowledged objects still not ingested after an hour")
        size_mb = sum(r.size for r in records) / 2**20
        print(f"== hostile corpus: {len(records)} objects ({size_mb:.0f} MB), seed {args.seed}, "
              f"{args.parallel} parallel associations, listener -> Redis -> worker -c 2 -> PostgreSQL")
        print(f"  sent and answered             {len(records) / t_sent:8.1f} obj/s  ({t_sent:.0f} s)")
        print(f"  registered end to end         {len(records) / t_all:8.1f} obj/s  ({t_all:.0f} s)")
        print(f"  listener peak RSS             {peaks['listener']:8.1f} MB")
        print(f"  worker peak RSS (largest proc){peaks['worker_process']:8.1f} MB; all worker processes {peaks['worker_total']:.1f} MB")
        print(f"  verification                  {t_verify:8.1f} s")
        print(f"  listener alive / answers echo {alive} / {echo}")
        print(summary(rep))
        code = 0 if not rep.problems else 1
    finally:
        done.set()
        for p in (listener, worker):
            p.terminate()
        for p in (listener, worker):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if code == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"  logs and spool kept in {tmp}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

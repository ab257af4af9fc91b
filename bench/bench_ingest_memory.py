#!/usr/bin/env python
"""Worker memory for one large report (issue 18), run on demand, never in CI:

    python bench/bench_ingest_memory.py [N_EVENTS ...]      # default: 20000 10000

For each size, a builder-made TID 10001 RDSR with N events is stored and registered (as the listener does)
and then ingested by the worker's service (``dose_object_ingest``: extract, write on PostgreSQL) in a fresh
process, once with the configured ``INGEST_MAX_EVENTS`` and once without a limit. Prints the peak RSS of
that process during the ingest (VmHWM, reset before the ingest) and the outcome. Target: < 300 MB for a 20,000-event report, or the report quarantined
with the reason.

Needs PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/dosereg_bench_memory).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_memory")


def build(n_events: int, out: Path) -> Path:
    from dosereg.rdsr import builder as B

    events = [B.ProjectionEventSpec(dap_gy_cm2=0.5 + i % 7 / 10, dose_rp_gy=0.002, kvp=75.0, tube_current_ma=5.0,
                                    irradiation_duration_s=10.0) for i in range(n_events)]
    ds = B.build_projection_rdsr(B.ProjectionRDSRSpec(events=events, patient_id=f"MEM{n_events}-{time.time_ns()}",
                                                      study_datetime=dt.datetime(2025, 3, 2, 9, 30)))
    out.write_bytes(B.to_bytes(ds))
    return out


def _hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM; ru_maxrss would include the parent's at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_hwm() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(path: str) -> None:
    """One object through the worker's path in this (fresh) process: stored and registered as the listener
    does, then ``dose_object_ingest`` as the worker runs it. Prints a JSON line."""
    os.environ["DATABASE_URL"] = PG
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import gc
    import hashlib

    import django

    django.setup()
    from django.conf import settings

    from dicom_listener.spool import Spool
    from dosereg.registry.ingest import dose_object_ingest
    from dosereg.registry.receiving import dose_object_register

    spool = Spool(Path(tempfile.mkdtemp(prefix="bench-mem-")))
    uid = f"2.25.{time.time_ns()}"
    data = Path(path).read_bytes()
    stored = spool.store(uid, data)
    obj, _ = dose_object_register(sop_instance_uid=uid, sop_class_uid="", path=stored.path, sha256=hashlib.sha256(data).hexdigest(),
                                  size_bytes=len(data), enqueue=False)
    del data, stored
    gc.collect()
    base = _hwm_mb()
    reset = _reset_hwm()
    base_now = _hwm_mb() if reset else base
    t = time.perf_counter()
    obj = dose_object_ingest(dose_object_id=obj.pk)
    seconds = time.perf_counter() - t
    peak = _hwm_mb()
    print(json.dumps({"status": obj.status, "reason": obj.quarantine_reason[:120], "seconds": round(seconds, 2),
                      "rss_before_mb": round(base_now, 1), "peak_rss_mb": round(peak, 1), "hwm_reset": reset,
                      "limit": settings.INGEST_MAX_EVENTS}))


def main(sizes: list[int]) -> None:
    from run import _ensure_db

    os.environ["DATABASE_URL"] = PG
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.core.management import call_command

    _ensure_db(PG)
    call_command("migrate", verbosity=0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    print("== worker ingest memory: one builder-made RDSR, dose_object_ingest in a fresh process (peak RSS)")
    results = {}
    for n in sizes:
        for limit in (os.environ.get("INGEST_MAX_EVENTS", "10000"), "0"):
            path = build(n, tmp / f"rdsr-{n}-{limit}.dcm")  # new UIDs each time: a first ingest, not a duplicate
            env = dict(os.environ, INGEST_MAX_EVENTS=limit)
            r = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True, env=env)
            line = (r.stdout.strip().splitlines() or ["{}"])[-1]
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                res = {"error": (r.stderr or r.stdout)[-500:]}
            size_mb = path.stat().st_size / 1e6
            label = f"limit {int(limit):,}" if int(limit) else "no limit"
            results[f"{n}:{label}"] = res
            if "error" in res:
                print(f"  {n:6,} events ({size_mb:5.1f} MB), {label:14}: FAILED {res['error']}")
                continue
            print(f"  {n:6,} events ({size_mb:5.1f} MB), {label:14}: peak RSS {res['peak_rss_mb']:7.1f} MB "
                  f"(process before ingest {res['rss_before_mb']:.1f} MB), {res['seconds']:6.2f} s, {res['status']}"
                  + (f" ({res['reason']})" if res.get("reason") else ""))
            path.unlink()
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        main([int(a) for a in sys.argv[1:]] or [20000, 10000])

#!/usr/bin/env python
"""Benchmark (on demand, never in CI): listener memory while receiving large objects in parallel.

    python bench/run.py listener_memory [--size-mb 600] [--parallel 4]
    python bench/bench_listener_memory.py [--size-mb 600] [--parallel 4]

The real listener (``manage.py run_listener``) as a subprocess on PostgreSQL and Redis (no worker: the
ingests stay queued; this measures receiving). ``--parallel`` copies of DCMTK's /usr/bin/storescu each send
one ``--size-mb`` object at the same time: a small RDSR followed by a private OB element of that size,
generated on the fly as a sparse file in a temporary folder. Prints the listener's peak RSS (VmHWM; target
< 200 MB for four 600 MB objects), its RSS before the transfer, the wall time and throughput, and checks
that every object was acknowledged, is in the spool with its size and is registered.

Needs PostgreSQL (BENCH_LISTENER_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/dosereg_bench_listener;
emptied), Redis (BENCH_LISTENER_REDIS_URL, default redis://127.0.0.1:6379/13; flushed) and about
``size x parallel`` free bytes in the temporary folder (the spool).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PG = os.environ.get("BENCH_LISTENER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_listener")
REDIS = os.environ.get("BENCH_LISTENER_REDIS_URL", "redis://127.0.0.1:6379/13")
CALLING_AE = "BENCHSCU"


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_big_object(path: Path, size: int, patient_id: str) -> str:
    """A valid RDSR plus a trailing private OB element of ``size`` bytes (zeros, a sparse file)."""
    from dosereg.rdsr import builder as B

    ds = B.build_projection_rdsr(B.ProjectionRDSRSpec(patient_id=patient_id, events=[
        B.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01)]))
    ds.add_new(0x7FD10010, "LO", "DOSEREG BENCH")  # private creator of group 7FD1 (after everything else)
    head = B.to_bytes(ds)
    element = struct.pack("<HH2sHI", 0x7FD1, 0x1010, b"OB", 0, size)  # explicit VR LE, 4-byte length
    with open(path, "wb") as fh:
        fh.write(head + element)
        fh.truncate(len(head) + len(element) + size)
    return str(ds.SOPInstanceUID)


def _status(pid: int) -> dict[str, float]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def main(argv: list[str]) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=600)
    ap.add_argument("--parallel", type=int, default=4)
    args = ap.parse_args(argv)
    size = args.size_mb * 1024 * 1024

    run = _run_module()
    run.django_setup(PG)
    run.reset_registry()
    import redis

    redis.Redis.from_url(REDIS).flushdb()
    from dosereg.registry.models import DoseObject

    tmp = Path(tempfile.mkdtemp(prefix="dosereg-bench-listener-"))
    try:
        need = size * args.parallel + 256 * 1024 * 1024
        if shutil.disk_usage(tmp).free < need:
            sys.exit(f"need {need / 2**30:.1f} GiB free in {tmp} for the spool")
        files, uids = [], []
        for i in range(args.parallel):
            path = tmp / "in" / f"big{i}.dcm"
            path.parent.mkdir(exist_ok=True)
            uids.append(make_big_object(path, size, f"BIGMEM{i:02d}"))
            files.append(path)
        env = dict(os.environ, DATABASE_URL=PG, REDIS_URL=REDIS, SPOOL_DIR=str(tmp / "spool"), LOG_LEVEL="WARNING",
                   DICOM_ALLOWED_CALLING_AES=CALLING_AE, DICOM_MAX_OBJECT_BYTES=str(size + 64 * 1024 * 1024),
                   DOSEREG_VAR_DIR=str(tmp / "var"))
        port = run.free_port()
        listener = subprocess.Popen([sys.executable, "manage.py", "run_listener", "--port", str(port),
                                     "--address", "127.0.0.1"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(tmp / "listener.log", "w"))
        try:
            run.wait_port(port)
            time.sleep(1.0)
            idle = _status(listener.pid)
            peak_rss = [idle.get("VmRSS", 0.0)]
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak_rss[0] = max(peak_rss[0], _status(listener.pid).get("VmRSS", 0.0))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            senders = [subprocess.Popen(["/usr/bin/storescu", "-aet", CALLING_AE, "-aec", "DOSEREG", "127.0.0.1",
                                         str(port), str(f)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                       for f in files]
            results = [(s.wait(600), s.stdout.read()) for s in senders]
            wall = time.perf_counter() - t0
            done.set()
            sampler.join()
            final = _status(listener.pid)
        finally:
            listener.terminate()
            listener.wait(30)
        failed = [out[-500:] for code, out in results if code != 0]
        spooled = {p.name.split("__")[0]: p.stat().st_size for p in (tmp / "spool" / "objects").rglob("*.dcm")}
        registered = set(DoseObject.objects.filter(sop_instance_uid__in=uids).values_list("sop_instance_uid", flat=True))
        hwm = final.get("VmHWM", peak_rss[0])
        total_mb = args.size_mb * args.parallel
        print(f"== listener memory: {args.parallel} x {args.size_mb} MB objects in parallel via /usr/bin/storescu")
        print(f"  listener RSS before           {idle.get('VmRSS', 0):8.1f} MB")
        print(f"  listener peak RSS (VmHWM)     {hwm:8.1f} MB   (target < 200)")
        print(f"  wall time                     {wall:8.1f} s    ({total_mb / wall:.0f} MB/s received, fsynced, registered)")
        print(f"  acknowledged                  {len(results) - len(failed)}/{len(results)}"
              f"   spooled {sum(1 for u in uids if spooled.get(u, 0) >= size)}/{len(uids)}"
              f"   registered {len(registered)}/{len(uids)}")
        for out in failed:
            print("  storescu failed:", out)
        return {"peak_rss_mb": hwm, "idle_rss_mb": idle.get("VmRSS", 0), "wall_s": wall,
                "acknowledged": len(results) - len(failed), "registered": len(registered)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            redis.Redis.from_url(REDIS).flushdb()
        except Exception:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/env python
"""Benchmark (on demand, never in CI): C-STORE -> alert e-mail accepted by the SMTP server.

    python bench/bench_alert_latency.py [--rate 20] [--seconds 60] [--high-every 5] [--workers 2] [--senders 4]

Real processes, as in production: the DICOM listener (``manage.py run_listener``) and one Celery
worker with ``-c 2`` (two worker processes) as subprocesses, Redis as the broker, PostgreSQL as the
database, and an aiosmtpd SMTP server inside this process. A pynetdicom SCU (``--senders``
associations in threads) sends builder-generated RDSRs (``random_projection_spec``) at a steady
``--rate`` objects/s for ``--seconds``; every ``--high-every``-th object is a fluoroscopically guided
procedure with Ka,r scaled to 3.2-8 Gy, so that it raises NCRP 168 notification / SRDL alerts. Each
object has its own patient ID, so every e-mail is matched to the object it is about by the patient
ID in its body.

For every alert-raising object: time from just before its C-STORE to the SMTP server accepting the
e-mail(s). Prints p50/p95/p99 (target: p95 < 2 s with 2 workers at 20 objects/s), the ingest
throughput, C-STORE round trips and the broker queue depth.

Needs PostgreSQL (BENCH_ALERTS_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/dosereg_bench_alerts;
its registry, exposure and notification tables are emptied) and Redis (BENCH_ALERTS_REDIS_URL, default
redis://127.0.0.1:6379/11; flushed).
"""
from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from email import message_from_bytes, policy
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from run import django_setup, free_port, pct, reset_registry, wait_port  # noqa: E402

PG = os.environ.get("BENCH_ALERTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dosereg_bench_alerts")
REDIS = os.environ.get("BENCH_ALERTS_REDIS_URL", "redis://127.0.0.1:6379/11")
RECIPIENTS = ["rso1@bench.test", "rso2@bench.test"]
RDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"
PATIENT_RE = re.compile(r"\(ID ([^)\s]+)\)")


class Inbox:
    """aiosmtpd handler: the arrival time (perf_counter) of every accepted message."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[tuple[float, str, list[str], str]] = []  # (t, subject, rcpts, body)

    async def handle_DATA(self, server, session, envelope):
        t = time.perf_counter()
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        body = msg.get_body(preferencelist=("plain",)).get_content()
        with self.lock:
            self.mails.append((t, " ".join(str(msg["Subject"]).split()), list(envelope.rcpt_tos), body))
        return "250 OK message accepted"

    def snapshot(self):
        with self.lock:
            return list(self.mails)


def make_objects(n: int, high_every: int, seed: int, tag: str, outdir: Path):
    """(patient_id, high, path) for n builder RDSRs; every high_every-th is a high-dose FGI procedure.

    Written as Part-10 files: pynetdicom sends a file's encoded bytes as they are, so the SCU does not
    spend the benchmark re-encoding large SR trees in Python (a Dataset would be encoded on every send)."""
    from dosereg.rdsr import builder as B

    rng = random.Random(seed)
    out = []
    for i in range(n):
        pid = f"{tag}{i:05d}"
        high = high_every > 0 and i % high_every == 0
        if high:
            spec = B.random_projection_spec(rng, kind=rng.choice(("rf_room", "fixed_angio", "mobile_carm")), patient_id=pid)
            target_kar = rng.uniform(3.2, 8.0)  # Gy: over the NCRP 168 first notification, often over the SRDL
            total = sum(e.dose_rp_gy or 0.0 for e in spec.events) or 1.0
            f = target_kar / total
            for e in spec.events:
                if e.dose_rp_gy is not None:
                    e.dose_rp_gy = round(e.dose_rp_gy * f, 6)
                if e.dap_gy_cm2 is not None:
                    e.dap_gy_cm2 = round(e.dap_gy_cm2 * min(f, 40.0), 5)
        else:
            spec = B.random_projection_spec(rng, patient_id=pid)
        ds = B.build_projection_rdsr(spec)
        path = outdir / f"{pid}.dcm"
        path.write_bytes(B.to_bytes(ds))  # to_bytes adds the file meta (transfer syntax)
        out.append((pid, high, path))
    return out


def start_stack(tmp: Path, smtp_port: int, workers: int, loglevel: str = "WARNING"):
    env = dict(os.environ)
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    env.update({
        "DATABASE_URL": PG, "REDIS_URL": REDIS, "SPOOL_DIR": str(tmp / "spool"), "DOSEREG_VAR_DIR": str(tmp / "var"),
        "DICOM_ALLOWED_CALLING_AES": "BENCHSCU,STORESCU", "SPOOL_MIN_FREE_BYTES": "0", "LOG_LEVEL": "WARNING",
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port), "EMAIL_USE_TLS": "false", "EMAIL_TIMEOUT": "5",
        # the generated procedures are dated over the past year: without this, those older than 30 days open
        # cases without e-mail (a back-fill, by design) and nothing would be measured
        "ALERT_NOTIFY_MAX_AGE_DAYS": "0",
    })
    port = free_port()
    listener = subprocess.Popen([sys.executable, "manage.py", "run_listener", "--port", str(port), "--address", "127.0.0.1"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "listener.log", "w"))
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-Q", "dosereg", "-c", str(workers),
                               "--without-gossip", "--without-mingle", "-n", "bench@%h", "-l", loglevel],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "worker.log", "w"))
    wait_port(port)
    return port, [listener, worker]


def send_all(port: int, objects, rate: float, senders: int):
    """Steady load: object i is sent at t0 + i/rate by sender i % senders (one association each)."""
    from pynetdicom import AE
    from pydicom.uid import ExplicitVRLittleEndian

    t_send = [0.0] * len(objects)
    rtt = [0.0] * len(objects)
    failures: list[str] = []
    t0 = time.perf_counter() + 0.5

    def sender(k: int):
        ae = AE(ae_title="BENCHSCU")
        # only the files' own transfer syntax: were Implicit VR accepted, pynetdicom would decode and re-encode
        # every SR tree in Python before sending it (10x slower C-STOREs)
        ae.add_requested_context(RDSR_CLASS, [ExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
        if not assoc.is_established:
            failures.append(f"sender {k}: association not established")
            return
        # as DCMTK with TCP_NODELAY=1: without it Nagle + delayed ACK cap one association at a few objects/s
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(k, len(objects), senders):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t_send[i] = time.perf_counter()
                status = assoc.send_c_store(objects[i][2])  # a path: sent as encoded
                rtt[i] = time.perf_counter() - t_send[i]
                if not status or status.Status != 0x0000:
                    failures.append(f"object {i}: C-STORE status {getattr(status, 'Status', None)}")
        finally:
            assoc.release()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return t0, t_send, rtt, failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20.0, help="objects per second")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--high-every", type=int, default=5, help="every n-th object is a high-dose FGI procedure")
    ap.add_argument("--workers", type=int, default=2, help="Celery worker processes (-c)")
    ap.add_argument("--senders", type=int, default=4, help="concurrent SCU associations")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, spool)")
    ap.add_argument("--task-times", action="store_true", help="worker logs at INFO; print the time spent per task name")
    args = ap.parse_args()

    django_setup(PG)
    reset_registry()
    import redis
    from aiosmtpd.controller import Controller
    from django.apps import apps as django_apps
    from django.contrib.auth.models import Group, User

    from dosereg.exposure.constants import RSO_GROUP
    from dosereg.exposure.models import Alert, Rule, RuleSet
    from dosereg.notifications.models import Notification
    from dosereg.ops.health import broker_queue_length
    from dosereg.registry.models import DoseObject

    if not Rule.objects.filter(ruleset__active=True, key="fgi-kar-srdl").exists():
        # reset_registry's TRUNCATE … CASCADE of registry_device empties exposure_rule (Rule.scope_device)
        RuleSet.objects.all().delete()
        importlib.import_module("dosereg.exposure.migrations.0002_seed_defaults").seed(django_apps, None)
    group, _ = Group.objects.get_or_create(name=RSO_GROUP)
    User.objects.filter(email__in=RECIPIENTS).delete()
    for address in RECIPIENTS:
        User.objects.create_user(address.split("@")[0] + "_bench", email=address).groups.add(group)
    r = redis.Redis.from_url(REDIS)
    r.flushdb()

    n = int(args.rate * args.seconds)
    tag = f"LAT{int(time.time()) % 100000:05d}-"
    tmp = Path(tempfile.mkdtemp(prefix="dosereg-bench-alerts-"))
    (tmp / "objects").mkdir()
    t = time.perf_counter()
    warm = make_objects(2 * args.workers, 1, args.seed + 1, tag + "W", tmp / "objects")
    objects = make_objects(n, args.high_every, args.seed, tag, tmp / "objects")
    sizes = sorted(o[2].stat().st_size for o in objects)
    print(f"built {n} RDSRs ({sum(1 for o in objects if o[1])} high-dose; {sizes[0] // 1024}-{sizes[-1] // 1024} KB, "
          f"median {sizes[len(sizes) // 2] // 1024} KB) in {time.perf_counter() - t:.1f} s")
    inbox = Inbox()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    procs = []
    try:
        port, procs = start_stack(tmp, smtp_port, args.workers, "INFO" if args.task_times else "WARNING")
        # warm-up: both worker processes import everything and open their connections; not measured
        send_all(port, warm, rate=10, senders=1)
        deadline = time.time() + 90
        while time.time() < deadline and len({p for _, _, _, b in inbox.snapshot() for p in PATIENT_RE.findall(b)}) < len(warm):
            time.sleep(0.2)
        print(f"warm-up: {len(inbox.snapshot())} e-mails for {len(warm)} objects")
        warm_mails = len(inbox.snapshot())

        depth: list[int] = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                depth.append(broker_queue_length(r))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0, t_send, rtt, failures = send_all(port, objects, args.rate, args.senders)
        t_end_send = time.perf_counter()
        # drain: every object processed, no pending notification, no new e-mail for 3 s
        deadline = time.time() + 180
        last, last_change = -1, time.time()
        while time.time() < deadline:
            pending = DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED).count()
            unsent = Notification.objects.filter(status=Notification.STATUS_PENDING).count()
            got = len(inbox.snapshot())
            if got != last:
                last, last_change = got, time.time()
            if pending == 0 and unsent == 0 and time.time() - last_change > 3:
                break
            time.sleep(0.3)
        stop.set()

        mails = inbox.snapshot()[warm_mails:]
        index = {pid: i for i, (pid, _, _) in enumerate(objects)}
        per_mail: list[float] = []
        first: dict[int, float] = {}
        last_mail: dict[int, float] = {}
        unmatched = 0
        rule_mails = defaultdict(int)
        for t_mail, subject, rcpts, body in mails:
            ids = [index[p] for p in PATIENT_RE.findall(body) if p in index]
            if not ids:
                unmatched += 1
                continue
            i = ids[0]
            lat = t_mail - t_send[i]
            per_mail.extend([lat] * len(rcpts))
            first[i] = min(first.get(i, lat), lat)
            last_mail[i] = max(last_mail.get(i, lat), lat)
            rule_mails[subject.split(":")[0].replace("[dosereg] ", "")] += len(rcpts)
        high = {i for i, o in enumerate(objects) if o[1]}
        missing = sorted(high - set(first))
        ingested = list(DoseObject.objects.filter(status=DoseObject.STATUS_INGESTED, ingested_at__isnull=False)
                        .order_by("ingested_at").values_list("ingested_at", flat=True))
        quarantined = DoseObject.objects.filter(status=DoseObject.STATUS_QUARANTINED).count()
        span = (ingested[-1] - ingested[0]).total_seconds() if len(ingested) > 1 else float("nan")

        def ms(v):
            return f"{v * 1000:7.0f} ms"

        print(f"== alert latency: {n} objects at {args.rate:g}/s for {args.seconds:g} s, "
              f"{args.workers} Celery worker processes, {args.senders} SCU associations")
        print(f"  sent               {n} objects in {t_end_send - t0:.1f} s ({n / (t_end_send - t0):.1f}/s); "
              f"C-STORE round trip p50 {ms(pct(rtt, 50))}, p95 {ms(pct(rtt, 95))}, max {ms(max(rtt))}; failures {len(failures)}")
        print(f"  ingested           {len(ingested)} (+{quarantined} quarantined, {len(warm)} warm-up); "
              f"{(len(ingested) - 1) / span if span == span and span > 0 else float('nan'):.1f}/s committed; "
              f"broker queue depth max {max(depth) if depth else 0}, median {pct(depth, 50):.0f}")
        print(f"  alert objects      {len(first)} (high-dose sent {len(high)}, of which without e-mail {len(missing)}); "
              f"e-mails {sum(len(m[2]) for m in mails)} ({unmatched} unmatched)")
        for k, v in sorted(rule_mails.items(), key=lambda kv: -kv[1]):
            print(f"      {v:5d}  {k}")
        print(f"  C-STORE -> e-mail accepted, every alert e-mail ({len(per_mail)}):")
        print(f"      p50 {ms(pct(per_mail, 50))}   p95 {ms(pct(per_mail, 95))}   p99 {ms(pct(per_mail, 99))}   "
              f"max {ms(max(per_mail) if per_mail else float('nan'))}")
        print(f"  C-STORE -> first e-mail of the object ({len(first)}):")
        fv = list(first.values())
        print(f"      p50 {ms(pct(fv, 50))}   p95 {ms(pct(fv, 95))}   p99 {ms(pct(fv, 99))}")
        lv = list(last_mail.values())
        print(f"  C-STORE -> last e-mail of the object:")
        print(f"      p50 {ms(pct(lv, 50))}   p95 {ms(pct(lv, 95))}   p99 {ms(pct(lv, 99))}")
        p95 = pct(per_mail, 95)
        print(f"  target: p95 < 2000 ms -> {'MET' if p95 < 2.0 and not missing else 'NOT MET'}")
        if failures:
            print("  failures:", failures[:5])
        print(f"  alerts in the database: {Alert.objects.count()}")
        if args.task_times:
            spent: dict[str, list[float]] = defaultdict(list)
            for m in re.finditer(r"Task (\S+)\[[^\]]+\] succeeded in ([0-9.e-]+)s", (tmp / "worker.log").read_text(errors="replace")):
                spent[m.group(1)].append(float(m.group(2)))
            print("  worker time per task (s):  name  count  total  median  p95")
            for name, v in sorted(spent.items(), key=lambda kv: -sum(kv[1])):
                print(f"      {name:40} {len(v):5d} {sum(v):7.2f} {pct(v, 50) * 1000:7.1f} ms {pct(v, 95) * 1000:7.1f} ms")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        controller.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

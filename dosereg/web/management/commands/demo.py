"""Start the whole system on one machine with demo data you can click through.

    python manage.py demo            # listener 127.0.0.1:11112, web 127.0.0.1:8000, tasks in-process (or workers with REDIS_URL)

Demo data is made by the project's own RDSR builder and sent through the real
pipeline (DICOM association -> listener -> spool -> ingest), never written
into the database directly. The demo prints a short summary (objects sent and
ingested, alerts raised, where the alert e-mails were written) and the logins;
static files (CSS, JavaScript, charts) are collected into STATIC_ROOT and served
by whitenoise, as in production.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from dosereg.registry.models import DoseObject

DEMO_AE = "DOSEREG_DEMO"
RECENT_DAYS = 84  # the dashboard's 12-week window
CONSOLE_EMAIL = "django.core.mail.backends.console.EmailBackend"
FILE_EMAIL = "django.core.mail.backends.filebased.EmailBackend"
# per-task and per-request INFO lines: shown with -v 2
CHATTY_LOGGERS = ("celery.app.trace", "dicom_listener", "django.server", "pynetdicom")


def move_into_recent_weeks(spec, rng: random.Random, *, days: int = RECENT_DAYS, today: dt.date | None = None):
    """Move a builder spec (study and every event time) to a working day of the last ``days`` days, so the demo's
    dashboard (12-week trends and cumulative exposure) shows its patients; the builder spreads exams over years."""
    today = today or dt.date.today()
    start = dt.datetime.combine(today - dt.timedelta(days=rng.randint(1, days - 1)), dt.time(7, 0)) \
        + dt.timedelta(minutes=rng.randrange(11 * 60))
    delta = start - spec.study_datetime
    for obj in (spec, *getattr(spec, "events", ())):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, dt.datetime):
                setattr(obj, f.name, value + delta)
    return spec


def send_demo_data(port: int, n_patients: int = 40, seed: int = 20261122, log=print, host: str = "127.0.0.1") -> int:
    """Build RDSRs with the project's builder and C-STORE them to the listener on ``host``:``port``."""
    import pydicom
    from pynetdicom import AE

    from dosereg.rdsr import builder as B

    datasets: list[pydicom.Dataset] = []
    for name in sorted(os.listdir(settings.BASE_DIR / "fixtures")):
        if name.endswith(".dcm"):
            datasets.append(pydicom.dcmread(settings.BASE_DIR / "fixtures" / name))
    rng = random.Random(seed)
    for i in range(n_patients):
        # one identity per patient, reused for each of their procedures
        who = B.random_projection_spec(rng)
        person: dict[str, Any] = {"patient_id": f"DEMO{i:04d}", "patient_name": who.patient_name, "patient_sex": who.patient_sex,
                  "birth_date": who.birth_date}
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            if rng.random() < 0.25:
                ds = B.build_ct_rdsr(move_into_recent_weeks(B.random_ct_spec(rng, **person), rng))
            else:
                ds = B.build_projection_rdsr(move_into_recent_weeks(B.random_projection_spec(rng, **person), rng))
            B.to_bytes(ds)  # sets file meta (transfer syntax), as a stored file has
            datasets.append(ds)
    # the physicist's weekly constancy check on a phantom: "not a patient" (NOT_PATIENT_PATTERN), kept out of the audit
    qa = B.build_projection_rdsr(move_into_recent_weeks(B.random_projection_spec(
        rng, kind="rf_room", patient_id="QA-PHANTOM", patient_name="PHANTOM^CONSTANCY", study_description="QA constancy"), rng))
    B.to_bytes(qa)
    datasets.append(qa)
    ae = AE(ae_title=DEMO_AE)
    for uid in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(uid)
    assoc = ae.associate(host, port, ae_title=str(settings.DICOM_AE_TITLE))
    if not assoc.is_established:
        raise RuntimeError("the demo sender could not associate with the listener")
    sent = 0
    for ds in datasets:
        status = assoc.send_c_store(ds)
        sent += int(getattr(status, "Status", 0xFFFF) == 0)
    assoc.release()
    log(f"demo: sent {sent}/{len(datasets)} objects through the DICOM listener")
    return sent


def _terminate_on_sigterm(signum, frame):
    """SIGTERM stops the demo like Ctrl+C: the listener and any worker are shut down."""
    raise KeyboardInterrupt


def registry_summary() -> dict[str, int]:
    """What the demo did, counted in the database (not from logs)."""
    from dosereg.exposure.models import Alert
    from dosereg.notifications.models import Notification

    by_status = {s: DoseObject.objects.filter(status=s).count()
                 for s in (DoseObject.STATUS_RECEIVED, DoseObject.STATUS_INGESTED, DoseObject.STATUS_QUARANTINED)}
    return {
        "objects": sum(by_status.values()), "received": by_status[DoseObject.STATUS_RECEIVED],
        "ingested": by_status[DoseObject.STATUS_INGESTED], "quarantined": by_status[DoseObject.STATUS_QUARANTINED],
        "alerts": Alert.objects.count(), "alert_patients": Alert.objects.values("patient").distinct().count(),
        "emails_sent": Notification.objects.filter(status=Notification.STATUS_SENT).count(),
        "emails_pending": Notification.objects.filter(status=Notification.STATUS_PENDING).count(),
        "emails_digest": Notification.objects.filter(status=Notification.STATUS_DIGEST).count(),
        "emails_failed": Notification.objects.filter(status=Notification.STATUS_FAILED).count(),
    }


def wait_until_processed(timeout_s: float = 180, emails_s: float = 20) -> dict[str, int]:
    """Wait (bounded) until every received object was ingested or quarantined, then for its e-mails to leave."""
    deadline = time.monotonic() + timeout_s
    summary = registry_summary()
    while summary["received"] and time.monotonic() < deadline:
        time.sleep(0.5)
        summary = registry_summary()
    deadline = time.monotonic() + emails_s
    while summary["emails_pending"] and time.monotonic() < deadline:
        time.sleep(0.5)
        summary = registry_summary()
    return summary


class Command(BaseCommand):
    help = "Run listener, web and worker with demo data (the README's first command)."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="127.0.0.1:8000", help="address:port of the web server")
        parser.add_argument("--dicom-address", default=None,
                            help="address the DICOM listener binds (default DEMO_DICOM_BIND_ADDRESS, 127.0.0.1: "
                                 "this machine only; 0.0.0.0 accepts modalities from the network)")
        parser.add_argument("--no-web", action="store_true", help="load demo data, print the summary and exit")
        parser.add_argument("--patients", type=int, default=40)

    def _quiet(self) -> None:
        if self.verbosity < 2:
            for name in CHATTY_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)

    def say(self, line: str = "") -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def handle(self, *args, **o):
        web_host, _, web_port = o["web"].rpartition(":")
        if not web_host or not web_port.isdigit():
            raise CommandError(f"--web must be address:port, not {o['web']!r}")
        self.verbosity = o["verbosity"]
        self._quiet()
        call_command("migrate", interactive=False, verbosity=0)
        # DEBUG is off (as in production): whitenoise serves the collected files from STATIC_ROOT
        call_command("collectstatic", interactive=False, verbosity=0)
        mail_note = self._email_to_files()
        from dicom_listener.server import start_listener

        db = settings.DATABASES["default"]
        self.say(f"dosereg demo: database {db['ENGINE'].rsplit('.', 1)[-1]} "
                 f"({db['NAME'] if db['ENGINE'].endswith('sqlite3') else db.get('HOST') or 'local'})")
        # both ports first: a busy port fails at once, before any data is loaded or a worker started
        httpd = None if o["no_web"] else self._bind_web(web_host.strip("[]"), int(web_port))
        allowed = list(settings.DICOM_ALLOWED_CALLING_AES)
        if "*" not in allowed and DEMO_AE not in allowed:
            allowed.append(DEMO_AE)
        address = o["dicom_address"] or settings.DEMO_DICOM_BIND_ADDRESS
        try:
            server, _ = start_listener(allowed=allowed, address=address)
        except OSError as exc:
            if httpd is not None:
                httpd.server_close()
            raise CommandError(f"the DICOM listener cannot bind {address}:{settings.DICOM_PORT}: {exc.strerror or exc} "
                               f"(DICOM_PORT, --dicom-address)") from exc
        procs: list[subprocess.Popen] = []
        if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
            env = {**os.environ, "EMAIL_BACKEND": str(settings.EMAIL_BACKEND), "EMAIL_FILE_PATH": str(settings.EMAIL_FILE_PATH)}
            chatty = o["verbosity"] > 1
            procs.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", *([] if chatty else ["--quiet"]),
                                           "worker", "-B", "-s", str(Path(settings.VAR_DIR) / "celerybeat-schedule"),
                                           "-Q", "dosereg,skin", "-c", "2", "-l", "INFO" if chatty else "WARNING"],
                                          env=env))
            self.say("started a Celery worker (with beat)")
        else:
            self.say("no REDIS_URL: tasks run in-process")
        signal.signal(signal.SIGTERM, _terminate_on_sigterm)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (SIG_IGN)
        try:
            host, port = server.server_address[:2]
            self.say(f"DICOM listener {settings.DICOM_AE_TITLE} on {host}:{port}")
            from dosereg.web.services import demo_users_create

            demo_users_create()  # the RSOs first: the demo's alert e-mails go to them
            if DoseObject.objects.exists():
                self.say(f"demo: the registry already holds {DoseObject.objects.count()} objects; nothing sent "
                         f"(delete {settings.VAR_DIR} to start over)")
            else:
                send_demo_data(port, n_patients=o["patients"], log=self.say,
                               host="127.0.0.1" if host in ("0.0.0.0", "::", "") else host)
            self._print_summary(wait_until_processed(), mail_note)
            self.say("logins:")
            for role, (user, pw) in demo_users_create().items():  # again: the patient account needs a patient
                self.say(f"  log in as {role:10}  user {user!r} password {pw!r}")
            if httpd is None:
                return
            self._serve(httpd, web_host.strip("[]"), int(web_port))
        except KeyboardInterrupt:
            self.say("demo: stopped")
        finally:
            server.shutdown()
            if httpd is not None:
                httpd.server_close()
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()

    def _email_to_files(self) -> str:
        """Without a configured mail server the demo writes its e-mails into files, not onto the terminal."""
        backend = str(settings.EMAIL_BACKEND)
        if backend != CONSOLE_EMAIL:
            if backend.endswith("smtp.EmailBackend"):
                return f"sent by SMTP to {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
            return f"sent with {backend}"
        settings.EMAIL_BACKEND = FILE_EMAIL
        Path(settings.EMAIL_FILE_PATH).mkdir(parents=True, exist_ok=True)
        return f"written to {settings.EMAIL_FILE_PATH}{os.sep}"

    def _print_summary(self, s: dict[str, int], mail_note: str) -> None:
        self.say(f"demo: ingested {s['ingested']}/{s['objects']} objects"
                 + (f", {s['quarantined']} quarantined" if s["quarantined"] else "")
                 + (f", {s['received']} still waiting" if s["received"] else ""))
        self.say(f"demo: {s['alerts']} alerts raised for {s['alert_patients']} patients")
        extra = [f"{s[k]} {label}" for k, label in (("emails_digest", "wait for the daily digest"),
                                                     ("emails_pending", "pending"), ("emails_failed", "failed")) if s[k]]
        self.say(f"demo: {s['emails_sent']} alert e-mails {mail_note}" + (f" ({', '.join(extra)})" if extra else ""))

    def _bind_web(self, host: str, port: int):
        """The web server's socket, bound before any data is loaded (a busy port fails at once): the WSGI application
        (whitenoise for /static/) on Django's threaded development server, without runserver's banner and checks."""
        from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler, get_internal_wsgi_application

        application = get_internal_wsgi_application()  # dosereg.wsgi runs django.setup(): logging configured again
        self._quiet()
        try:
            httpd = ThreadedWSGIServer((host, port), WSGIRequestHandler, ipv6=":" in host)
        except OSError as exc:
            raise CommandError(f"the web server cannot bind {host}:{port}: {exc.strerror or exc} (--web)") from exc
        httpd.set_app(application)
        return httpd

    def _serve(self, httpd, host: str, port: int) -> None:
        """Serve until Ctrl+C (or SIGTERM) stops everything."""
        self.say(f"web: http://{'[' + host + ']' if ':' in host else host}:{port}/  (Ctrl+C stops the demo)")
        httpd.serve_forever()

"""Start the whole system on one machine with demo data you can click through.

    python manage.py demo            # listener :11112, web :8000, tasks in-process (or workers with REDIS_URL)

Demo data is made by the project's own RDSR builder and sent through the real
pipeline (DICOM association -> listener -> spool -> ingest), never written
into the database directly.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from dosereg.registry.models import DoseObject

DEMO_AE = "DOSEREG_DEMO"


def send_demo_data(port: int, n_patients: int = 40, seed: int = 20261122, log=print) -> int:
    """Build RDSRs with the project's builder and C-STORE them to the listener on ``port``."""
    from pynetdicom import AE, build_context

    from dosereg.rdsr import builder as B

    datasets = []
    for name in sorted(os.listdir(settings.BASE_DIR / "fixtures")):
        if name.endswith(".dcm"):
            import pydicom

            datasets.append(pydicom.dcmread(settings.BASE_DIR / "fixtures" / name))
    rng = random.Random(seed)
    for i in range(n_patients):
        # one identity per patient, reused for each of their procedures
        who = B.random_projection_spec(rng)
        person = {"patient_id": f"DEMO{i:04d}", "patient_name": who.patient_name, "patient_sex": who.patient_sex,
                  "birth_date": who.birth_date}
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            if rng.random() < 0.25:
                ds = B.build_ct_rdsr(B.random_ct_spec(rng, **person))
            else:
                ds = B.build_projection_rdsr(B.random_projection_spec(rng, **person))
            B.to_bytes(ds)  # sets file meta (transfer syntax), as a stored file has
            datasets.append(ds)
    # the physicist's weekly constancy check on a phantom: "not a patient" (NOT_PATIENT_PATTERN), kept out of the audit
    qa = B.build_projection_rdsr(B.random_projection_spec(rng, kind="rf_room", patient_id="QA-PHANTOM",
                                                          patient_name="PHANTOM^CONSTANCY", study_description="QA constancy"))
    B.to_bytes(qa)
    datasets.append(qa)
    ae = AE(ae_title=DEMO_AE)
    for uid in {str(ds.SOPClassUID) for ds in datasets}:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title=settings.DICOM_AE_TITLE)
    if not assoc.is_established:
        raise RuntimeError("the demo sender could not associate with the listener")
    sent = 0
    for ds in datasets:
        status = assoc.send_c_store(ds)
        sent += int(getattr(status, "Status", 0xFFFF) == 0)
    assoc.release()
    log(f"demo: sent {sent}/{len(datasets)} objects through the DICOM listener")
    return sent


class Command(BaseCommand):
    help = "Run listener, web and worker with demo data (the README's first command)."

    def add_arguments(self, parser):
        parser.add_argument("--web", default="127.0.0.1:8000")
        parser.add_argument("--no-web", action="store_true", help="load demo data and exit")
        parser.add_argument("--patients", type=int, default=40)

    def handle(self, *args, **o):
        call_command("migrate", interactive=False, verbosity=0)
        from dicom_listener.server import start_listener

        procs: list[subprocess.Popen] = []
        if settings.REDIS_URL and not settings.CELERY_TASK_ALWAYS_EAGER:
            procs.append(subprocess.Popen([sys.executable, "-m", "celery", "-A", "dosereg", "worker", "-B",
                                           "-Q", "dosereg", "-c", "2", "-l", "INFO"]))
            self.stdout.write("started a Celery worker (with beat)")
        else:
            self.stdout.write("no REDIS_URL: tasks run in-process")
        allowed = list(settings.DICOM_ALLOWED_CALLING_AES)
        if "*" not in allowed and DEMO_AE not in allowed:
            allowed.append(DEMO_AE)
        server, _ = start_listener(allowed=allowed)
        port = server.server_address[1]
        self.stdout.write(f"DICOM listener {settings.DICOM_AE_TITLE} on port {port}")
        from dosereg.web.services import demo_users_create

        demo_users_create()  # the RSOs first: the demo's alert e-mails go to them (printed without EMAIL_HOST)
        if not DoseObject.objects.exists():
            send_demo_data(port, n_patients=o["patients"], log=self.stdout.write)
        for role, (user, pw) in demo_users_create().items():  # again: the patient account needs a patient
            self.stdout.write(f"  log in as {role:10}  user {user!r} password {pw!r}")
        if o["no_web"]:
            deadline = time.time() + 120
            while DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED).exists() and time.time() < deadline:
                time.sleep(0.5)
            server.shutdown()
            for p in procs:
                p.terminate()
            return
        self.stdout.write(f"web: http://{o['web']}/")
        try:
            call_command("runserver", o["web"], use_reloader=False)
        finally:
            server.shutdown()
            for p in procs:
                p.terminate()

"""The README's first command on the embedded default: no DATABASE_URL, no REDIS_URL (SQLite, tasks in-process).
Every migration must apply there, and the demo must send its data through the real listener into the registry,
print a short summary and the logins (no raw e-mails, no broker warning) and write its alert e-mails into files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO
from tests.e2e.conftest import free_port


def test_demo_runs_on_the_embedded_default(tmp_path):
    # the embedded default (SQLite, no broker, no mail server), at the default log level
    unset = ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER", "EMAIL_HOST", "EMAIL_BACKEND", "EMAIL_FILE_PATH",
             "DEMO_DICOM_BIND_ADDRESS", "LOG_LEVEL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(DOSEREG_VAR_DIR=str(tmp_path / "var"), DICOM_PORT=str(free_port()))
    r = subprocess.run([sys.executable, "manage.py", "demo", "--no-web", "--patients", "4"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no REDIS_URL: tasks run in-process" in r.stdout
    assert (tmp_path / "var" / "dosereg.sqlite3").exists()
    sent = next(line for line in r.stdout.splitlines() if line.startswith("demo: sent"))
    n = int(sent.split()[2].split("/")[0])
    assert n > 0 and sent.split()[2] == f"{n}/{n}", sent
    assert "log in as rso" in r.stdout and "log in as patient" in r.stdout
    # the listener binds this machine only unless told otherwise (DEMO_DICOM_BIND_ADDRESS / --dicom-address)
    assert f"DICOM listener DOSEREG on 127.0.0.1:{env['DICOM_PORT']}" in r.stdout, r.stdout
    # a short summary, then the logins: nothing raw (no MIME e-mails, task logs or kombu's "No hostname" warning)
    lines = r.stdout.splitlines()
    assert len(lines) < 20, r.stdout
    assert f"demo: ingested {n}/{n} objects" in lines, r.stdout
    alerts = next(line for line in lines if line.startswith("demo: ") and " alerts raised for " in line)
    assert int(alerts.split()[1]) > 0, alerts
    mail_dir = tmp_path / "var" / "mail"
    emails = next(line for line in lines if " alert e-mails written to " in line)
    assert emails.endswith(f"written to {mail_dir}{os.sep}"), emails
    assert lines.index(emails) < next(i for i, line in enumerate(lines) if "log in as" in line)
    assert "Content-Type" not in r.stdout + r.stderr and "Subject:" not in r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr[-3000:]
    # the demo's alert e-mails went to its RSOs, into files (no EMAIL_HOST): as many messages as the summary says
    written = "".join(p.read_text() for p in mail_dir.glob("*.log"))
    assert "To: demo-rso@dosereg.example" in written
    assert written.count("\nTo: ") == int(emails.split()[1]) > 0
    stats = subprocess.run([sys.executable, "manage.py", "registry_stats", "--json"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0, stats.stderr[-2000:]
    counts = json.loads(stats.stdout)
    assert counts["objects_received"] == counts["objects_ingested"] == n
    assert counts["objects_quarantined"] == 0 and counts["studies"] > 0 and counts["irradiation_events"] > 0
    # the demo's phantom constancy check is recognised as "not a patient"
    q = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                        "from dosereg.registry.models import Study; "
                        "print(list(Study.objects.exclude(not_patient_reason='').values_list('not_patient_reason', flat=True)))"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr[-2000:]
    assert q.stdout.strip().splitlines()[-1] == "['QA']"

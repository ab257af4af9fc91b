"""The README's first command on the embedded default: no DATABASE_URL, no REDIS_URL (SQLite, tasks in-process).
Every migration must apply there, and the demo must send its data through the real listener into the registry."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO
from tests.e2e.conftest import free_port


def test_demo_runs_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_TASK_ALWAYS_EAGER")}
    env.update(DOSEREG_VAR_DIR=str(tmp_path / "var"), DICOM_PORT=str(free_port()), LOG_LEVEL="WARNING")
    r = subprocess.run([sys.executable, "manage.py", "demo", "--no-web", "--patients", "4"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no REDIS_URL: tasks run in-process" in r.stdout
    assert (tmp_path / "var" / "dosereg.sqlite3").exists()
    sent = next(line for line in r.stdout.splitlines() if line.startswith("demo: sent"))
    n = int(sent.split()[2].split("/")[0])
    assert n > 0 and sent.split()[2] == f"{n}/{n}", sent
    assert "log in as rso" in r.stdout and "log in as patient" in r.stdout
    # the demo's alert e-mails went to its RSOs (console backend without EMAIL_HOST)
    assert "demo-rso@dosereg.example" in r.stdout + r.stderr
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

"""The Celery worker imports the tasks' lazily imported modules once, before its pool forks
(dosereg.pipeline.tasks), and a worker asked to runs in the idle CPU class (dosereg.celery)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from celery.signals import worker_init
import django
from dosereg.celery import app
django.setup()
app.loader.import_default_modules()  # as the worker does before worker_init: its tasks modules
before = [m for m in ("pydicom", "dosereg.pipeline.flow", "pydicom.sr._snomed_dict") if m in sys.modules]
worker_init.send(sender=None)
after = [m for m in ("pydicom", "dosereg.pipeline.flow", "pydicom.sr._snomed_dict") if m in sys.modules]
print(len(before), len(after))
"""


def test_worker_init_imports_the_ingest_modules_before_the_pool_forks():
    env = dict(os.environ, DOSEREG_PRODUCTION="false", DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("REDIS_URL", None)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split()[-2:])
    assert after == 3 and before < 3, out.stdout


SCHED_PROBE = """
import os
from celery.signals import worker_init
import django
from dosereg.celery import app
django.setup()
worker_init.send(sender=None)
print(int(os.sched_getscheduler(0) == os.SCHED_IDLE))
"""


def test_a_worker_started_with_worker_sched_idle_runs_in_the_idle_cpu_class():
    """The skin worker (compose: WORKER_SCHED_IDLE=true) gets only CPU time nothing else wants; other workers don't."""
    for flag, expected in (("true", 1), ("false", 0)):
        env = dict(os.environ, DOSEREG_PRODUCTION="false", DJANGO_SETTINGS_MODULE="dosereg.settings",
                   WORKER_SCHED_IDLE=flag)
        env.pop("REDIS_URL", None)
        out = subprocess.run([sys.executable, "-c", SCHED_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert int(out.stdout.split()[-1]) == expected, (flag, out.stdout)

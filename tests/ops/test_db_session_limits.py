"""PostgreSQL session safety nets from settings: a session left idle inside a transaction is ended by the
server (its row locks would otherwise block every later ingest of that patient)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import os, time
os.environ["DJANGO_SETTINGS_MODULE"] = "dosereg.settings"
import django
django.setup()
from django.db import connection, transaction, OperationalError, InterfaceError
with connection.cursor() as c:
    c.execute("SHOW idle_in_transaction_session_timeout")
    print("timeout", c.fetchone()[0])
try:
    with transaction.atomic():
        with connection.cursor() as c:
            c.execute("SELECT 1")
            time.sleep(2.5)  # a client that hangs inside its transaction
            c.execute("SELECT 1")
    print("survived")
except (OperationalError, InterfaceError) as exc:
    print("ended by the server:", type(exc).__name__)
"""


def _run(timeout_ms: str) -> str:
    env = dict(os.environ, DATABASE_URL=_url(), DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=timeout_ms, LOG_LEVEL="WARNING")
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _url() -> str:
    sd = connection.settings_dict
    return f"postgres://{sd['USER'] or 'postgres'}@{sd['HOST'] or '127.0.0.1'}:{sd['PORT'] or 5432}/{sd['NAME']}"


@pytest.mark.django_db
def test_a_session_idle_in_a_transaction_is_ended_by_the_server():
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    out = _run("1000")
    assert "timeout 1s" in out
    assert "ended by the server" in out and "survived" not in out


@pytest.mark.django_db
def test_the_timeout_can_be_switched_off():
    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    out = _run("0")
    assert "timeout 0" in out
    assert "survived" in out

"""/health/, manage.py healthcheck, structured logs and Celery task failure records."""
from __future__ import annotations

import io
import json
import logging
import os
from datetime import timedelta

import pytest
from celery import shared_task
from django.core.management import call_command
from django.utils import timezone

from dicom_listener.server import start_listener
from dosereg.ops.logging import JsonFormatter
from dosereg.ops.models import TaskFailure
from dosereg.registry.models import DoseObject
from tests.conftest import require
from tests.e2e.conftest import free_port


def healthcheck(*args) -> tuple[int, dict]:
    out = io.StringIO()
    try:
        call_command("healthcheck", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, json.loads(out.getvalue())


@pytest.mark.django_db
def test_health_endpoint_ok_and_pending_age(client, settings, tmp_path):
    settings.SPOOL_DIR = tmp_path
    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.REDIS_URL = None
    DoseObject.objects.create(sop_instance_uid="1.2.3", path="/x", sha256="a")
    DoseObject.objects.filter(sop_instance_uid="1.2.3").update(received_at=timezone.now() - timedelta(minutes=5))
    r = client.get("/health/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert "broker" not in body["checks"]  # tasks in-process: no broker to check
    assert body["checks"]["spool"]["free_bytes"] > 0
    assert body["checks"]["pending_objects"]["count"] == 1
    assert 290 < body["checks"]["pending_objects"]["oldest_age_s"] < 400
    assert body["task_failures_24h"] == 0
    assert "no-cache" in r["Cache-Control"] or "max-age=0" in r["Cache-Control"]
    settings.HEALTH_MAX_PENDING_AGE_S = 60
    assert client.get("/health/").status_code == 503


@pytest.mark.django_db
def test_health_endpoint_503_on_spool_space_and_broker(client, settings, tmp_path):
    settings.SPOOL_DIR = tmp_path
    settings.SPOOL_MIN_FREE_BYTES = 1 << 60
    settings.REDIS_URL = None
    r = client.get("/health/")
    assert r.status_code == 503 and r.json()["checks"]["spool"]["ok"] is False
    settings.SPOOL_MIN_FREE_BYTES = 0
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    r = client.get("/health/")
    assert r.status_code == 503 and r.json()["checks"]["broker"]["ok"] is False


@pytest.mark.django_db
def test_health_endpoint_with_a_real_broker(client, settings, tmp_path):
    url = os.environ.get("DOSEREG_TEST_REDIS_URL", "")
    require(bool(url), "Redis (DOSEREG_TEST_REDIS_URL)")
    settings.SPOOL_DIR, settings.SPOOL_MIN_FREE_BYTES, settings.REDIS_URL = tmp_path, 0, url
    r = client.get("/health/")
    assert r.status_code == 200 and r.json()["checks"]["broker"]["ok"] is True


@pytest.mark.django_db(transaction=True)
def test_healthcheck_command_listener_and_worker(settings, tmp_path):
    settings.SPOOL_DIR, settings.SPOOL_MIN_FREE_BYTES, settings.REDIS_URL = tmp_path, 0, None
    port = free_port()
    code, report = healthcheck("--component", "listener", "--port", str(port), "--timeout", "2")
    assert code == 1 and report["checks"]["dicom"]["ok"] is False
    server, _ = start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path, allowed=["SOMEONE"])
    try:
        code, report = healthcheck("--component", "listener", "--port", str(port))
        assert code == 0, report  # rejected by the allow-list, but answering
        server2, _ = start_listener(port=free_port(), address="127.0.0.1", spool_dir=tmp_path, allowed=["HEALTHCHECK"])
        try:
            code, report = healthcheck("--component", "listener", "--port", str(server2.server_address[1]))
            assert code == 0 and report["checks"]["dicom"]["echo_status"] == 0
        finally:
            server2.shutdown()
    finally:
        server.shutdown()
    code, report = healthcheck("--component", "worker")
    assert code == 0 and set(report["checks"]) == {"database"}  # no broker configured: in-process tasks
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    code, report = healthcheck("--component", "beat", "--timeout", "1")
    assert code == 1 and report["checks"]["broker"]["ok"] is False


@pytest.mark.django_db(transaction=True)
def test_healthcheck_command_web(live_server, settings, tmp_path):
    settings.SPOOL_DIR, settings.SPOOL_MIN_FREE_BYTES, settings.REDIS_URL = tmp_path, 0, None
    code, report = healthcheck("--component", "web", "--url", f"{live_server.url}/health/")
    assert code == 0, report
    assert report["checks"]["web"]["report"]["checks"]["database"]["ok"] is True
    code, report = healthcheck("--component", "web", "--url", f"http://127.0.0.1:{free_port()}/health/", "--timeout", "1")
    assert code == 1


@shared_task(name="dosereg.tests.ops_always_fails")
def always_fails(x):
    raise ValueError(f"boom {x}")


@pytest.mark.django_db(transaction=True)
def test_task_failures_are_recorded_and_shown_to_admins(settings, admin_client):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    result = always_fails.delay(7)
    assert result.failed()
    tf = TaskFailure.objects.get()
    assert tf.task_name == "dosereg.tests.ops_always_fails"
    assert tf.exception_type == "ValueError" and "boom 7" in tf.message and "Traceback" in tf.traceback
    page = admin_client.get("/admin/ops/taskfailure/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "dosereg.tests.ops_always_fails: 1" in html and "boom 7" in html


def test_json_log_formatter():
    rec = logging.LogRecord("dicom_listener", logging.WARNING, __file__, 1, "stored %s", ("1.2.3",), None)
    rec.sop_instance_uid = "1.2.3"
    try:
        raise RuntimeError("x")
    except RuntimeError:
        import sys

        rec.exc_info = sys.exc_info()
    out = json.loads(JsonFormatter().format(rec))
    assert out["level"] == "WARNING" and out["logger"] == "dicom_listener" and out["message"] == "stored 1.2.3"
    assert out["sop_instance_uid"] == "1.2.3" and "RuntimeError" in out["exc_info"] and out["ts"].endswith("+00:00")


def test_log_format_json_selects_the_formatter():
    import subprocess
    import sys

    from tests.conftest import REPO

    env = dict(os.environ, LOG_FORMAT="json")
    code = ("import django, logging; django.setup(); logging.getLogger('dosereg.x').warning('hello %s', 'world')")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "DJANGO_SETTINGS_MODULE": "dosereg.settings"},
                         capture_output=True, text=True, timeout=60)
    line = json.loads(res.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello world" and line["logger"] == "dosereg.x"

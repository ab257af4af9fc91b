"""Docker/Kubernetes health check for one process: exit 0 healthy, 1 unhealthy (JSON on stdout).

    python manage.py healthcheck --component web        # GET /health/ on the local web server
    python manage.py healthcheck --component worker     # broker, database, and this host's worker answers ping
    python manage.py healthcheck --component listener   # database, spool space and reconciliation with the registry,
                                                        # DICOM association on DICOM_PORT
    python manage.py healthcheck --component beat       # broker and database
"""
from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand

from dosereg.ops.health import (
    check_broker,
    check_database,
    check_dicom,
    check_spool,
    check_spool_reconciliation,
    dicom_tls_client_context,
    health_report,
)


def _host_header() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


def check_web(url: str, timeout: float) -> dict:
    req = urllib.request.Request(url, headers={"Host": _host_header(), "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return {"ok": r.status == 200, "http_status": r.status, "report": json.loads(r.read() or b"{}")}
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            report = json.loads(body)
        except ValueError:
            report = body[:300].decode(errors="replace")
        return {"ok": False, "http_status": exc.code, "report": report}
    except (urllib.error.URLError, OSError) as exc:
        return {"ok": False, "error": f"{url}: {exc}"}


def check_worker(node: str | None, timeout: float) -> dict:
    from dosereg.celery import app

    node = node or f"celery@{socket.gethostname()}"
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    assert replies is not None  # None only with reply=False; the default (reply=True) returns the list
    ok = any(node in r for r in replies)
    return {"ok": ok, "node": node, **({} if ok else {"error": "the worker did not answer ping"})}


class Command(BaseCommand):
    help = "Health check for one dosereg process (exit status 0 = healthy), usable as a docker healthcheck."

    def add_arguments(self, parser):
        parser.add_argument("--component", choices=["web", "worker", "listener", "beat", "all"], default="all")
        parser.add_argument("--url", default=None, help="web: default http://127.0.0.1:$WEB_PORT/health/ (8000)")
        parser.add_argument("--node", default=None, help="worker: node name (default celery@<hostname>)")
        parser.add_argument("--port", type=int, default=None, help="listener: default DICOM_PORT")
        parser.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args, component, url=None, node=None, port=None, timeout=5.0, **options):
        checks: dict = {}
        if component == "web":
            checks["web"] = check_web(url or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '8000')}/health/", timeout)
        elif component == "all":
            _, report = health_report()
            checks = report["checks"]
            if checks["database"]["ok"]:
                checks["spool_reconciliation"] = check_spool_reconciliation()
        else:
            checks["database"] = check_database()
            broker = check_broker(timeout)
            if broker is not None:
                checks["broker"] = broker
            if component == "worker" and broker is not None:
                checks["worker"] = check_worker(node, timeout)
            if component == "listener":
                checks["spool"] = check_spool()
                if checks["database"]["ok"]:
                    checks["spool_reconciliation"] = check_spool_reconciliation()
                checks["dicom"] = check_dicom("127.0.0.1", port or settings.DICOM_PORT, settings.DICOM_AE_TITLE,
                                              "HEALTHCHECK", timeout, tls=dicom_tls_client_context())
        healthy = all(c.get("ok") for c in checks.values())
        self.stdout.write(json.dumps({"component": component, "healthy": healthy, "checks": checks}, default=str))
        if not healthy:
            sys.exit(1)

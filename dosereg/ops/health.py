"""Health checks shared by the /health/ endpoint and ``manage.py healthcheck``."""
from __future__ import annotations

import shutil
import socket
import ssl
import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return {"ok": True, "vendor": connection.vendor, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def check_broker(timeout: float = 2.0) -> dict | None:
    """Ping Redis when a broker is configured; None when tasks run in-process."""
    url = getattr(settings, "REDIS_URL", None)
    if not url:
        return None
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        started = time.perf_counter()
        client.ping()
        queued = broker_queue_length(client)
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1), "queued_tasks": queued}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def broker_queue_length(client, queue: str | None = None, *, max_priority: int | None = None) -> int:
    """Tasks waiting in a queue (default: the default queue, the ingest's), over all of its priority lists
    ("dosereg", "dosereg:1" … "dosereg:9"; ``max_priority``: only those served before or with that priority),
    under the broker's key prefix (BROKER_KEY_PREFIX) when one is set."""
    queue = queue or getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    opts = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    sep = opts.get("sep", "\x06\x16")
    prefix = opts.get("global_keyprefix", "")
    names = [prefix + queue] + [f"{prefix}{queue}{sep}{n}" for n in opts.get("priority_steps", [])
                                if n and (max_priority is None or n <= max_priority)]
    pipe = client.pipeline()
    for name in names:
        pipe.llen(name)
    return sum(pipe.execute())


def check_spool() -> dict:
    root = settings.SPOOL_DIR
    try:
        usage = shutil.disk_usage(root if root.exists() else root.parent)
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    minimum = settings.SPOOL_MIN_FREE_BYTES
    return {"ok": usage.free >= minimum, "free_bytes": usage.free, "min_free_bytes": minimum,
            "total_bytes": usage.total}


# A spooled object without a row this long after it was stored is lost unless someone acts: the listener
# records it at once, the sweeper (every SWEEP_INTERVAL_S) registers what the listener could not.
SPOOL_RECONCILE_GRACE_S = 600
# Files stored in the last 8 days (the sweeper looks back 7): older ones were checked by earlier probes.
SPOOL_RECONCILE_WINDOW_S = 8 * 86400


def check_spool_reconciliation(grace_s: float = SPOOL_RECONCILE_GRACE_S) -> dict:
    """Every recently stored object in the spool is in the registry (received, ingested or quarantined).

    Scans the spool: part of ``manage.py healthcheck`` (listener, all), not of the /health/ endpoint;
    ``manage.py reconcile_spool`` checks the whole spool."""
    from dicom_listener.reconcile import spool_reconcile
    from dicom_listener.spool import Spool

    try:
        report = spool_reconcile(spool=Spool(settings.SPOOL_DIR), grace_s=grace_s, max_listed=10,
                                 window_s=SPOOL_RECONCILE_WINDOW_S)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if not report["ok"]:
        report["error"] = (f"{report['unregistered']} spooled object(s) in neither registry nor quarantine; "
                           "run `manage.py reconcile_spool --register`")
    return report


def pending_objects() -> dict:
    from django.db.models import Count, Min

    from dosereg.registry.models import DoseObject

    try:
        agg = DoseObject.objects.filter(status=DoseObject.STATUS_RECEIVED).aggregate(n=Count("id"), oldest=Min("received_at"))
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    age = (timezone.now() - agg["oldest"]).total_seconds() if agg["oldest"] else None
    limit = getattr(settings, "HEALTH_MAX_PENDING_AGE_S", None)
    return {"ok": True if age is None or not limit else age <= limit, "count": agg["n"],
            "oldest_age_s": round(age, 1) if age is not None else None}


def task_failures_24h() -> int | None:
    from datetime import timedelta

    from .models import TaskFailure

    try:
        return TaskFailure.objects.filter(failed_at__gte=timezone.now() - timedelta(hours=24)).count()
    except Exception:
        return None


def health_report() -> tuple[bool, dict]:
    """(healthy, report): database, broker (when configured), spool free space, pending objects."""
    checks: dict = {"database": check_database()}
    broker = check_broker()
    if broker is not None:
        checks["broker"] = broker
    checks["spool"] = check_spool()
    if checks["database"]["ok"]:
        checks["pending_objects"] = pending_objects()
    healthy = all(c.get("ok") for c in checks.values())
    report: dict[str, Any] = {"status": "ok" if healthy else "fail", "checks": checks, "time": timezone.now().isoformat()}
    if checks["database"]["ok"]:
        report["task_failures_24h"] = task_failures_24h()
    return healthy, report


def dicom_tls_client_context() -> ssl.SSLContext | None:
    """For a health check of a TLS-only listener (DICOM_TLS_CERT set): TLS without verifying the listener's
    certificate (a liveness probe of our own port, no data crosses), presenting DICOM_TLS_HEALTH_CERT/KEY as the
    client certificate, or the listener's own (accepted when issued for client use by DICOM_TLS_CA)."""
    if not getattr(settings, "DICOM_TLS_CERT", ""):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if getattr(settings, "DICOM_TLS_HEALTH_CERT", ""):
        ctx.load_cert_chain(settings.DICOM_TLS_HEALTH_CERT, settings.DICOM_TLS_HEALTH_KEY or None)
    else:
        ctx.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    return ctx


def check_dicom(host: str, port: int, called_ae: str, calling_ae: str, timeout: float = 5.0,
                tls: ssl.SSLContext | None = None) -> dict:
    """The listener answers an association: C-ECHO if our calling AE is allowed; a rejection also proves it is alive.
    ``tls``: the listener speaks DICOM over TLS; a handshake it refuses (our certificate) also proves it is alive."""
    from pynetdicom import AE
    # pynetdicom creates its SOP class names at import time; its stub module does not declare them
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if tls is not None:
                try:
                    with tls.wrap_socket(raw, server_hostname=None) as conn:
                        # TLS 1.3: a server that refuses our certificate says so after the handshake
                        conn.settimeout(min(timeout, 1.0))
                        try:
                            conn.recv(1)
                        except (socket.timeout, TimeoutError):
                            pass  # it waits for our request: the handshake was accepted
                except ssl.SSLError as exc:
                    return {"ok": True, "tls": True,
                            "note": f"TLS listener answered and refused this check's certificate ({exc.reason or exc})"}
    except OSError as exc:
        return {"ok": False, "error": f"nothing listening on {host}:{port}: {exc}"}
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(Verification)
    # pynetdicom annotates the server hostname as str; None (no hostname check: our own port) is what ssl accepts
    assoc = ae.associate(host, port, ae_title=called_ae,
                         tls_args=(tls, None) if tls is not None else None)  # type: ignore[arg-type]
    if assoc.is_established:
        status = assoc.send_c_echo()
        assoc.release()
        code = getattr(status, "Status", None)
        return {"ok": code == 0, "echo_status": code}
    if assoc.is_rejected:
        return {"ok": True, "note": f"association from {calling_ae} rejected (allow-list); the listener is answering"}
    return {"ok": False, "error": "association aborted or timed out"}

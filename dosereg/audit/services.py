"""Writing the audit trail. Views call ``audit_record``; login signals are wired in apps.py."""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from dosereg.access.roles import user_roles

from .models import AuditEvent

log = logging.getLogger(__name__)


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or, behind trusted proxies (``TRUST_X_FORWARDED_FOR``), the address the outermost trusted
    proxy saw: each proxy appends the address it received the connection from to X-Forwarded-For, so with
    ``TRUSTED_PROXY_COUNT`` = N proxies the client is the N-th hop from the end. Earlier hops are whatever the
    client sent and are never used."""
    ip = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if request is not None and getattr(settings, "DOSEREG_TRUST_X_FORWARDED_FOR", False):
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        if hops:
            n = max(1, int(getattr(settings, "DOSEREG_TRUSTED_PROXY_COUNT", 1)))
            ip = hops[-min(n, len(hops))]
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def _storable(value):
    """``value`` with every NUL replaced (PostgreSQL text and jsonb cannot hold U+0000: a query parameter such as
    ``?site=%00`` would make the audit write, and with it the request's transaction, fail)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


def _roles(user) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return ""
    return ",".join(sorted(user_roles(user)))


def audit_record(
    *,
    request,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    patient_pks: Iterable[int | None] = (),
    detail: dict | None = None,
    user=None,
    username: str = "",
) -> int:
    """Append one row per patient touched (one row without a patient when none).

    Several patients in one read (a list page, an export) are written with one
    insert. Never raises: a broken audit write is logged loudly, and the
    caller has already decided the access was allowed. Returns the rows written.
    """
    user = user if user is not None else getattr(request, "user", None)
    authed = user is not None and getattr(user, "is_authenticated", False)
    base = dict(
        user=user if authed else None,
        username=(user.get_username() if authed else username)[:150],
        roles=_roles(user)[:128],
        action=action,
        object_type=object_type[:32],
        object_id=str(object_id)[:64],
        method=((request.method or "") if request is not None else "")[:8],
        path=(request.get_full_path() if request is not None else "")[:512],
        ip=client_ip(request),
        user_agent=_storable(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:256],
        detail=_storable(detail or {}),
    )
    base["path"], base["username"] = _storable(base["path"]), _storable(base["username"])
    pks = sorted({p for p in patient_pks if p is not None})
    try:
        if connection.vendor == "postgresql":
            return _insert_rows(base, pks)
        rows = [AuditEvent(patient_pk=p, **base) for p in pks] or [AuditEvent(patient_pk=None, **base)]
        return len(AuditEvent.objects.bulk_create(rows, batch_size=1000))
    except Exception:  # pragma: no cover - surfaced in logs, never hides the response
        log.exception("AUDIT WRITE FAILED: %s", base)
        return 0


def _insert_rows(base: dict, pks: list[int]) -> int:
    """PostgreSQL: the rows of one access (``base``, one per patient in ``pks``, or one without a patient) as one
    ``INSERT ... SELECT`` over the array of patient ids: the shared values are sent once, not compiled into a
    statement of a hundred rows (a list page of 100 patients: 100 model instances and a 1,300-parameter insert)."""
    by_attname = {f.attname: f for f in AuditEvent._meta.concrete_fields}
    user = base.get("user")
    values = {"at": timezone.now(), **{k: v for k, v in base.items() if k != "user"},
              "user_id": user.pk if user is not None else None}
    fields = [by_attname[name] for name in values]
    def q(name: str | None) -> str:
        return connection.ops.quote_name(str(name))

    cols = ", ".join(q(f.column) for f in fields)
    params = [f.get_db_prep_save(values[f.attname], connection) for f in fields]
    # each value cast to its column's type: in INSERT ... SELECT an untyped literal would be text
    holders = ", ".join(f"%s::{f.cast_db_type(connection)}" for f in fields)
    sql = (f"INSERT INTO {q(AuditEvent._meta.db_table)} ({cols}, {q(by_attname['patient_pk'].column)}) "
           f"SELECT {holders}, u.p FROM unnest(%s::bigint[]) AS u(p)")
    patients: list[int | None] = list(pks) or [None]
    with connection.cursor() as c:
        c.execute(sql, params + [patients])
        return c.rowcount

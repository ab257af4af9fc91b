"""Read side of the audit trail (admin search page)."""
from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from .models import AuditEvent


def audit_event_search(
    *, q: str = "", username: str = "", action: str = "", object_type: str = "", object_id: str = "",
    patient_pk: int | None = None, ip: str = "", since: datetime | None = None, until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if q:
        qs = qs.filter(Q(username__icontains=q) | Q(path__icontains=q) | Q(object_id=q))
    if username:
        qs = qs.filter(username=username)
    if action:
        qs = qs.filter(action=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if patient_pk is not None:
        qs = qs.filter(patient_pk=patient_pk)
    if ip:
        qs = qs.filter(ip=ip)
    if since:
        qs = qs.filter(at__gte=since)
    if until:
        qs = qs.filter(at__lt=until)
    return qs.order_by("-at", "-id")


def login_failures(*, username: str = "", ip: str | None = None, since: datetime) -> tuple[int, int]:
    """Failed logins since ``since`` for this user name from this address (the lockout key), and from this
    address for any user name (reported, never a lock: behind a proxy or NAT it is many people)."""
    base = AuditEvent.objects.filter(action=AuditEvent.ACTION_LOGIN_FAILED, at__gte=since)
    by_ip = base.filter(ip=ip) if ip else base.filter(ip__isnull=True)
    by_pair = by_ip.filter(username=username).count() if username else 0
    return by_pair, by_ip.count()

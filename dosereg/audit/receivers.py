"""Login, logout and failed logins go to the trail (they also drive the lockout)."""
from __future__ import annotations

from .models import AuditEvent
from .services import audit_record


def on_login(sender, request, user, **kwargs) -> None:
    audit_record(request=request, action=AuditEvent.ACTION_LOGIN, object_type="user", object_id=user.pk, user=user)


def on_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        audit_record(request=request, action=AuditEvent.ACTION_LOGOUT, object_type="user", object_id=user.pk, user=user)


def on_login_failed(sender, credentials, request=None, **kwargs) -> None:
    username = str((credentials or {}).get("username", ""))[:150]
    audit_record(request=request, action=AuditEvent.ACTION_LOGIN_FAILED, object_type="user", username=username,
                 user=None, detail={"username": username})

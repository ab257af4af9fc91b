"""Read-only views of cumulative exposure and alerts (for the report command, the web app and the API)."""
from __future__ import annotations

from datetime import date, datetime

from django.db.models import F, OuterRef, Q, Subquery

from dosereg.registry.merge_group import patient_group_ids, patient_root_id
from dosereg.registry.models import Patient, Study

from .constants import CANONICAL_UNIT, EFFECTIVE_DOSE_LABEL
from . import windows
from .models import Alert, PatientExposureWindow, StudyExposure
from .windows import StudyPoint, WindowTotals

WINDOW_UNITS = {"kap_gy_cm2": "Gy·cm²", "fluoro_time_s": "s", "dlp_mgy_cm": "mGy·cm", "ctdivol_max_mgy": "mGy",
                "kar_gy": "Gy", "effective_dose_msv": "mSv", "procedure_count": "procedures"}


def _iso(v):
    return v.isoformat() if isinstance(v, (datetime, date)) else v


def window_dict(w: PatientExposureWindow) -> dict:
    return {
        "window_days": w.window_days, "anchor_study_id": w.anchor_study_id, "anchor": "now" if w.anchor_study_id is None else "study",
        "start": _iso(w.start), "end": _iso(w.end), "procedure_count": w.procedure_count,
        "procedure_count_by_modality": w.procedure_count_by_modality, "kap_gy_cm2": w.kap_gy_cm2,
        "kar_gy_per_reference_point_and_plane": w.kar, "kar_max_gy": w.kar_max_gy, "fluoro_time_s": w.fluoro_time_s,
        "dlp_mgy_cm": w.dlp_mgy_cm, "ctdivol_max_mgy": w.ctdivol_max_mgy,
        "effective_dose_msv": w.effective_dose_msv, "effective_dose_studies": w.effective_dose_studies,
        "effective_dose_label": EFFECTIVE_DOSE_LABEL, "units": WINDOW_UNITS, "computed_at": _iso(w.computed_at),
    }


def alert_dict(a: Alert) -> dict:
    return {
        "id": a.pk, "patient_id": a.patient_id, "rule_key": a.rule_key, "rule_version": a.detail.get("rule_version"),
        "level": a.level, "subject": a.subject, "study_id": a.study_id, "study_uid": a.study_uid, "quantity": a.quantity,
        "value": a.value, "unit": a.unit or CANONICAL_UNIT.get(a.quantity, ""), "threshold": a.threshold,
        "window_days": a.window_days, "window_start": _iso(a.window_start), "window_end": _iso(a.window_end),
        "severity": a.severity, "status": a.status, "title": a.title, "source": a.detail.get("source"),
        "verification": a.detail.get("verification"), "notified": a.notified, "raised_at": _iso(a.raised_at),
        "acknowledged_by": a.acknowledged_by.get_username() if a.acknowledged_by is not None else None,
        "acknowledged_at": _iso(a.acknowledged_at), "acknowledge_note": a.acknowledge_note,
        "follow_up_due": _iso(a.follow_up_due), "closed_at": _iso(a.closed_at), "close_note": a.close_note,
        "withdrawn_at": _iso(a.withdrawn_at), "withdrawn_note": a.withdrawn_note,
        "reason_for_proceeding": a.detail.get("reason_for_proceeding"),
        "conceptus_dose_bands": a.detail.get("conceptus_dose_bands"), "conceptus_dose_estimate_mgy": a.conceptus_dose_estimate_mgy,
        "conceptus_dose_band": a.detail.get("conceptus_dose_band"),
    }


def patient_windows(*, patient: Patient) -> list[dict]:
    root = patient_root_id(patient.pk)
    return [window_dict(w) for w in PatientExposureWindow.objects.filter(patient_id=root).order_by("window_days", "end")]


def patient_alerts(*, patient: Patient) -> list[dict]:
    group = patient_group_ids(patient_root_id(patient.pk))
    qs = Alert.objects.filter(patient_id__in=group).select_related("acknowledged_by").order_by("-raised_at", "-id")
    return [alert_dict(a) for a in qs]


# ---------------------------------------------------------------------------
# the read API of exposure for the web app (model rows; the web shapes them for its pages and the API).
# ``scope``: anything with ``alert_q()`` / ``patient_q(field)`` returning a Q (dosereg.access.scope.SiteScope);
# None = every site. One query each unless said otherwise.
# ---------------------------------------------------------------------------
def alerts_visible(scope=None):
    """The Alert queryset a user may read."""
    qs = Alert.objects.all()
    return qs if scope is None else qs.filter(scope.alert_q())


def group_alerts(*, patient_ids: list[int], limit: int = 100, scope=None) -> list[Alert]:
    """The alerts of a merge group (``dosereg.registry.merge_group.patient_group_ids``), newest first."""
    return list(alerts_visible(scope).filter(patient_id__in=patient_ids).select_related("patient")
                .order_by("-raised_at")[:limit])


def study_alert_rows(*, study: Study, limit: int = 100) -> list[Alert]:
    """By FK, and by UID for alerts whose study row was replaced."""
    return list(Alert.objects.filter(Q(study=study) | Q(study_uid=study.study_instance_uid)).select_related("patient")
                .order_by("-raised_at")[:limit])


def alerts_page(*, status: str = "open", patient_id: int | None = None, limit: int = 100, before_id: int | None = None,
                scope=None) -> list[Alert]:
    """Newest first (by id, i.e. in the order they were raised); ``before_id`` continues after a page (keyset)."""
    qs = alerts_visible(scope).select_related("patient").order_by("-pk")
    if status and status != "all":
        qs = qs.filter(status__in=status.split(","))
    if patient_id is not None:
        qs = qs.filter(patient_id=patient_id)
    if before_id:
        qs = qs.filter(pk__lt=before_id)
    return list(qs[:limit])


def alert_visible(*, alert_id: int, scope=None) -> bool:
    return alerts_visible(scope).filter(pk=alert_id).exists()


def alert_with_patient(alert_id: int) -> Alert:
    return Alert.objects.select_related("patient").get(pk=alert_id)


def top_now_windows(*, limit: int = 10, window_days: int = 84, scope=None) -> tuple[int | None, list[PatientExposureWindow]]:
    """The highest cumulative windows ending now (by KAP, then DLP) of surviving records: (window length, rows).

    With ``scope``, of the patients at its sites (their totals over every site). When no window has that length
    (another configuration), the shortest length kept is used (one more query)."""
    qs = PatientExposureWindow.objects.filter(anchor_study__isnull=True, patient__merged_into__isnull=True)
    if scope is not None:
        qs = qs.filter(scope.patient_q("patient_id"))

    def top(days: int) -> list[PatientExposureWindow]:  # walks the index window_now_top_kap in order
        return list(qs.filter(window_days=days, procedure_count__gt=0).select_related("patient").order_by(
            F("kap_gy_cm2").desc(nulls_last=True), F("dlp_mgy_cm").desc(nulls_last=True))[:limit])

    rows = top(window_days)
    if rows:
        return window_days, rows
    days = list(qs.values_list("window_days", flat=True).distinct().order_by("window_days")[:1])
    if not days or days[0] == window_days:
        return None, []
    return days[0], top(days[0])


def now_windows(*, patient_id: int) -> list[PatientExposureWindow]:
    """The stored windows ending now of a surviving record (its whole merge group), shortest first; [] when the
    record was merged into another (its totals are the survivor's) or not computed yet."""
    return list(PatientExposureWindow.objects.filter(patient_id=patient_id, anchor_study__isnull=True).order_by("window_days"))


def now_window_length(preferred: int = 365) -> int:
    """The configured window length closest to ``preferred`` days (the patients list's cumulative columns)."""
    from .conf import windows_days

    lengths = windows_days() or (preferred,)
    return min(lengths, key=lambda d: (abs(d - preferred), -d))


def now_window_subqueries(*, window_days: int, outer_patient: str = "pk") -> dict[str, Subquery]:
    """Subqueries (for ``annotate``) of a surviving record's window ending now of ``window_days``: ``cum_kap_gy_cm2``,
    ``cum_kar_gy`` (the largest plane and reference point), ``cum_dlp_mgy_cm``, ``cum_effective_dose_msv``
    (population-average estimate), ``cum_procedures``; NULL before the first recompute."""
    w = PatientExposureWindow.objects.filter(patient_id=OuterRef(outer_patient), anchor_study__isnull=True,
                                             window_days=window_days)
    return {name: Subquery(w.values(col)[:1]) for name, col in (
        ("cum_kap_gy_cm2", "kap_gy_cm2"), ("cum_kar_gy", "kar_max_gy"), ("cum_dlp_mgy_cm", "dlp_mgy_cm"),
        ("cum_effective_dose_msv", "effective_dose_msv"), ("cum_procedures", "procedure_count"))}


def all_time_totals(*, patient_id: int, group: list[int] | None = None) -> WindowTotals | None:
    """Every exam of the patient's merge group (dated or not) summed as a window is (``windows.all_time_totals``):
    Ka,r and effective dose from the per-study facts the exposure recompute stored (a study not recomputed yet
    adds no Ka,r). None when the group has no study. 3 queries; 1 given ``group`` (the surviving record's
    ``patient_group_ids``)."""
    if group is None:
        group = patient_group_ids(patient_root_id(patient_id))
    rows = Study.objects.filter(patient_id__in=group).values_list(
        "pk", "study_datetime", "has_ionising_dose", "procedure_modality", "dap_total_gy_cm2", "fluoro_time_total_s",
        "dlp_total_mgy_cm", "ctdivol_max_mgy", "exposure__effective_dose_msv", "exposure__kar")
    points = [StudyPoint(study_id=pk, at=at, ionising=bool(ion), modality=mod or "", kap_gy_cm2=kap, fluoro_time_s=ft,
                         dlp_mgy_cm=dlp, ctdivol_max_mgy=ctdi, effective_dose_msv=e,
                         kar={(k[0], k[1]): k[2] for k in (kar or [])})
              for pk, at, ion, mod, kap, ft, dlp, ctdi, e, kar in rows]
    return windows.all_time_totals(points) if points else None


def study_effective_doses(*, study_ids: list[int]) -> dict[int, float]:
    """The population-average effective dose per study (``dosereg.exposure.effective_dose``), where complete."""
    if not study_ids:
        return {}
    out: dict[int, float] = {}
    for sid, e, detail in StudyExposure.objects.filter(study_id__in=study_ids, effective_dose_msv__isnull=False) \
            .values_list("study_id", "effective_dose_msv", "effective_dose_detail"):
        if e is not None and not (detail or {}).get("partial"):
            out[sid] = e
    return out


def patient_exposure_report(*, patient: Patient) -> dict:
    root_id = patient_root_id(patient.pk)
    group = patient_group_ids(root_id)
    studies = (Study.objects.filter(patient_id__in=group).select_related("device", "exposure").order_by("study_datetime", "id"))
    study_rows = []
    for s in studies:
        se = getattr(s, "exposure", None)
        study_rows.append({
            "id": s.pk, "study_instance_uid": s.study_instance_uid, "datetime": _iso(s.study_datetime),
            "undated": s.study_datetime is None, "patient_record": s.patient_id, "modality": s.procedure_modality,
            "description": s.study_description, "accession_number": s.accession_number,
            "device": str(s.device) if s.device_id else None, "pregnancy_status": s.effective_pregnancy_status,
            "kap_gy_cm2": s.dap_total_gy_cm2, "kar_max_plane_gy": s.dose_rp_max_plane_gy,
            "kar_gy_per_reference_point_and_plane": [{"reference_point": k[0], "plane": k[1], "gy": k[2]} for k in (se.kar if se else [])],
            "fluoro_time_s": s.fluoro_time_total_s, "dlp_mgy_cm": s.dlp_total_mgy_cm, "ctdivol_max_mgy": s.ctdivol_max_mgy,
            "effective_dose_msv": se.effective_dose_msv if se else None,
            "effective_dose": (se.effective_dose_detail if se else {"label": EFFECTIVE_DOSE_LABEL}),
        })
    alerts = patient_alerts(patient=patient)
    root = Patient.objects.get(pk=root_id)
    return {
        "patient": {"id": root.pk, "patient_id": root.patient_id, "issuer": root.issuer, "pseudonymised": root.pseudonymised,
                    "requested": patient.pk, "merged_records": [g for g in group if g != root_id]},
        "window_definition": "closed interval [anchor − window, anchor]; anchored at every study and at 'now'",
        "studies": study_rows,
        "windows": patient_windows(patient=root),
        "alerts": {"open": [a for a in alerts if a["status"] not in (Alert.STATUS_CLOSED, Alert.STATUS_WITHDRAWN)],
                   "closed": [a for a in alerts if a["status"] in (Alert.STATUS_CLOSED, Alert.STATUS_WITHDRAWN)]},
    }


def patients_to_recompute(*, study_ids, patient_ids, new_study_ids=()) -> list[int]:
    """The patients whose cumulative exposure a change of these studies affects: their patients now, and, for a
    study that existed before (a replacement report moved it to another patient), its former owner, found by the
    windows and alerts that still refer to it. A brand-new study has no windows or alerts yet."""
    targets = {p for p in patient_ids if p}
    if set(study_ids or ()) - set(new_study_ids or ()):
        targets |= set(PatientExposureWindow.objects.filter(anchor_study_id__in=study_ids)
                       .values_list("patient_id", flat=True).distinct())
        targets |= set(Alert.objects.filter(study_id__in=study_ids).values_list("patient_id", flat=True).distinct())
    return sorted(targets)


def psd_first_level_gy(default: float = 2.0) -> float:
    """The lowest level of the active per-procedure peak skin dose rules (Gy): the first notification level (NCRP 168,
    2 Gy by default). The patient portal explains skin reactions above it."""
    from dosereg import formatting as fmt

    from .constants import Q_PSD
    from .models import Rule

    levels: list[float] = []
    for value, unit in Rule.objects.filter(ruleset__active=True, enabled=True, quantity=Q_PSD, window_days__isnull=True,
                                           threshold_value__isnull=False).values_list("threshold_value", "threshold_unit"):
        converted: float | None = value
        try:
            if (unit or "Gy") in fmt.UNITS:
                converted = fmt.convert(value, unit or "Gy", "Gy")
        except ValueError:  # a unit of another dimension: read as Gy, as the rule evaluation does
            converted = value
        if converted is not None:
            levels.append(float(converted))
    return min(levels) if levels else default

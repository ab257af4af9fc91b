"""Read-only views of cumulative exposure and alerts (for the report command, the web app and the API)."""
from __future__ import annotations

from datetime import date, datetime

from django.db.models import Q
from django.utils import timezone

from dosereg.registry.models import Patient, Study

from .constants import CANONICAL_UNIT, EFFECTIVE_DOSE_LABEL
from .models import Alert, PatientExposureWindow
from .services import patient_group_ids, patient_root_id

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
        "acknowledged_by": a.acknowledged_by.get_username() if a.acknowledged_by_id else None,
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


def study_alerts(*, study: Study) -> list[dict]:
    return [alert_dict(a) for a in Alert.objects.filter(Q(study=study) | Q(study_uid=study.study_instance_uid)).order_by("-raised_at")]


def open_alerts(*, limit: int = 50) -> list[dict]:
    qs = (Alert.objects.filter(status__in=[Alert.STATUS_OPEN, Alert.STATUS_ACKNOWLEDGED, Alert.STATUS_FOLLOW_UP])
          .select_related("acknowledged_by").order_by("-raised_at")[:limit])
    return [alert_dict(a) for a in qs]


def follow_ups_due(*, now: datetime | None = None) -> list[dict]:
    today = timezone.localdate(now) if now else timezone.localdate()
    return [alert_dict(a) for a in Alert.objects.filter(status=Alert.STATUS_FOLLOW_UP, follow_up_due__lte=today).order_by("follow_up_due")]


def top_cumulative(*, window_days: int = 84, quantity: str = "kar_max_gy", limit: int = 10) -> list[dict]:
    """Patients with the highest current ("now") window for one quantity."""
    qs = (PatientExposureWindow.objects.filter(anchor_study__isnull=True, window_days=window_days, **{f"{quantity}__isnull": False})
          .select_related("patient").order_by(f"-{quantity}")[:limit])
    return [{"patient_id": w.patient_id, "patient": str(w.patient), **window_dict(w)} for w in qs]


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

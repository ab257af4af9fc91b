"""Per-study exposure facts: what a recompute and the alert rules read of each study.

Owns the study columns a recompute reads (``STUDY_FIELDS``), the derived per-study facts stored in
``StudyExposure`` (Ka,r per reference point and plane, body regions, CT protocol classes, modality Dose Check
records, effective dose), refreshed only when the registry's study row changed (``study_exposure_refresh``),
and loading them for a merge group (``study_rows``, ``load_studies``, ``StudyInfo``).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, TextField
from django.db.models.functions import Cast

from dosereg.registry.models import DoseObject, IrradiationEvent, PlaneTotal, Study

from . import effective_dose as ED, regions as RG
from .models import Alert, StudyExposure

STUDY_FIELDS = (
    "id", "study_instance_uid", "patient_id", "device_id", "device__institution", "device__display_name",
    "study_datetime", "created_at", "updated_at", "accession_number", "study_description", "procedure_modality",
    "pregnancy_status", "pregnancy_status_override", "patient_age_years", "dap_total_gy_cm2", "dose_rp_max_plane_gy",
    "fluoro_time_total_s", "dlp_total_mgy_cm", "ctdivol_max_mgy", "event_count", "has_ionising_dose",
    "exposure__source_updated_at",
    "skin_dose__psd_gy",  # the stored peak skin dose estimate (dosereg.skindose): in the digest, so a new PSD re-evaluates
)
# the derived per-study facts, read only when a recompute has work to do
EXPOSURE_FIELDS = ("study_id", "kar", "regions", "ct_classes", "dose_checks", "effective_dose_msv")

# ---------------------------------------------------------------------------
# per-study facts (refreshed only when the registry's study row changed)
# ---------------------------------------------------------------------------
# effective dose (factor table, E = k × DLP, E = c × KAP): dosereg.exposure.effective_dose


def _dose_check_record(ev: dict) -> dict | None:
    dc = ev.get("dose_check") or {}
    if not dc:
        return None

    def over(est, limit, configured):
        return configured is not False and est is not None and limit is not None and est >= limit

    alert = over(dc.get("accumulated_ctdivol_forward_estimate_mgy"), dc.get("ctdivol_alert_value_mgy"), dc.get("ctdivol_alert_value_configured")) or over(
        dc.get("accumulated_dlp_forward_estimate_mgy_cm"), dc.get("dlp_alert_value_mgy_cm"), dc.get("dlp_alert_value_configured"))
    notif = over(dc.get("ctdivol_forward_estimate_mgy"), dc.get("ctdivol_notification_value_mgy"), dc.get("ctdivol_notification_value_configured")) or over(
        dc.get("dlp_forward_estimate_mgy_cm"), dc.get("dlp_notification_value_mgy_cm"), dc.get("dlp_notification_value_configured"))
    reason = (dc.get("reason_for_proceeding") or "").strip()
    if not (alert or notif or reason):
        return None
    return {"event_uid": ev.get("irradiation_event_uid", ""), "protocol": ev.get("protocol", ""),
            "kind": "alert" if alert else ("notification" if notif else "dose_check"),
            "reason_for_proceeding": reason, "authorizing_person": dc.get("authorizing_person") or "",
            **{k: dc.get(k) for k in ("ctdivol_alert_value_mgy", "dlp_alert_value_mgy_cm", "ctdivol_notification_value_mgy",
                                       "dlp_notification_value_mgy_cm", "ctdivol_forward_estimate_mgy",
                                       "accumulated_ctdivol_forward_estimate_mgy", "dlp_forward_estimate_mgy_cm",
                                       "accumulated_dlp_forward_estimate_mgy_cm")}}


def study_exposure_refresh(rows: list[dict], factors: ED.FactorTable | None = None) -> dict[int, StudyExposure]:
    """Derive StudyExposure for the given study rows in a fixed number of queries (4; 3 given the active
    effective-dose ``factors``)."""
    ids = [r["id"] for r in rows]
    if not ids:
        return {}
    events: dict[int, list[Any]] = defaultdict(list)  # value dicts
    for ev in IrradiationEvent.objects.filter(study_id__in=ids).values(
        "study_id", "irradiation_event_uid", "target_region", "protocol", "ctdivol_mgy", "dlp_mgy_cm", "ctdiw_phantom", "dose_check"
    ):
        events[ev["study_id"]].append(ev)
    kar: dict[int, dict[tuple[str, str], float]] = defaultdict(dict)
    for p in PlaneTotal.objects.filter(
        study_id__in=ids, dose_object__status=DoseObject.STATUS_INGESTED, dose_object__superseded_by__isnull=True
    ).values("study_id", "plane", "reference_point_definition", "reference_point_code", "dose_rp_total_gy"):
        if p["dose_rp_total_gy"] is None:
            continue
        key = ((p["reference_point_code"] or p["reference_point_definition"] or "unspecified").strip(), p["plane"] or "single")
        kar[p["study_id"]][key] = kar[p["study_id"]].get(key, 0.0) + p["dose_rp_total_gy"]
    if factors is None:
        factors = ED.factor_table()
    out: dict[int, StudyExposure] = {}
    for r in rows:
        sid = r["id"]
        evs = events.get(sid, [])
        study_regions = RG.regions_of(r["study_description"])
        all_regions = set(study_regions)
        ct_classes: dict[tuple[str, str], float] = {}
        checks = []
        ct_doses: list[tuple[set[str], float]] = []
        for ev in evs:
            ev_regions = RG.regions_of(ev["target_region"], ev["protocol"]) or study_regions
            all_regions |= ev_regions
            if ev["ctdivol_mgy"] is not None:
                key = (RG.ct_protocol_class(ev_regions, ev["ctdiw_phantom"]), ev["ctdiw_phantom"] or "")
                ct_classes[key] = max(ct_classes.get(key, 0.0), ev["ctdivol_mgy"])
            if ev["dlp_mgy_cm"] is not None:
                ct_doses.append((ev_regions, ev["dlp_mgy_cm"]))
            rec = _dose_check_record(ev)
            if rec:
                checks.append(rec)
        e_msv, detail = ED.study_effective_dose(
            factors, ct_events=ct_doses, has_events=bool(evs), study_regions=study_regions, all_regions=all_regions,
            age_years=r["patient_age_years"], dlp_total_mgy_cm=r["dlp_total_mgy_cm"], kap_total_gy_cm2=r["dap_total_gy_cm2"])
        out[sid] = StudyExposure(
            study_id=sid, source_updated_at=r["updated_at"], regions=sorted(all_regions),
            kar=[[k[0], k[1], v] for k, v in sorted(kar.get(sid, {}).items())],
            ct_classes=[[c, ph, v] for (c, ph), v in sorted(ct_classes.items())],
            dose_checks=checks, effective_dose_msv=e_msv, effective_dose_detail=detail,
        )
    StudyExposure.objects.bulk_create(
        list(out.values()), update_conflicts=True, unique_fields=["study"],
        update_fields=["source_updated_at", "regions", "kar", "ct_classes", "dose_checks", "effective_dose_msv",
                       "effective_dose_detail", "computed_at"],
    )
    return out


@dataclass
class StudyInfo:
    row: dict
    kar: dict[tuple[str, str], float]
    regions: set[str]
    ct_classes: list
    dose_checks: list
    effective_dose_msv: float | None
    effective_dose_detail: dict

    @property
    def id(self) -> int:
        return self.row["id"]

    @property
    def at(self) -> datetime | None:
        return self.row["study_datetime"]


# not an input of the windows or alerts (left out of the recompute's digest): whether an alert names the study
HAS_ALERT = "has_alert"


def study_rows(group: list[int]) -> list[dict]:
    """The merge group's study rows (scalars only: no JSON to decode), in id order; each with ``HAS_ALERT``:
    whether an alert (of any patient: one raised before a correction moved the study) names it."""
    names = (*STUDY_FIELDS, HAS_ALERT)
    qs = (Study.objects.filter(patient_id__in=group).order_by("id")
          .annotate(**{HAS_ALERT: Exists(Alert.objects.filter(study_id=OuterRef("pk")))}))
    return [dict(zip(names, t)) for t in qs.values_list(*names)]


def is_stale(r: dict) -> bool:
    return r["exposure__source_updated_at"] is None or r["exposure__source_updated_at"] != r["updated_at"]


def load_studies(rows: list[dict], factors: ED.FactorTable | None = None) -> tuple[list[StudyInfo], int]:
    stale = [r for r in rows if is_stale(r)]
    fresh = study_exposure_refresh(stale, factors) if stale else {}
    stored = {}
    if len(fresh) < len(rows):
        # JSON read as text and decoded once per distinct value: most studies share "[]" and a handful of kar lists
        # (the decoded values are shared between studies and only ever read)
        as_text = [Cast(f, output_field=TextField()) for f in EXPOSURE_FIELDS[1:5]]
        memo: dict[str | None, object] = {None: None}

        def load(text):
            v = memo.get(text, memo)
            if v is memo:
                v = memo[text] = json.loads(text)
            return v

        for sid, kar_t, reg_t, ctc_t, dcs_t, e in StudyExposure.objects.filter(
                study_id__in=[r["id"] for r in rows if r["id"] not in fresh]).values_list("study_id", *as_text, "effective_dose_msv"):
            stored[sid] = (sid, load(kar_t), load(reg_t), load(ctc_t), load(dcs_t), e)
    infos = []
    for r in rows:
        se = fresh.get(r["id"])
        if se is not None:
            kar_l, regions, ctc, dcs, e, ed = se.kar, se.regions, se.ct_classes, se.dose_checks, se.effective_dose_msv, se.effective_dose_detail
        else:
            _, kar_l, regions, ctc, dcs, e = stored.get(r["id"]) or (None, [], [], [], [], None)
            ed = {}
        infos.append(StudyInfo(row=r, kar={(k[0], k[1]): k[2] for k in (kar_l or [])}, regions=set(regions or []),
                               ct_classes=ctc or [], dose_checks=dcs or [], effective_dose_msv=e, effective_dose_detail=ed or {}))
    return infos, len(stale)

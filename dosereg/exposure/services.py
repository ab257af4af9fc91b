"""Exposure services: cumulative windows, alert evaluation, alert lifecycle, routing.

Everything here is idempotent: recomputing a patient any number of times gives
the same window rows and the same alerts, and never sends an e-mail twice
(alerts are unique per patient/rule/level/subject; notifications per key and
recipient).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from dosereg import formatting as fmt
from dosereg.access.scope import SiteScope, normalise, scope_for
from dosereg.notifications.models import SEVERITY_RANK
from dosereg.notifications.services import notification_enqueue
from dosereg.rdsr import records as R
from dosereg.registry.merge_group import patient_group_ids, patient_root_id
from dosereg.registry.models import PREGNANT_STATUSES, DoseObject, IrradiationEvent, Patient, PlaneTotal, Study

from . import conf, effective_dose as ED, regions as RG
from .constants import (
    CANONICAL_UNIT, CONCEPTUS_BANDS_TEXT, L_DOSE_CHECK,
    L_PREGNANCY, L_SRDL, L_SUBSEQUENT, PHYSICIST_REQUEST, Q_COUNT, Q_CTDIVOL, Q_DLP, Q_DOSE_CHECK,
    PSD_SUM_LABEL, Q_FLUORO_TIME, Q_KAP, Q_KAR, Q_PREGNANCY, Q_PSD, RSO_GROUP, SRDL_WORDING, conceptus_band,
)
from .models import Alert, AlertEvent, AlertRoute, PatientExposureWindow, Rule, StudyExposure
from .windows import StudyPoint, WindowTotals, compute_windows

if TYPE_CHECKING:
    from .models import RuleSet

log = logging.getLogger(__name__)

PREGNANT = PREGNANT_STATUSES
PREGNANCY_VALUES = ("", R.PREGNANCY_NOT, R.PREGNANCY_POSSIBLE, R.PREGNANCY_DEFINITE, R.PREGNANCY_UNKNOWN)

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


class AlertTransitionError(ValueError):
    pass


# ---------------------------------------------------------------------------
# patient identity helpers
# ---------------------------------------------------------------------------
# patient_root_id and patient_group_ids (the merge group, transitive) live in dosereg.registry.merge_group


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


def study_exposure_refresh(rows: list[dict]) -> dict[int, StudyExposure]:
    """Derive StudyExposure for the given study rows in a fixed number of queries (4)."""
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


# ---------------------------------------------------------------------------
# patient recompute
# ---------------------------------------------------------------------------
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


@dataclass
class RecomputeResult:
    patient_id: int
    studies: int = 0
    refreshed_studies: int = 0
    windows_written: int = 0
    windows_deleted: int = 0
    alerts_created: list[int] = field(default_factory=list)
    alerts_withdrawn: list[int] = field(default_factory=list)
    notifications: int = 0
    skipped: bool = False  # inputs unchanged since the last recompute: nothing read, nothing written


def _study_rows(group: list[int]) -> list[dict]:
    """The merge group's study rows (scalars only: no JSON to decode), in id order."""
    names = STUDY_FIELDS
    return [dict(zip(names, t)) for t in Study.objects.filter(patient_id__in=group).order_by("id").values_list(*names)]


def _is_stale(r: dict) -> bool:
    return r["exposure__source_updated_at"] is None or r["exposure__source_updated_at"] != r["updated_at"]


def _load_studies(rows: list[dict]) -> tuple[list[StudyInfo], int]:
    stale = [r for r in rows if _is_stale(r)]
    fresh = study_exposure_refresh(stale) if stale else {}
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


def _point(s: StudyInfo) -> StudyPoint:
    r = s.row
    return StudyPoint(
        study_id=r["id"], at=r["study_datetime"], ionising=bool(r["has_ionising_dose"]), modality=r["procedure_modality"] or "",
        kap_gy_cm2=r["dap_total_gy_cm2"], fluoro_time_s=r["fluoro_time_total_s"], dlp_mgy_cm=r["dlp_total_mgy_cm"],
        ctdivol_max_mgy=r["ctdivol_max_mgy"], effective_dose_msv=s.effective_dose_msv,
        kar=dict(s.kar),
    )


def _window_row_values(wt: WindowTotals) -> dict:
    return {
        "start": wt.start, "end": wt.end, "procedure_count": wt.procedure_count,
        "procedure_count_by_modality": dict(sorted(wt.procedure_count_by_modality.items())),
        "kap_gy_cm2": wt.kap_gy_cm2, "fluoro_time_s": wt.fluoro_time_s, "dlp_mgy_cm": wt.dlp_mgy_cm,
        "ctdivol_max_mgy": wt.ctdivol_max_mgy,
        "kar": [{"reference_point": k[0], "plane": k[1], "gy": v} for k, v in sorted(wt.kar.items())],
        "kar_max_gy": wt.kar_max_gy, "effective_dose_msv": wt.effective_dose_msv,
        "effective_dose_studies": wt.effective_dose_studies,
    }


def _digest(wt: WindowTotals) -> str:
    """Hash of a window's values (window sums are already rounded, so equal totals give equal reprs)."""
    key = (wt.start.timestamp(), wt.end.timestamp(), wt.procedure_count, sorted(wt.procedure_count_by_modality.items()),
           wt.kap_gy_cm2, wt.fluoro_time_s, wt.dlp_mgy_cm, wt.ctdivol_max_mgy, sorted(wt.kar.items()), wt.effective_dose_msv,
           wt.effective_dose_studies)
    return hashlib.md5(repr(key).encode(), usedforsecurity=False).hexdigest()


def _all_window_days(rules: list[Rule]) -> tuple[int, ...]:
    return tuple(sorted(set(conf.windows_days()) | {r.window_days for r in rules if r.window_days}))


def active_rules() -> list[Rule]:
    return list(Rule.objects.filter(ruleset__active=True, enabled=True).select_related("ruleset").order_by("key"))


def _rules_signature(rules: list[Rule]) -> list[tuple]:
    names = [f.attname for f in Rule._meta.concrete_fields]
    return [(r.ruleset.version, *[getattr(r, n) for n in names]) for r in rules]


def _inputs_digest(group: list[int], rows: list[dict], rules: list[Rule], window_days: tuple[int, ...]) -> str:
    """Everything windows and alerts are computed from. Equal digest (and a "now" still in the valid range):
    recomputing would write the same rows and raise nothing."""
    # (not the derived facts' freshness stamp: a stale study always recomputes, and refreshing it changes the stamp)
    key = (sorted(group), [tuple(v for k, v in r.items() if k != "exposure__source_updated_at") for r in rows],
           _rules_signature(rules), window_days)
    return hashlib.md5(repr(key).encode(), usedforsecurity=False).hexdigest()


def _now_windows_valid_until(points: list[StudyPoint], window_days: tuple[int, ...], now: datetime) -> datetime | None:
    """The first instant after which a window "ending now" would hold other studies: a study in one ages out
    (at + W), or a future-dated study comes in. None: never (no dated study can change them)."""
    times = sorted(p.at for p in points if p.at is not None)
    if not times:
        return None
    limits = [t for t in times if t > now][:1]
    for w in window_days:
        span = timedelta(days=w)
        for t in times:
            if t >= now - span:
                if t <= now:
                    limits.append(t + span)
                break
    return min(limits) if limits else None


def patient_exposure_recompute(*, patient_id: int, now: datetime | None = None, notify: bool = True) -> RecomputeResult:
    """Recompute all windows and alerts of a patient's merge group, in a fixed number of queries.

    Skipped (``res.skipped``) when nothing it reads changed since the last recompute: same study rows of the
    merge group, same active rules, same window lengths, and no study entered or left a window ending now."""
    from .models import PatientExposureState

    now = now or timezone.now()
    root = patient_root_id(patient_id)
    res = RecomputeResult(patient_id=root)
    with transaction.atomic():
        # serialise per patient; the last recompute's state comes with the lock
        locked = (Patient.objects.select_for_update(of=("self",)).filter(pk=root)
                  .values_list("pk", "exposure_state__inputs_digest", "exposure_state__computed_now",
                               "exposure_state__valid_until").first())
        group = patient_group_ids(root)
        rules = active_rules()
        window_days = _all_window_days(rules)
        rows = _study_rows(group)
        res.studies = len(rows)
        digest = _inputs_digest(group, rows, rules, window_days)
        if locked and locked[1] == digest and locked[2] <= now and (locked[3] is None or now < locked[3]) \
                and not any(_is_stale(r) for r in rows):
            res.skipped = True
            return res
        infos, res.refreshed_studies = _load_studies(rows)
        points = [_point(s) for s in infos]
        windows = compute_windows(points, window_days, now)
        _write_windows(root, group, windows, res)
        _evaluate_alerts(root, group, infos, windows, rules, now, notify, res)
        if locked:  # (a patient deleted meanwhile has no state to keep)
            dates = [r["study_datetime"] for r in rows if r["study_datetime"] is not None]
            PatientExposureState.objects.bulk_create(
                [PatientExposureState(patient_id=root, inputs_digest=digest, computed_now=now,
                                      valid_until=_now_windows_valid_until(points, window_days, now),
                                      study_count=len(rows), last_study_at=max(dates, default=None))],
                update_conflicts=True, unique_fields=["patient"],
                update_fields=["inputs_digest", "computed_now", "valid_until", "computed_at", "study_count", "last_study_at"],
            )
    return res


def _write_windows(root: int, group: list[int], windows: list[WindowTotals], res: RecomputeResult) -> None:
    existing: dict[tuple[int | None, int], Any] = {
        (row[1], row[2]): row
        for row in PatientExposureWindow.objects.filter(patient_id=root).values_list("id", "anchor_study_id", "window_days", "digest")
    }
    to_delete: list[int] = []
    to_create: list[PatientExposureWindow] = []
    seen = set()
    for wt in windows:
        key = (wt.anchor_study_id, wt.window_days)
        seen.add(key)
        digest = wt.digest or _digest(wt)
        old = existing.get(key)
        if old is not None:
            if wt.anchor_study_id is not None and old[3] == digest:
                continue
            to_delete.append(old[0])
        to_create.append(PatientExposureWindow(patient_id=root, anchor_study_id=wt.anchor_study_id, window_days=wt.window_days,
                                               digest=digest, **_window_row_values(wt)))
    to_delete += [row[0] for key, row in existing.items() if key not in seen]
    q = Q(pk__in=to_delete)
    others = [g for g in group if g != root]
    if others:
        q |= Q(patient_id__in=others)  # merged-away patients have no windows of their own
    if to_delete or others:
        res.windows_deleted = PatientExposureWindow.objects.filter(q).delete()[0]
    if to_create:
        PatientExposureWindow.objects.bulk_create(to_create)
    res.windows_written = len(to_create)


# ---------------------------------------------------------------------------
# alert evaluation
# ---------------------------------------------------------------------------
@dataclass
class Expected:
    rule: Rule
    level: str
    subject: str
    study: StudyInfo | None
    value: float | None
    threshold: float | None
    severity: str
    detail: dict
    window: WindowTotals | None = None
    episode: tuple[datetime, datetime] | None = None
    rank: float = 0.0


def _canonical(rule: Rule) -> tuple[float | None, float | None]:
    """The rule's level and step in the quantity's canonical unit (converted by dosereg.formatting.convert)."""
    canonical = CANONICAL_UNIT.get(rule.quantity, "")
    entered = rule.threshold_unit or canonical
    try:
        converted = fmt.convert(1.0, entered, canonical) if entered in fmt.UNITS and canonical in fmt.UNITS else 1.0
        f = converted if converted is not None else 1.0
    except ValueError:  # a unit of another dimension: read as the canonical unit, as before
        log.warning("rule %s: unit %r is not a unit of %s; read as %s", rule.key, entered, rule.quantity, canonical)
        f = 1.0
    thr = rule.threshold_value * f if rule.threshold_value is not None else None
    step = rule.step_value * f if rule.step_value is not None else None
    return thr, step


def _modalities(rule: Rule) -> set[str]:
    mods: set[str] | None = getattr(rule, "_mods", None)
    if mods is None:
        mods = {m.strip().upper() for m in rule.scope_modalities.split(",") if m.strip()}
        setattr(rule, "_mods", mods)  # cached on the rule object for this recompute
    return mods


def _scoped(rule: Rule, infos_by_modality: dict[str, list[StudyInfo]], infos: list[StudyInfo]) -> list[StudyInfo]:
    mods = _modalities(rule)
    cands = [s for m in mods for s in infos_by_modality.get(m, [])] if mods else infos
    if not (rule.scope_device_id or rule.scope_site or rule.min_age_years is not None or rule.max_age_years is not None):
        return cands
    return [s for s in cands if _in_scope(rule, s)]


def _in_scope(rule: Rule, s: StudyInfo) -> bool:
    r = s.row
    mods = _modalities(rule)
    if mods and (r["procedure_modality"] or "").upper() not in mods:
        return False
    if rule.scope_device_id and r["device_id"] != rule.scope_device_id:
        return False
    if rule.scope_site and (r["device__institution"] or "").strip().lower() != rule.scope_site.strip().lower():
        return False
    age = r["patient_age_years"]
    if rule.min_age_years is not None and age is not None and age < rule.min_age_years:
        return False  # unknown age: adult rules apply, paediatric rules (max_age) do not
    if rule.max_age_years is not None and (age is None or age >= rule.max_age_years):
        return False
    return True


def _levels(rule: Rule, value: float | None) -> list[tuple[str, float, float]]:
    """(level, threshold crossed, rank) for a numeric value."""
    thr, step = _canonical(rule)
    if value is None or thr is None:
        return []
    if rule.level_kind == L_SUBSEQUENT:
        if not step or step <= 0:
            return []
        n = math.floor((value - thr) / step + 1e-9)
        return [(f"subsequent+{i}", thr + i * step, thr + i * step) for i in range(1, n + 1)]
    if value >= thr - 1e-12:
        return [(rule.level_kind, thr, thr)]
    return []


def _study_value(rule: Rule, s: StudyInfo) -> float | None:
    r = s.row
    if rule.quantity == Q_KAR:
        return max(s.kar.values()) if s.kar else r["dose_rp_max_plane_gy"]
    if rule.quantity == Q_KAP:
        return r["dap_total_gy_cm2"]
    if rule.quantity == Q_FLUORO_TIME:
        return r["fluoro_time_total_s"]
    if rule.quantity == Q_DLP:
        return r["dlp_total_mgy_cm"]
    if rule.quantity == Q_PSD:
        return r["skin_dose__psd_gy"]
    if rule.quantity == Q_CTDIVOL:
        if rule.protocol_class:
            vals = [v for c, ph, v in s.ct_classes if c == rule.protocol_class and (not rule.phantom or ph == rule.phantom)]
            return max(vals) if vals else None
        return r["ctdivol_max_mgy"]
    return None


def _window_value(rule: Rule, wt: WindowTotals) -> float | None:
    if rule.quantity == Q_KAR:
        return wt.kar_max_gy
    if rule.quantity == Q_KAP:
        return wt.kap_gy_cm2
    if rule.quantity == Q_FLUORO_TIME:
        return wt.fluoro_time_s
    if rule.quantity == Q_DLP:
        return wt.dlp_mgy_cm
    if rule.quantity == Q_COUNT:
        return float(_window_count(rule, wt))
    return None


def _window_psd(wt: WindowTotals, by_id: dict[int, StudyInfo], thr: float | None) -> tuple[float | None, dict]:
    """A window's peak skin dose: the conservative sum of its procedures' PSDs; when that reaches the level, the
    largest cell of their maps added cell by cell where every procedure has a map on the same phantom, orientation
    and skin cells (dosereg.skindose.summing), else the sum stands, labelled."""
    psds = [(sid, by_id[sid].row["skin_dose__psd_gy"]) for sid in wt.study_ids if sid in by_id]
    known = [(sid, v) for sid, v in psds if v is not None]
    if not known:
        return None, {}
    total = round(sum(v for _, v in known), 9)
    detail = {"psd_method": "psd_sum", "psd_label": PSD_SUM_LABEL, "psd_study_ids": [sid for sid, _ in known]}
    if thr is None or total < thr - 1e-12 or len(known) < 2:
        return total, detail
    from dosereg.skindose.selectors import studies_skin_dose_sum  # maps read only for a window at its level

    summed = studies_skin_dose_sum([sid for sid, _ in known])
    if summed.method == "summed_map" and summed.peak_gy is not None:
        return summed.peak_gy, detail | {"psd_method": "summed_map", "psd_label": summed.label,
                                         "psd_conservative_sum_gy": total}
    return total, detail | {"psd_sum_reasons": summed.reasons}


def _window_count(rule: Rule, wt: WindowTotals) -> int:
    mods = _modalities(rule)
    if mods:
        return sum(c for m, c in wt.procedure_count_by_modality.items() if m.upper() in mods)
    return wt.procedure_count


def _base_detail(rule: Rule) -> dict:
    d = {"rule_title": rule.title, "rule_version": rule.ruleset.version if rule.ruleset_id else None,
         "source": rule.source, "verification": rule.verification}
    if rule.level_kind == L_SRDL:
        d["srdl_wording"] = SRDL_WORDING
    return d


def _expected_alerts(infos: list[StudyInfo], windows: list[WindowTotals], rules: list[Rule]) -> list[Expected]:
    by_id = {s.id: s for s in infos}
    by_modality: dict[str, list[StudyInfo]] = defaultdict(list)
    for s in infos:
        by_modality[(s.row["procedure_modality"] or "").upper()].append(s)
    out: list[Expected] = []
    win_by_days: dict[int, list[WindowTotals]] = defaultdict(list)
    for wt in windows:
        if wt.anchor_study_id is not None:
            win_by_days[wt.window_days].append(wt)
    for rule in rules:
        if rule.window_days is None:
            rule_thr = _canonical(rule)[0]
            for s in _scoped(rule, by_modality, infos):
                uid = s.row["study_instance_uid"]
                if rule.quantity == Q_PREGNANCY:
                    status = s.row["pregnancy_status_override"] or s.row["pregnancy_status"]
                    if status in PREGNANT and s.row["has_ionising_dose"]:
                        out.append(_pregnancy_expected(rule, s, status))
                    continue
                if rule.quantity == Q_DOSE_CHECK:
                    if s.dose_checks:
                        reasons = sorted({c["reason_for_proceeding"] for c in s.dose_checks if c["reason_for_proceeding"]})
                        d = _base_detail(rule) | {"dose_checks": s.dose_checks, "reason_for_proceeding": "; ".join(reasons)}
                        kind = "alert" if any(c["kind"] == "alert" for c in s.dose_checks) else "notification"
                        out.append(Expected(rule, L_DOSE_CHECK, uid, s, None, None,
                                            "high" if kind == "alert" else rule.severity, d | {"dose_check_kind": kind}))
                    continue
                value = _study_value(rule, s)
                if value is None or rule_thr is None or value < rule_thr - 1e-12:
                    continue  # below the (first) threshold: no level
                for level, thr, rank in _levels(rule, value):
                    d = _base_detail(rule)
                    if rule.quantity == Q_KAR and s.kar:
                        d["kar_per_reference_point_and_plane"] = [{"reference_point": k[0], "plane": k[1], "gy": v} for k, v in sorted(s.kar.items())]
                    out.append(Expected(rule, level, uid, s, value, thr, rule.severity, d, rank=rank))
        else:
            crossing: dict[str, list[tuple[WindowTotals, float, float]]] = defaultdict(list)
            in_scope = {s.id for s in _scoped(rule, by_modality, infos)}
            window_thr, _step = _canonical(rule)
            if window_thr is None:
                continue
            thr = window_thr
            mods = _modalities(rule)
            min_procs = rule.min_procedures
            for wt in win_by_days.get(rule.window_days, []):
                if wt.anchor_study_id not in in_scope:
                    continue
                count = sum(c for m, c in wt.procedure_count_by_modality.items() if m.upper() in mods) if mods else wt.procedure_count
                if count < min_procs:
                    continue
                if rule.quantity == Q_PSD:
                    value, psd_detail = _window_psd(wt, by_id, thr)
                else:
                    value = float(count) if rule.quantity == Q_COUNT else _window_value(rule, wt)
                if value is None or value < thr - 1e-12:
                    continue  # below the (first) threshold: no level, the common case decided without _levels
                for level, lthr, rank in _levels(rule, value):
                    crossing[level].append((wt, value, lthr))
            span = timedelta(days=rule.window_days)
            for level, items in crossing.items():
                items.sort(key=lambda it: it[0].end)
                episodes: list[list] = []
                for it in items:
                    if episodes and it[0].end - episodes[-1][-1][0].end <= span:
                        episodes[-1].append(it)
                    else:
                        episodes.append([it])
                for ep in episodes:
                    best = max(ep, key=lambda it: it[1])
                    first = ep[0][0]
                    s = by_id[best[0].anchor_study_id]
                    d = _base_detail(rule) | {"window_study_ids": best[0].study_ids, "episode_first_anchor": first.end.isoformat(),
                                              "episode_last_anchor": ep[-1][0].end.isoformat()}
                    if rule.quantity == Q_KAR:
                        d["kar_per_reference_point_and_plane"] = [{"reference_point": k[0], "plane": k[1], "gy": v} for k, v in sorted(best[0].kar.items())]
                    if rule.quantity == Q_PSD:
                        d |= _window_psd(best[0], by_id, thr)[1]
                    out.append(Expected(rule, level, "episode:" + by_id[first.anchor_study_id].row["study_instance_uid"], s,
                                        best[1], best[2], rule.severity, d, window=best[0], episode=(first.end, ep[-1][0].end),
                                        rank=best[2]))
    return out


def _pregnancy_expected(rule: Rule, s: StudyInfo, status: str) -> Expected:
    r = s.row
    abdomen_pelvis = RG.involves_abdomen_pelvis(s.regions)
    reasons = []
    if abdomen_pelvis:
        reasons.append("region involves abdomen/pelvis")
    p = rule.params or {}
    for key, value in (("high_priority_kap_gy_cm2", r["dap_total_gy_cm2"]), ("high_priority_dlp_mgy_cm", r["dlp_total_mgy_cm"]),
                       ("high_priority_kar_gy", r["dose_rp_max_plane_gy"])):
        limit = p.get(key)
        if limit is not None and value is not None and value >= limit:
            reasons.append(f"{key.replace('high_priority_', '')} {fmt.number(value)} ≥ {fmt.number(limit)}")
    high = bool(reasons)
    detail = _base_detail(rule) | {
        "pregnancy_status": status, "status_source": "staff override" if r["pregnancy_status_override"] else "DICOM Pregnancy Status",
        "regions": sorted(s.regions), "priority": "high" if high else "normal", "priority_reasons": reasons,
        "conceptus_dose_bands": CONCEPTUS_BANDS_TEXT, "physicist_estimate_requested": PHYSICIST_REQUEST,
        "kap_gy_cm2": r["dap_total_gy_cm2"], "dlp_mgy_cm": r["dlp_total_mgy_cm"], "kar_max_gy": r["dose_rp_max_plane_gy"],
    }
    return Expected(rule, L_PREGNANCY, r["study_instance_uid"], s, None, None, "high" if high else rule.severity, detail)


def _title(e: Expected) -> str:
    rule = e.rule
    unit = CANONICAL_UNIT.get(rule.quantity, "")
    if rule.quantity == Q_PREGNANCY:
        return f"{rule.title}: ionising exposure, patient {e.detail['pregnancy_status'].replace('_', ' ')}" + (
            " — HIGH PRIORITY" if e.severity == "high" else "")
    if rule.quantity == Q_DOSE_CHECK:
        return f"{rule.title}: modality Dose Check {e.detail.get('dose_check_kind', '')}"
    win = f" in {rule.window_days} days" if rule.window_days else ""
    lvl = f" ({e.level})" if e.level.startswith("subsequent") else ""
    shown = rule.threshold_unit or unit  # the unit the rule's level was entered in

    def show(v: float | None) -> str:
        if v is None:
            return "?"
        return fmt.number(fmt.convert(v, unit, shown) if unit in fmt.UNITS and shown in fmt.UNITS else v)

    return f"{rule.title}{lvl}: {show(e.value)} {shown}{win} ≥ {show(e.threshold)} {shown}"


def _message(e: Expected, root: Patient | None) -> str:
    r = e.study.row if e.study else {}
    lines = [_title(e), ""]
    if root is not None:
        lines.append(f"Patient: registry #{root.pk}" + ("" if root.pseudonymised else f" (ID {root.patient_id})"))
    if r:
        lines.append(f"Study: {r.get('study_datetime')} {r.get('procedure_modality', '')} accession {r.get('accession_number') or '—'}"
                     f" on {r.get('device__display_name') or 'unknown device'}")
    if e.window is not None:
        lines.append(f"Window: {e.window.start:%Y-%m-%d} – {e.window.end:%Y-%m-%d} ({e.rule.window_days} days, "
                     f"{e.window.procedure_count} procedures)")
    for key in ("reason_for_proceeding", "srdl_wording", "conceptus_dose_bands", "physicist_estimate_requested"):
        if e.detail.get(key):
            lines += ["", f"{key.replace('_', ' ').capitalize()}:", str(e.detail[key])]
    if e.detail.get("priority_reasons"):
        lines.append("High priority because: " + "; ".join(e.detail["priority_reasons"]))
    if e.rule.follow_up_days:
        lines.append(f"Suggested follow-up: within {e.rule.follow_up_days} days (clinical skin check 2–4 weeks ◐; physicist PSD estimate).")
    lines += ["", f"Rule: {e.rule.key} (rule set v{e.detail.get('rule_version')}), level {e.level}",
              f"Threshold source: {e.rule.source} [{e.rule.verification}]",
              "All thresholds are configurable defaults, not limits on patient exposure."]
    return "\n".join(lines)


def _evaluate_alerts(root_id, group, infos, windows, rules, now, notify, res: RecomputeResult) -> None:
    expected = _expected_alerts(infos, windows, rules)
    study_ids = [s.id for s in infos]
    existing = list(Alert.objects.filter(Q(patient_id__in=group) | Q(study__patient_id__in=group)))
    by_key: dict[tuple[str, str, str], Alert] = {}
    for a in existing:
        k = (a.rule_key, a.level, a.subject)
        if k not in by_key or a.patient_id == root_id:
            by_key[k] = a
    cumulative_existing: dict[tuple[str, str], list[Alert]] = defaultdict(list)
    for a in existing:
        if a.subject.startswith("episode:") and a.patient_id in group:
            cumulative_existing[(a.rule_key, a.level)].append(a)
    root_cache: list[Patient] = []

    def root() -> Patient:  # read only when a new alert's message is written
        if not root_cache:
            root_cache.append(Patient.objects.get(pk=root_id))
        return root_cache[0]
    matched: set[int] = set()
    reraised: list[int] = []  # withdrawn alerts whose condition holds again
    created: list[tuple[Alert, Expected]] = []
    new_alerts: list[tuple[Alert, Expected]] = []
    for e in expected:
        alert = by_key.get((e.rule.key, e.level, e.subject))
        if alert is None and e.episode is not None:  # same episode, first anchor moved (late earlier study)
            lo, hi = e.episode[0] - timedelta(days=e.rule.window_days or 0), e.episode[1]
            for a in cumulative_existing.get((e.rule.key, e.level), []):
                if a.id not in matched and a.window_end and lo <= a.window_end <= hi:
                    alert = a
                    break
        if alert is not None:
            matched.add(alert.id)
            was_withdrawn = alert.status == Alert.STATUS_WITHDRAWN
            _refresh_existing(alert, e, root_id, now)
            if was_withdrawn and alert.status != Alert.STATUS_WITHDRAWN:
                reraised.append(alert.id)
            continue
        alert = Alert(
            patient_id=root_id, rule=e.rule, rule_key=e.rule.key, level=e.level, subject=e.subject[:160],
            study_id=e.study.id if e.study else None, study_uid=e.study.row["study_instance_uid"] if e.study else "",
            quantity=e.rule.quantity, value=e.value, unit=CANONICAL_UNIT.get(e.rule.quantity, ""), threshold=e.threshold,
            window_days=e.rule.window_days, window_start=e.window.start if e.window else None,
            window_end=e.window.end if e.window else None, severity=e.severity, title=_title(e)[:255],
            message=_message(e, root()), detail=_jsonable(e.detail),
        )
        if e.rule.follow_up_days:
            base = (e.study.at if e.study and e.study.at else now).date()
            alert.detail["follow_up_suggested_due"] = (base + timedelta(days=e.rule.follow_up_days)).isoformat()
        new_alerts.append((alert, e))
    for alert, e in _alerts_insert(new_alerts):
        created.append((alert, e))
        matched.add(alert.id)
        res.alerts_created.append(alert.id)
    if created:
        AlertEvent.objects.bulk_create([AlertEvent(alert=a, action="raised", note=a.title) for a, _ in created])
    active_keys = {r.key for r in rules}
    for a in existing:
        if a.id in matched or a.rule_key not in active_keys or a.status in (Alert.STATUS_WITHDRAWN,):
            continue
        if a.patient_id not in group and a.study_id not in study_ids:
            continue
        note = "condition no longer met after recompute (study replaced, deleted, re-assigned or pregnancy status changed)"
        if a.study_id is None and not a.subject.startswith("episode:"):
            note = "the study was deleted"
        elif a.study_id is not None and a.study_id not in study_ids and not a.subject.startswith("episode:"):
            note = "the study no longer belongs to this patient (merge/unmerge or patient correction)"
        if a.status == Alert.STATUS_CLOSED:
            if not a.detail.get("condition_cleared_at"):
                a.detail["condition_cleared_at"] = now.isoformat()
                a.save(update_fields=["detail"])
                AlertEvent.objects.create(alert=a, action="condition_cleared", note=note)
            continue
        a.status = Alert.STATUS_WITHDRAWN
        a.withdrawn_at = now
        a.withdrawn_note = note
        a.save(update_fields=["status", "withdrawn_at", "withdrawn_note"])
        AlertEvent.objects.create(alert=a, action="withdrawn", note=note)
        res.alerts_withdrawn.append(a.id)
    if created or res.alerts_withdrawn or reraised:
        # the RSO's cases (dosereg.cases): alerts join the case of their procedure / window, one e-mail per escalation
        from dosereg.cases.services import cases_absorb, cases_on_reraised, cases_on_withdrawn

        cases_absorb(created, now=now, notify=notify, res=res)
        cases_on_withdrawn(res.alerts_withdrawn, now=now)
        cases_on_reraised(reraised, now=now)


def _alerts_insert(new_alerts: list[tuple[Alert, Expected]]) -> list[tuple[Alert, Expected]]:
    """Insert new alerts in one statement; if another worker raised one of them concurrently (unique
    constraint), fall back to one savepoint per alert so theirs stands and nothing is sent twice."""
    if not new_alerts:
        return []
    try:
        with transaction.atomic():
            Alert.objects.bulk_create([a for a, _ in new_alerts])
        return new_alerts
    except IntegrityError:
        pass
    inserted = []
    for alert, e in new_alerts:
        alert.pk = None
        try:
            with transaction.atomic():
                alert.save(force_insert=True)
        except IntegrityError:  # raised concurrently by another worker: theirs stands, nothing re-sent
            continue
        inserted.append((alert, e))
    return inserted


def _refresh_existing(alert: Alert, e: Expected, root_id: int, now: datetime) -> None:
    changed = []
    if alert.patient_id != root_id:
        AlertEvent.objects.create(alert=alert, action="reassigned", note=f"patient {alert.patient_id} → {root_id}")
        alert.patient_id = root_id
        changed.append("patient")
    if alert.status == Alert.STATUS_WITHDRAWN:
        alert.status = Alert.STATUS_ACKNOWLEDGED if alert.acknowledged_at else Alert.STATUS_OPEN
        alert.withdrawn_at = None
        note = "condition met again after recompute; not re-sent (already notified)"
        alert.withdrawn_note = ""
        changed += ["status", "withdrawn_at", "withdrawn_note"]
        AlertEvent.objects.create(alert=alert, action="re-raised", note=note)
    new_study_id = e.study.id if e.study else None
    for f, v in (("value", e.value), ("threshold", e.threshold), ("study_id", new_study_id),
                 ("window_start", e.window.start if e.window else None), ("window_end", e.window.end if e.window else None)):
        old = getattr(alert, f)
        if isinstance(v, float) and isinstance(old, float) and math.isclose(v, old, rel_tol=1e-9):
            continue
        if old != v:
            setattr(alert, f, v)
            changed.append(f)
    if e.severity != alert.severity and SEVERITY_RANK.get(e.severity, 1) > SEVERITY_RANK.get(alert.severity, 1):
        alert.severity = e.severity
        changed.append("severity")
    if changed:
        alert.save(update_fields=list(dict.fromkeys(changed)))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


# ---------------------------------------------------------------------------
# routing and notification
# ---------------------------------------------------------------------------
class Router:
    """Resolves recipients from AlertRoute rows (loaded once per evaluation)."""

    def __init__(self) -> None:
        self._routes = None
        self._rso: list[tuple[str, SiteScope]] | None = None

    def _load(self):
        if self._routes is None:
            self._routes = list(AlertRoute.objects.filter(active=True).select_related("device").prefetch_related("users", "groups__user_set"))
        return self._routes

    def recipients(self, alert: Alert, e: Expected | None) -> list[str]:
        row = e.study.row if e and e.study else {}
        out: list[str] = []
        matched = False
        for route in self._load():
            if route.device_id and route.device_id != row.get("device_id"):
                continue
            if route.site and route.site.strip().lower() != (row.get("device__institution") or "").strip().lower():
                continue
            if route.rule_key and route.rule_key != alert.rule_key:
                continue
            if SEVERITY_RANK.get(alert.severity, 1) < SEVERITY_RANK.get(route.min_severity, 0):
                continue
            matched = True
            out += [u.email for u in route.users.all() if u.is_active and u.email]
            out += [u.email for g in route.groups.all() for u in g.user_set.all() if u.is_active and u.email]
            out += [x.strip() for x in route.emails.replace("\n", ",").replace(";", ",").split(",") if x.strip()]
        if not matched:
            out = self.default_recipients(row.get("device__institution"))
        return sorted(set(out))

    def default_recipients(self, site: str | None = None) -> list[str]:
        """Without a matching route: the active RSOs whose site scope (``dosereg.access.scope``, the sites
        their dashboard shows) covers the site of the study that raised the alert."""
        if self._rso is None:
            User = get_user_model()
            users = User.objects.filter(groups__name=RSO_GROUP, is_active=True).exclude(email="").distinct()
            self._rso = [(u.email, scope_for(u)) for u in users]
        key = normalise(site)
        return sorted({email for email, scope in self._rso if scope.sites is None or key in scope.sites})


# ---------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------
def _transition(alert_id: int, allowed: tuple[str, ...], new_status: str, user, action: str, note: str, **fields) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        if alert.status not in allowed:
            raise AlertTransitionError(f"cannot {action} an alert that is {alert.status}")
        alert.status = new_status
        for k, v in fields.items():
            setattr(alert, k, v)
        alert.save()
        AlertEvent.objects.create(alert=alert, actor=user, action=action, note=note)
    return alert


def alert_acknowledge(*, alert_id: int, user, note: str = "") -> Alert:
    return _transition(alert_id, (Alert.STATUS_OPEN,), Alert.STATUS_ACKNOWLEDGED, user, "acknowledged", note,
                       acknowledged_by=user, acknowledged_at=timezone.now(), acknowledge_note=note)


def alert_schedule_follow_up(*, alert_id: int, user, due: date | None = None, note: str = "") -> Alert:
    alert = Alert.objects.get(pk=alert_id)
    if due is None:
        suggested = alert.detail.get("follow_up_suggested_due")
        due = date.fromisoformat(suggested) if suggested else timezone.localdate() + timedelta(days=21)
    extra = {}
    if alert.status == Alert.STATUS_OPEN:  # scheduling a follow-up acknowledges the alert
        extra = {"acknowledged_by": user, "acknowledged_at": timezone.now(), "acknowledge_note": note}
    return _transition(alert_id, (Alert.STATUS_OPEN, Alert.STATUS_ACKNOWLEDGED, Alert.STATUS_FOLLOW_UP), Alert.STATUS_FOLLOW_UP,
                       user, "follow_up_scheduled", f"due {due}. {note}".strip(), follow_up_due=due, follow_up_note=note,
                       follow_up_reminded_at=None, **extra)


def alert_close(*, alert_id: int, user, note: str = "") -> Alert:
    return _transition(alert_id, (Alert.STATUS_ACKNOWLEDGED, Alert.STATUS_FOLLOW_UP, Alert.STATUS_WITHDRAWN), Alert.STATUS_CLOSED,
                       user, "closed", note, closed_by=user, closed_at=timezone.now(), close_note=note)


def alert_record_conceptus_estimate(*, alert_id: int, user, estimate_mgy: float, note: str = "") -> Alert:
    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert_id)
        if alert.quantity != Q_PREGNANCY:
            raise AlertTransitionError("a conceptus-dose estimate belongs to a pregnancy alert")
        alert.conceptus_dose_estimate_mgy = estimate_mgy
        alert.detail["conceptus_dose_band"] = conceptus_band(estimate_mgy)
        alert.save(update_fields=["conceptus_dose_estimate_mgy", "detail"])
        AlertEvent.objects.create(alert=alert, actor=user, action="conceptus_estimate",
                                  note=f"{estimate_mgy:g} mGy — {alert.detail['conceptus_dose_band']}. {note}".strip())
    return alert


def follow_up_reminders_send(*, today: date | None = None) -> int:
    """Remind the alert's recipients of follow-ups that are due (once per due date)."""
    today = today or timezone.localdate()
    due = list(Alert.objects.filter(status=Alert.STATUS_FOLLOW_UP, follow_up_due__lte=today, follow_up_reminded_at__isnull=True)
               .select_related("study"))
    router = Router()
    n = 0
    for alert in due:
        row = {"device_id": alert.study.device_id if alert.study else None,
               "device__institution": alert.study.device.institution if alert.study and alert.study.device else ""}
        fake = Expected(alert.rule, alert.level, alert.subject, StudyInfo(row, {}, set(), [], [], None, {}), None, None, alert.severity, {})
        recipients = router.recipients(alert, fake)
        with transaction.atomic():
            notification_enqueue(
                dedupe_key=f"exposure-alert:{alert.pk}:follow-up-due:{alert.follow_up_due}", recipients=recipients,
                subject=f"[dosereg] follow-up due {alert.follow_up_due}: {alert.title}"[:255],
                body=f"Follow-up was scheduled for {alert.follow_up_due}.\n{alert.follow_up_note}\n\n{alert.message}",
                severity="normal",
            )
            Alert.objects.filter(pk=alert.pk).update(follow_up_reminded_at=timezone.now())
            AlertEvent.objects.create(alert=alert, action="follow_up_reminder", note=", ".join(recipients))
        n += 1
    return n


# ---------------------------------------------------------------------------
# rule set versions
# ---------------------------------------------------------------------------
def ruleset_new_version(*, from_ruleset_id: int | None = None, user=None, note: str = "") -> "RuleSet":
    """Copy a rule set (default: the active one) into a new, inactive version to edit."""
    from .models import RuleSet

    with transaction.atomic():
        src = RuleSet.objects.get(pk=from_ruleset_id) if from_ruleset_id else RuleSet.objects.get(active=True)
        version = (RuleSet.objects.filter(name=src.name).order_by("-version").values_list("version", flat=True).first() or 0) + 1
        new = RuleSet.objects.create(name=src.name, version=version, active=False, created_by=user, note=note)
        rules = list(src.rules.all())
        for r in rules:
            r.pk = None
            r.ruleset = new
        Rule.objects.bulk_create(rules)
    return new


def ruleset_activate(*, ruleset_id: int, user=None) -> "RuleSet":
    """Make one version active. Existing alerts keep the version that raised them; new evaluations use this one."""
    from .models import RuleSet

    with transaction.atomic():
        RuleSet.objects.filter(active=True).exclude(pk=ruleset_id).update(active=False)
        rs = RuleSet.objects.select_for_update().get(pk=ruleset_id)
        rs.active, rs.activated_at = True, timezone.now()
        rs.save(update_fields=["active", "activated_at"])
        log.info("rule set %s activated by %s", rs, user)
    return rs


# ---------------------------------------------------------------------------
# pregnancy status set by staff
# ---------------------------------------------------------------------------
def study_set_pregnancy_status(*, study_id: int, status: str, user=None, note: str = "") -> Study:
    """Staff-recorded pregnancy status (before or after the exam); wins over the DICOM value. Re-evaluates alerts."""
    if status not in PREGNANCY_VALUES:
        raise ValueError(f"pregnancy status must be one of {PREGNANCY_VALUES}")
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        old = study.effective_pregnancy_status
        study.pregnancy_status_override = status
        study.save(update_fields=["pregnancy_status_override", "updated_at"])
        log.info("study %s pregnancy status %r → %r by %s: %s", study.pk, old, study.effective_pregnancy_status, user, note)
        if study.patient_id:
            pid = study.patient_id
            transaction.on_commit(lambda: enqueue_recompute(pid))
    return study


def enqueue_recompute(patient_id: int) -> bool:
    from .tasks import recompute_patient_exposure_task

    try:
        recompute_patient_exposure_task.apply_async(args=(patient_id,))
        return True
    except Exception as exc:  # broker down: the next change or the periodic refresh catches up
        log.warning("could not enqueue exposure recompute for patient %s: %s", patient_id, exc)
        return False


def alerts_notify_patient_corrected(*, study_id: int, former_patient_id: int | None, new_patient_id: int | None,
                                    dose_object_id: int) -> int:
    """A corrected report moved ``study_id`` from one patient to another: every alert of that study is moved (or
    withdrawn) by the recompute that follows, and the e-mails already sent named the former patient. Send a
    "patient corrected" notice for each alert, to those who received its e-mail and the RSOs of the study's
    site, and note it on the alert. Returns how many alerts were noticed."""
    from dosereg.notifications.models import Notification

    alerts = list(Alert.objects.filter(study_id=study_id).order_by("pk"))
    if not alerts:
        return 0
    names = dict(Patient.objects.filter(pk__in=[p for p in (former_patient_id, new_patient_id) if p])
                 .values_list("pk", "patient_id"))
    former = names.get(former_patient_id, "no patient") if former_patient_id else "no patient"
    new = names.get(new_patient_id, "no patient") if new_patient_id else "no patient"
    study: dict[str, Any] = dict(Study.objects.filter(pk=study_id).values("study_instance_uid", "device__institution").first() or {})
    router = Router()
    site_rso = router.default_recipients(study.get("device__institution"))
    sent_to: dict[str, set[str]] = defaultdict(set)
    for key, recipient in Notification.objects.filter(dedupe_key__in=[f"exposure-alert:{a.pk}" for a in alerts]).values_list(
            "dedupe_key", "recipient"):
        sent_to[key].add(recipient)
    # the e-mails of the alerts' RSO cases (one per case level) named the former patient too
    from dosereg.cases.models import CaseAlert

    from dosereg.cases.models import Case
    from dosereg.cases.services import case_url
    from dosereg.notifications.services import notification_enqueue_many

    case_of = dict(CaseAlert.objects.filter(alert__in=alerts).values_list("alert_id", "case_id"))
    cases = Case.objects.in_bulk(set(case_of.values()))
    links = {alert_id: case_url(cases[case_id]) for alert_id, case_id in case_of.items() if case_id in cases}
    case_recipients = {case_id: set(Notification.objects.filter(dedupe_key__startswith=f"case:{case_id}:")
                                    .values_list("recipient", flat=True)) for case_id in set(case_of.values())}
    for alert_id, case_id in case_of.items():
        sent_to[f"exposure-alert:{alert_id}"] |= case_recipients[case_id]
    requests, events = [], []
    for a in alerts:
        note = (f"patient corrected: a corrected report (dose object {dose_object_id}) moved study "
                f"{study.get('study_instance_uid', a.study_uid)} from patient {former} to patient {new}")
        recipients = sorted(sent_to.get(f"exposure-alert:{a.pk}", set()) | set(site_rso))
        events.append(AlertEvent(alert=a, action="patient_corrected", note=note + (f"; notice to {', '.join(recipients)}" if recipients else "")))
        if not recipients:
            continue
        requests.append(dict(
            dedupe_key=f"exposure-alert:{a.pk}:patient-corrected:{dose_object_id}:{new_patient_id or 0}",
            recipients=recipients, subject=f"[dosereg] patient corrected: {a.title}"[:255],
            body=(f"Patient corrected. Alert #{a.pk} ({a.title}) concerns study {study.get('study_instance_uid', a.study_uid)}, "
                  f"which a corrected dose report has moved from patient {former} to patient {new}.\n"
                  f"Earlier e-mails about this alert named patient {former}: that was wrong. The alert now follows "
                  f"the corrected patient (it may be withdrawn or raised again for them).\n\n"
                  + (f"Case: {links[a.pk]}" if a.pk in links else "")),
            severity="high" if a.severity == "high" else "normal",
        ))
    with transaction.atomic():
        AlertEvent.objects.bulk_create(events)
        if requests:
            notification_enqueue_many(requests)
    return len(alerts)


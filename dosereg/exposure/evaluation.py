"""Rule evaluation and alert raising: which alerts a patient's studies and windows call for, and the Alert rows.

Owns reading a rule (level and step in the canonical unit, scope, levels reached), the expected alerts of one
recompute (per study, per window episode, pregnancy, modality Dose Check), their title and e-mail text, and
reconciling them with the stored alerts (raise, refresh, re-raise, withdraw), handing raised, withdrawn and
re-raised alerts to the RSO's cases. Called by ``recompute.patient_exposure_recompute``.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Q

from dosereg import formatting as fmt
from dosereg.notifications.models import SEVERITY_RANK
from dosereg.registry.models import PREGNANT_STATUSES, Patient

from . import nm_paediatric as NMP
from . import regions as RG
from .constants import (
    CANONICAL_UNIT, CONCEPTUS_BANDS_TEXT, L_DOSE_CHECK, L_PREGNANCY, L_SRDL, L_SUBSEQUENT, PHYSICIST_REQUEST, Q_COUNT,
    Q_CTDIVOL, Q_DLP, Q_DOSE_CHECK, PSD_SUM_LABEL, Q_FLUORO_TIME, Q_KAP, Q_KAR, Q_NM_PAED, Q_PREGNANCY, Q_PSD, SRDL_WORDING,
)
from .models import Alert, AlertEvent, Rule
from .study_facts import StudyInfo
from .windows import WindowTotals

if TYPE_CHECKING:
    from .recompute import RecomputeResult

log = logging.getLogger(__name__)

PREGNANT = PREGNANT_STATUSES

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
        if rule.quantity == Q_NM_PAED:  # a child's activity against the EANM paediatric dosage card (nm_paediatric)
            out.extend(NMP.expected_alerts(rule, _scoped(rule, by_modality, infos), Expected, _base_detail))
            continue
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

    def show(v: float | None) -> str:  # the quantity's one unit (dosereg.formatting), whatever the level was entered in
        return fmt.quantity_text(rule.quantity, v, other_unit=unit, missing="?")

    return f"{rule.title}{lvl}: {show(e.value)}{win} ≥ {show(e.threshold)}"


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


def evaluate_alerts(root_id, group, infos, windows, rules, now, notify, res: RecomputeResult,
                    read_existing: bool = True) -> None:
    """Raise, refresh and withdraw the group's alerts. ``read_existing=False``: the caller knows that no alert
    names the group's records or studies (nothing to read)."""
    expected = _expected_alerts(infos, windows, rules)
    study_ids = [s.id for s in infos]
    # the group's alerts and those of its studies (raised under another record before a correction moved the
    # study): by the studies' ids, read with the patient locked, not through a join to the study table (an OR
    # across a join is planned and run as a scan of every alert; two index lookups here)
    existing = list(Alert.objects.filter(Q(patient_id__in=group) | Q(study_id__in=study_ids))) if read_existing else []
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
        # (in this transaction; the one import up into cases, named in .importlinter)
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

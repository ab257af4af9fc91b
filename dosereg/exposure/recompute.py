"""Patient recompute: a merge group's cumulative windows, then its alerts, in a fixed number of queries.

Owns ``patient_exposure_recompute`` (skipped when nothing it reads changed: ``PatientExposureState``), the stored
``PatientExposureWindow`` rows (written by digest, so an unchanged window is not rewritten), the active rules it
evaluates (``active_rules``), queueing a recompute (``enqueue_recompute``, the Celery task in ``tasks.py``) and
the staff-recorded pregnancy status that triggers one (``study_set_pregnancy_status``). The arithmetic of the
windows is ``windows.py``; the rules and alerts are ``evaluation.py``.

Everything here is idempotent: recomputing a patient any number of times gives the same window rows and the same
alerts, and never sends an e-mail twice (alerts are unique per patient/rule/level/subject; notifications per key
and recipient).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import CharField, Exists, OuterRef, Q, Value
from django.db.models.expressions import RawSQL
from django.utils import timezone

from dosereg.rdsr import records as R
from dosereg.registry.merge_group import patient_group_ids, patient_root_id
from dosereg.registry.models import Patient, Study

from . import conf
from . import effective_dose as ED
from .evaluation import evaluate_alerts
from .models import Alert, EffectiveDoseFactor, PatientExposureWindow, Rule, RuleSet
from .study_facts import HAS_ALERT, StudyInfo, is_stale, load_studies, study_rows
from .windows import StudyPoint, WindowTotals, compute_windows

log = logging.getLogger(__name__)

PREGNANCY_VALUES = ("", R.PREGNANCY_NOT, R.PREGNANCY_POSSIBLE, R.PREGNANCY_DEFINITE, R.PREGNANCY_UNKNOWN)
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


# The active rules and effective-dose factors are read by every recompute and change rarely (an admin edit, a new
# rule set). A worker keeps them between recomputes while their stamp is unchanged: the md5 of the rows' own text,
# which the patient-lock statement reads beside the lock (PostgreSQL; no statement added). Any edit of a rule, of
# the active rule set or of an active factor (or a factor (de)activated) changes the stamp, so the next recompute
# reads them again; a recompute never evaluates rules older than its own lock statement. Other databases (the
# embedded SQLite) read them every time.
def _config_stamp_sql() -> str:
    rule, ruleset = Rule._meta.db_table, RuleSet._meta.db_table
    factor = EffectiveDoseFactor._meta.db_table
    return (f"(SELECT md5(COALESCE(string_agg(t, '|' ORDER BY t), '')) FROM ("
            f"SELECT s::text || r::text AS t FROM {rule} r JOIN {ruleset} s ON s.id = r.ruleset_id WHERE s.active "
            f"UNION ALL SELECT f::text FROM {factor} f WHERE f.active) x)")


@dataclass(frozen=True)
class _Config:
    stamp: str
    rules: list[Rule]
    factors: ED.FactorTable


_config: _Config | None = None


def _rules_and_factors(stamp: str | None) -> tuple[list[Rule], ED.FactorTable]:
    """The active rules (by key) and the effective-dose factor table: this process's copy if ``stamp`` (read in the
    lock statement) is the one it was read under, else read now (2 queries) and kept under ``stamp``."""
    global _config
    kept = _config
    if stamp is not None and kept is not None and kept.stamp == stamp:
        return kept.rules, kept.factors
    rules, factors = active_rules(), ED.factor_table()
    if stamp is not None:
        _config = _Config(stamp, rules, factors)
    return rules, factors


def _rules_signature(rules: list[Rule]) -> list[tuple]:
    names = [f.attname for f in Rule._meta.concrete_fields]
    return [(r.ruleset.version, *[getattr(r, n) for n in names]) for r in rules]


_NOT_INPUTS = ("exposure__source_updated_at", HAS_ALERT)


def _inputs_digest(group: list[int], rows: list[dict], rules: list[Rule], window_days: tuple[int, ...]) -> str:
    """Everything windows and alerts are computed from. Equal digest (and a "now" still in the valid range):
    recomputing would write the same rows and raise nothing."""
    # (not the derived facts' freshness stamp: a stale study always recomputes, and refreshing it changes the stamp)
    key = (sorted(group), [tuple(v for k, v in r.items() if k not in _NOT_INPUTS) for r in rows],
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
    root = patient_id
    with transaction.atomic():
        # serialise per patient; the last recompute's state comes with the lock. FOR NO KEY UPDATE: two recomputes
        # of one patient wait for each other, but a row that refers to the patient (a study being ingested, a
        # window, an alert, a case: their foreign-key checks take FOR KEY SHARE) does not wait for a recompute, so
        # a recompute that waits for such a transaction can never be waited for by it (deadlock). The same
        # statement tells whether the record was merged into another (then its root is locked instead) and whether
        # any record was merged into it (else its group is itself: the merge-group query is not needed)
        locked = _lock_patient(root)
        if locked and locked[4] is not None:  # merged away: the surviving record's recompute
            root = patient_root_id(patient_id)
            locked = _lock_patient(root)
        res = RecomputeResult(patient_id=root)
        group = patient_group_ids(root) if locked and locked[5] else [root]
        rules, factors = _rules_and_factors(locked[6] if locked else None)
        window_days = _all_window_days(rules)
        rows = study_rows(group)
        res.studies = len(rows)
        digest = _inputs_digest(group, rows, rules, window_days)
        if locked and locked[1] == digest and locked[2] <= now and (locked[3] is None or now < locked[3]) \
                and not any(is_stale(r) for r in rows):
            res.skipped = True
            return res
        infos, res.refreshed_studies = load_studies(rows, factors=factors)
        points = [_point(s) for s in infos]
        windows = compute_windows(points, window_days, now)
        _write_windows(root, group, windows, res)
        # the group's existing alerts are read only if there can be any: an alert of the patient (raised by a
        # recompute of it, which holds this lock), of a record merged into it, or naming one of its studies
        alerts_exist = bool(locked and locked[7]) or len(group) > 1 or any(r[HAS_ALERT] for r in rows)
        evaluate_alerts(root, group, infos, windows, rules, now, notify, res, read_existing=alerts_exist)
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


def _lock_patient(patient_id: int) -> tuple | None:
    """(id, the last recompute's digest, computed_now, valid_until, merged_into_id, whether records were merged
    into it, the stamp of the active rules and factors or None, whether an alert names the patient), the
    patient's row locked FOR NO KEY UPDATE; None: no such patient."""
    stamp: Any = RawSQL(_config_stamp_sql(), ()) if connection.vendor == "postgresql" else Value(None, CharField())
    return (Patient.objects.select_for_update(of=("self",), no_key=True).filter(pk=patient_id)
            .annotate(has_members=Exists(Patient.objects.filter(merged_into_id=OuterRef("pk"))), config_stamp=stamp,
                      has_alerts=Exists(Alert.objects.filter(patient_id=OuterRef("pk"))))
            .values_list("pk", "exposure_state__inputs_digest", "exposure_state__computed_now",
                         "exposure_state__valid_until", "merged_into_id", "has_members", "config_stamp",
                         "has_alerts").first())


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

"""Occupational dose: effective dose algorithms, per-procedure attribution, estimates and totals.

Conventions (explicit and tested):
* A wear period's dose counts in the month/quarter/year that contains its **start date**.
* Censored readings ("M") add 0 to the dose of record; ``upper_msv`` adds the reporting threshold instead.
* A real-time sample's increment is the Hp(10) accumulated in the interval that ends at its timestamp.
* Procedure window: start = earliest irradiation event time, end = latest (event time + irradiation duration);
  without event times Study.study_datetime ± ``realtime.fallback_half_window_s``. The window used for
  attribution is the half-open interval [start - margin_before, end + margin_after): a sample at exactly
  the window end belongs to the next procedure, never to both.
* A sample inside several windows (overlapping margins) goes to the procedure whose unmargined interval is
  nearest (distance 0 inside it); on a tie, to the procedure that started later.
* KAP-based values are estimates (kind="estimate"), never dose of record, and only fill quantities for which
  no dosimeter reading covers the procedure date.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from datetime import date, datetime, timedelta, timezone as dt_timezone

from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from .config import scatter_factor, setting_value, site_for
from .models import (
    POS_COLLAR,
    POS_EYE,
    POS_RING,
    POS_WAIST,
    Q_HP3,
    Q_HP007,
    Q_HP10,
    ROLE_AUTHORIZING,
    ROLE_FIRST_OPERATOR,
    ROLE_NURSE,
    ROLE_OTHER,
    ROLE_RADIOGRAPHER,
    ROLE_SECOND_OPERATOR,
    BadgeWearPeriod,
    DosimeterBadge,
    DosimeterReading,
    EffectiveDose,
    Participation,
    ProcedureStaffDose,
    RealtimeSample,
    StaffMember,
)

# ---------------------------------------------------------------------------
# effective dose algorithms (H_U = H_W under the apron at the waist; H_O = H_N over the apron at the collar)
# ---------------------------------------------------------------------------
ALGORITHMS: dict[str, dict[str, Any]] = {
    "martin_collar": {
        "version": "Martin, J Radiol Prot 2013: E = Hp(10)collar / 10 (v1)",
        "needs": {"over"}, "f": lambda hu, ho: ho / 10.0,
    },
    "under_apron": {
        "version": "single dosimeter under the apron: E = Hp(10)under (v1)",
        "needs": {"under"}, "f": lambda hu, ho: hu,
    },
    "ncrp122": {
        "version": "NCRP Report 122 (1995): E = 0.5 H_W + 0.025 H_N (v1, coefficients ◐)",
        "needs": {"under", "over"}, "f": lambda hu, ho: 0.5 * hu + 0.025 * ho,
    },
    "niklason": {
        "version": "Niklason et al. 1993: E = H_W + 0.06 (H_N - H_W) (v1, coefficients ◐)",
        "needs": {"under", "over"}, "f": lambda hu, ho: hu + 0.06 * (ho - hu),
    },
    "webster": {
        "version": "Webster 1989: EDE = 1.5 H_W + 0.04 H_N (v1, coefficients ◐)",
        "needs": {"under", "over"}, "f": lambda hu, ho: 1.5 * hu + 0.04 * ho,
    },
}


def effective_dose(algorithm: str, *, h_under: float | None, h_over: float | None) -> tuple[str, str, float] | None:
    """(algorithm used, version, E mSv). A two-dosimeter method with one dosimeter falls back to the single method."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown effective dose algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")
    have = {k for k, v in (("under", h_under), ("over", h_over)) if v is not None}
    if not ALGORITHMS[algorithm]["needs"] <= have:
        if have == {"over"}:
            algorithm = "martin_collar"
        elif have == {"under"}:
            algorithm = "under_apron"
        else:
            return None
    spec = ALGORITHMS[algorithm]
    value = spec["f"](h_under or 0.0, h_over or 0.0)
    return algorithm, spec["version"], max(value, 0.0)


def staff_algorithm(staff: StaffMember) -> str:
    site = site_for(staff)
    return site.effective_dose_algorithm or setting_value("effective.algorithm", regime=site.limit_regime, site=site, default="niklason")


def effective_doses_recompute(*, staff_ids) -> int:
    n = 0
    for staff in StaffMember.objects.filter(pk__in=list(staff_ids)).select_related("site"):
        algorithm = staff_algorithm(staff)
        groups: dict[tuple[date, date], dict] = defaultdict(dict)
        for r in DosimeterReading.objects.filter(staff=staff, quantity=Q_HP10, position__in=[POS_COLLAR, POS_WAIST]):
            if r.unused:
                continue
            g = groups[(r.period_start, r.period_end)]
            key = "over" if r.position == POS_COLLAR else "under"
            g[key] = g.get(key, 0.0) + r.dose_of_record_msv
            g["censored"] = g.get("censored", False) or r.is_censored
        rows = []
        for (start, end), g in groups.items():
            res = effective_dose(algorithm, h_under=g.get("under"), h_over=g.get("over"))
            if res is None:
                continue
            used, version, e = res
            if used != algorithm:
                version += f" (fallback from {algorithm}: one dosimeter)"
            rows.append(EffectiveDose(
                staff=staff, period_start=start, period_end=end, algorithm=used, algorithm_version=version[:64],
                h_under_msv=g.get("under"), h_over_msv=g.get("over"), inputs_censored=g.get("censored", False), effective_msv=e,
            ))
        with transaction.atomic():
            EffectiveDose.objects.filter(staff=staff).delete()
            EffectiveDose.objects.bulk_create(rows)
        n += len(rows)
    return n


# ---------------------------------------------------------------------------
# procedure windows and real-time attribution
# ---------------------------------------------------------------------------
@dataclass
class Window:
    study_id: int
    start: datetime  # unmargined
    end: datetime
    basis: str       # "events" | "study_datetime"
    lo: datetime     # margined, half-open [lo, hi)
    hi: datetime

    def contains(self, t: datetime) -> bool:
        return self.lo <= t < self.hi

    def distance(self, t: datetime) -> float:
        if self.start <= t <= self.end:
            return 0.0
        return min(abs((t - self.start).total_seconds()), abs((t - self.end).total_seconds()))


def procedure_windows(study_ids, *, margin_before_s: float, margin_after_s: float, fallback_half_window_s: float) -> dict[int, Window]:
    from dosereg.registry.models import IrradiationEvent, Study

    study_ids = list(study_ids)
    spans: dict[int, tuple[datetime, datetime, str]] = {}
    for sid, dt, dur in IrradiationEvent.objects.filter(study_id__in=study_ids, datetime__isnull=False).values_list(
        "study_id", "datetime", "irradiation_duration_s"
    ):
        if dt is None:
            continue
        end = dt + timedelta(seconds=dur or 0.0)
        seen = spans.get(sid)
        spans[sid] = (dt, end, "events") if seen is None else (min(seen[0], dt), max(seen[1], end), "events")
    missing = [s for s in study_ids if s not in spans]
    half = timedelta(seconds=fallback_half_window_s)
    for sid, sdt in Study.objects.filter(pk__in=missing, study_datetime__isnull=False).values_list("pk", "study_datetime"):
        if sdt is not None:
            spans[sid] = (sdt - half, sdt + half, "study_datetime")
    before, after = timedelta(seconds=margin_before_s), timedelta(seconds=margin_after_s)
    return {sid: Window(sid, start, end, basis, start - before, end + after) for sid, (start, end, basis) in spans.items()}


def window_settings(staff: StaffMember | None = None) -> dict:
    site = site_for(staff) if staff else None
    regime = site.limit_regime if site else ""
    return {
        "margin_before_s": float(setting_value("realtime.window_margin_before_s", regime=regime, site=site, default=60)),
        "margin_after_s": float(setting_value("realtime.window_margin_after_s", regime=regime, site=site, default=60)),
        "fallback_half_window_s": float(setting_value("realtime.fallback_half_window_s", regime=regime, site=site, default=1800)),
    }


def assign_samples(samples: list[tuple[datetime, float]], windows: list[Window]) -> tuple[dict[int, list[float]], list[float]]:
    """Each sample to at most one window (rules in the module docstring). Returns (per study, unattributed)."""
    per: dict[int, list[float]] = defaultdict(list)
    unattributed: list[float] = []
    ws = sorted(windows, key=lambda w: w.lo)
    for t, inc in samples:
        cands = [w for w in ws if w.contains(t)]
        if not cands:
            unattributed.append(inc)
            continue
        best = min(cands, key=lambda w: (w.distance(t), -w.start.timestamp()))
        per[best.study_id].append(inc)
    return per, unattributed


SCATTER_ROLES = {ROLE_FIRST_OPERATOR, ROLE_SECOND_OPERATOR, ROLE_NURSE, ROLE_RADIOGRAPHER}


def estimate_role(part: Participation) -> str | None:
    if part.role in SCATTER_ROLES:
        return part.role
    if part.role == ROLE_AUTHORIZING:
        return None  # authorising is not being in the room
    return part.staff.role if part.staff.role in SCATTER_ROLES else (part.role or ROLE_OTHER)


def procedure_doses_recompute(*, staff_ids, study_ids=None, since: datetime | None = None, until: datetime | None = None) -> int:
    """Recompute real-time per-procedure doses and KAP estimates for these staff (and studies / time range)."""
    from dosereg.registry.models import Study

    written = 0
    for staff in StaffMember.objects.filter(pk__in=list(staff_ids)).select_related("site"):
        parts = list(Participation.objects.filter(staff=staff).select_related("study", "staff"))
        if not parts:
            continue
        cfg = window_settings(staff)
        windows = procedure_windows([p.study_id for p in parts], **cfg)
        targets = parts
        if study_ids is not None:
            sids = set(study_ids)
            targets = [p for p in targets if p.study_id in sids]
        if since is not None or until is not None:
            lo, hi = since or datetime.min.replace(tzinfo=dt_timezone.utc), until or datetime.max.replace(tzinfo=dt_timezone.utc)
            targets = [p for p in targets if p.study_id in windows and windows[p.study_id].hi > lo and windows[p.study_id].lo < hi]
        if not targets:
            continue
        rt_periods = list(
            BadgeWearPeriod.objects.filter(staff=staff, badge__kind=DosimeterBadge.KIND_REALTIME).values_list("start", "end")
        )
        desired: dict[tuple[int, str, str], dict] = {}
        tw = [windows[p.study_id] for p in targets if p.study_id in windows]
        if tw and rt_periods:
            lo = min(w.lo for w in tw)
            hi = max(w.hi for w in tw)
            near = [w for w in windows.values() if w.hi > lo - timedelta(days=1) and w.lo < hi + timedelta(days=1)]
            samples = list(
                RealtimeSample.objects.filter(staff=staff, timestamp__gte=lo, timestamp__lt=hi).order_by("timestamp")
                .values_list("timestamp", "increment_usv")
            )
            per, _ = assign_samples(samples, near)
            for w in tw:
                day = timezone.localtime(w.start).date()
                if not any(s <= day and (e is None or day <= e) for s, e in rt_periods):
                    continue  # no real-time badge that day: no measurement (not a zero)
                incs = per.get(w.study_id, [])
                desired[(w.study_id, ProcedureStaffDose.KIND_REALTIME, Q_HP10)] = {
                    "dose_usv": float(sum(incs)), "sample_count": len(incs), "window_start": w.lo, "window_end": w.hi,
                    "method": {"basis": w.basis, "rule": "[start - margin_before, end + margin_after)", **cfg,
                               "core_start": w.start.isoformat(), "core_end": w.end.isoformat()},
                }
        studies = {s.pk: s for s in Study.objects.filter(pk__in=[p.study_id for p in targets])}
        for p in targets:
            study = studies[p.study_id]
            role = estimate_role(p)
            if role is None or study.dap_total_gy_cm2 is None:
                continue
            for q in (Q_HP3, Q_HP10, Q_HP007):
                f = scatter_factor(role=role, quantity=q, device_id=study.device_id)
                if f is None:
                    continue
                sw = windows.get(study.pk)
                desired[(study.pk, ProcedureStaffDose.KIND_ESTIMATE, q)] = {
                    "dose_usv": study.dap_total_gy_cm2 * f.factor_usv_per_gy_cm2, "sample_count": None,
                    "window_start": sw.start if sw else study.study_datetime, "window_end": sw.end if sw else study.study_datetime,
                    "method": {"label": "estimate", "kap_gy_cm2": study.dap_total_gy_cm2, "role": role,
                               "factor_usv_per_gy_cm2": f.factor_usv_per_gy_cm2, "factor_id": f.pk, "factor_version": f.version,
                               "factor_device_id": f.device_id, "citation": f.citation},
                }
        with transaction.atomic():
            target_ids = [p.study_id for p in targets]
            existing = {(r.study_id, r.kind, r.quantity): r for r in ProcedureStaffDose.objects.filter(staff=staff, study_id__in=target_ids)}
            for key, r in existing.items():
                if key not in desired:
                    r.delete()
            for (sid, kind, q), vals in desired.items():
                ProcedureStaffDose.objects.update_or_create(study_id=sid, staff=staff, kind=kind, quantity=q, defaults=vals)
                written += 1
    return written


# ---------------------------------------------------------------------------
# totals
# ---------------------------------------------------------------------------
@dataclass
class Acc:
    msv: float = 0.0        # dose of record (censored = 0)
    upper_msv: float = 0.0  # censored at the reporting threshold
    censored: int = 0
    readings: int = 0

    def add(self, value: float, upper: float, censored: bool) -> None:
        self.msv += value
        self.upper_msv += upper
        self.censored += int(censored)
        self.readings += 1

    def merge(self, other: "Acc") -> None:
        self.msv += other.msv
        self.upper_msv += other.upper_msv
        self.censored += other.censored
        self.readings += other.readings

    def as_dict(self) -> dict:
        return {"msv": round(self.msv, 6), "upper_msv": round(self.upper_msv, 6), "censored_readings": self.censored, "readings": self.readings}


QUANTITIES = ("effective", "hp10_collar", "hp10_waist", "lens", "extremity")


@dataclass
class WearPeriodDose:
    start: date
    end: date
    values: dict[str, Acc] = field(default_factory=dict)
    algorithm: str = ""
    algorithm_version: str = ""
    lens_source: str = ""

    def fetal_surrogate(self) -> Acc | None:
        """Under-apron Hp(10) when worn (abdomen surrogate), else effective dose."""
        return self.values.get("hp10_waist") or self.values.get("effective")


def _r_upper(r: DosimeterReading) -> float:
    if r.unused:
        return 0.0
    return r.value_msv or 0.0


def wear_period_doses(staff: StaffMember) -> list[WearPeriodDose]:
    periods: dict[tuple[date, date], WearPeriodDose] = {}
    readings = list(DosimeterReading.objects.filter(staff=staff).order_by("period_start"))
    by_period: dict[tuple[date, date], list[DosimeterReading]] = defaultdict(list)
    for r in readings:
        by_period[(r.period_start, r.period_end)].append(r)
    effs = {(e.period_start, e.period_end): e for e in EffectiveDose.objects.filter(staff=staff)}
    for key, rs in sorted(by_period.items()):
        wp = periods[key] = WearPeriodDose(*key)
        worn = [r for r in rs if not r.unused]
        for pos, name in ((POS_COLLAR, "hp10_collar"), (POS_WAIST, "hp10_waist")):
            sel = [r for r in worn if r.quantity == Q_HP10 and r.position == pos]
            if sel:
                acc = wp.values[name] = Acc()
                for r in sel:
                    acc.add(r.dose_of_record_msv, _r_upper(r), r.is_censored)
        eye = [r for r in worn if r.quantity == Q_HP3 and r.position == POS_EYE]
        collar3 = [r for r in worn if r.quantity == Q_HP3 and r.position == POS_COLLAR]
        lens_sel, wp.lens_source = (eye, "eye Hp(3)") if eye else (collar3, "collar Hp(3) (Martin 2013 surrogate)")
        if lens_sel:
            best = max(lens_sel, key=lambda r: (r.dose_of_record_msv, _r_upper(r)))
            wp.values["lens"] = Acc()
            wp.values["lens"].add(best.dose_of_record_msv, _r_upper(best), best.is_censored)
        ring = [r for r in worn if r.quantity == Q_HP007 and r.position == POS_RING]
        if ring:
            best = max(ring, key=lambda r: (r.dose_of_record_msv, _r_upper(r)))
            wp.values["extremity"] = Acc()
            wp.values["extremity"].add(best.dose_of_record_msv, _r_upper(best), best.is_censored)
        e = effs.get(key)
        if e is not None:
            wp.values["effective"] = Acc()
            wp.values["effective"].add(e.effective_msv, e.effective_msv, e.inputs_censored)
            wp.algorithm, wp.algorithm_version = e.algorithm, e.algorithm_version
    return list(periods.values())


def month_key(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


def quarter_key(d: date) -> str:
    return f"{d.year}-Q{(d.month - 1) // 3 + 1}"


def year_key(d: date) -> str:
    return f"{d.year}"


def five_years_before(d: date) -> date:
    try:
        return d.replace(year=d.year - 5)
    except ValueError:  # 29 Feb
        return d.replace(year=d.year - 5, day=28)


def period_totals(wps: list[WearPeriodDose]) -> dict[str, dict[str, dict[str, Acc]]]:
    out: dict[str, dict[str, dict[str, Acc]]] = {"month": {}, "quarter": {}, "year": {}}
    for wp in wps:
        for kind, key in (("month", month_key(wp.start)), ("quarter", quarter_key(wp.start)), ("year", year_key(wp.start))):
            bucket = out[kind].setdefault(key, {})
            for q, acc in wp.values.items():
                bucket.setdefault(q, Acc()).merge(acc)
    return out


def rolling_totals(wps: list[WearPeriodDose], *, as_of: date) -> dict[str, Acc]:
    lo = five_years_before(as_of)
    bucket: dict[str, Acc] = {}
    for wp in wps:
        if lo < wp.start <= as_of:
            for q, acc in wp.values.items():
                bucket.setdefault(q, Acc()).merge(acc)
    return bucket


def realtime_month_totals(staff: StaffMember) -> dict[str, float]:
    rows = (
        RealtimeSample.objects.filter(staff=staff).annotate(m=TruncMonth("timestamp")).values("m").annotate(s=Sum("increment_usv"))
    )
    out: dict[str, float] = {}
    for row in rows:
        m = row["m"]
        key = month_key(m.date() if isinstance(m, datetime) else m)
        out[key] = out.get(key, 0.0) + (row["s"] or 0.0)
    return out


ESTIMATE_QUANTITY = {Q_HP3: "lens", Q_HP10: "hp10", Q_HP007: "extremity"}
COVERING = {Q_HP3: Q(quantity=Q_HP3, position__in=[POS_EYE, POS_COLLAR]), Q_HP10: Q(quantity=Q_HP10), Q_HP007: Q(quantity=Q_HP007, position=POS_RING)}


def estimate_totals(staff: StaffMember) -> tuple[dict[str, dict[str, dict[str, float]]], list[ProcedureStaffDose]]:
    """Sum estimates into month/quarter/year, only where no dosimeter reading covers the procedure date."""
    covered: dict[str, list[tuple[date, date]]] = {}
    for q, cond in COVERING.items():
        covered[q] = list(
            DosimeterReading.objects.filter(staff=staff, unused=False).filter(cond).values_list("period_start", "period_end")
        )
    out: dict[str, dict[str, dict[str, float]]] = {"month": {}, "quarter": {}, "year": {}}
    used = []
    for est in ProcedureStaffDose.objects.filter(staff=staff, kind=ProcedureStaffDose.KIND_ESTIMATE).select_related("study"):
        when = est.window_start or est.study.study_datetime
        if when is None:
            continue
        d = timezone.localtime(when).date()
        if any(s <= d <= e for s, e in covered[est.quantity]):
            continue
        used.append(est)
        name = ESTIMATE_QUANTITY[est.quantity]
        for kind, key in (("month", month_key(d)), ("quarter", quarter_key(d)), ("year", year_key(d))):
            b = out[kind].setdefault(key, {})
            b[name] = b.get(name, 0.0) + est.dose_usv / 1000.0
    return out, used

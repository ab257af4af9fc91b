"""Read-only views of a staff member's exposure (used by staff_exposure and the web)."""
from __future__ import annotations

from datetime import date

from django.utils import timezone

from .config import site_for
from .models import Participation, ProcedureStaffDose, StaffAlert, StaffMember
from .occupational import (
    Acc,
    estimate_totals,
    five_years_before,
    period_totals,
    realtime_month_totals,
    rolling_totals,
    staff_algorithm,
    wear_period_doses,
)


def staff_lookup(ident: str) -> StaffMember | None:
    staff = StaffMember.objects.filter(employee_id=ident).first()
    if staff is None and str(ident).isdigit():
        staff = StaffMember.objects.filter(pk=int(ident)).first()
    return staff


def _accs(bucket: dict[str, Acc]) -> dict:
    return {q: acc.as_dict() for q, acc in sorted(bucket.items())}


def staff_exposure(staff: StaffMember, *, as_of: date | None = None) -> dict:
    as_of = as_of or timezone.localdate()
    site = site_for(staff)
    wps = wear_period_doses(staff)
    totals = period_totals(wps)
    estimates, used_estimates = estimate_totals(staff)
    rt_months = realtime_month_totals(staff)
    rt: dict[str, dict[str, float]] = {"month": {}, "quarter": {}, "year": {}}
    for m, usv in rt_months.items():
        y, mm = int(m[:4]), int(m[5:7])
        for kind, key in (("month", m), ("quarter", f"{y}-Q{(mm - 1) // 3 + 1}"), ("year", f"{y}")):
            rt[kind][key] = round(rt[kind].get(key, 0.0) + usv / 1000.0, 6)

    def period_block(kind: str) -> dict:
        keys = sorted(set(totals[kind]) | set(estimates[kind]) | set(rt[kind]))
        out = {}
        for k in keys:
            out[k] = {
                "dose_of_record": _accs(totals[kind].get(k, {})),
                "realtime_hp10_msv": rt[kind].get(k),
                "estimate": {"label": "estimate", **{q: round(v, 6) for q, v in estimates[kind].get(k, {}).items()}}
                if estimates[kind].get(k) else None,
            }
        return out

    rolling = rolling_totals(wps, as_of=as_of)
    ytd = totals["year"].get(str(as_of.year), {})
    lifetime: dict[str, Acc] = {}
    for wp in wps:
        for q, acc in wp.values.items():
            lifetime.setdefault(q, Acc()).merge(acc)

    docs: dict[int, list[ProcedureStaffDose]] = {}
    for psd in ProcedureStaffDose.objects.filter(staff=staff):
        docs.setdefault(psd.study_id, []).append(psd)
    procedures = []
    for part in Participation.objects.filter(staff=staff).select_related("study", "study__device").order_by("study__study_datetime", "pk"):
        s = part.study
        doses = []
        for psd in sorted(docs.get(s.pk, []), key=lambda d: (d.kind, d.quantity)):
            entry = {
                "kind": psd.kind, "quantity": psd.quantity, "dose_usv": round(psd.dose_usv, 4),
                "window_start": psd.window_start.isoformat() if psd.window_start else None,
                "window_end": psd.window_end.isoformat() if psd.window_end else None,
            }
            if psd.kind == ProcedureStaffDose.KIND_REALTIME:
                entry["sample_count"] = psd.sample_count
                entry["window_basis"] = psd.method.get("basis")
            else:
                entry["label"] = "estimate"
                entry["method"] = psd.method
            doses.append(entry)
        procedures.append({
            "study_instance_uid": s.study_instance_uid, "accession_number": s.accession_number,
            "study_datetime": s.study_datetime.isoformat() if s.study_datetime else None,
            "device": str(s.device) if s.device_id else None, "modality": s.procedure_modality,
            "dap_total_gy_cm2": s.dap_total_gy_cm2, "role": part.role, "sources": part.sources, "doses": doses,
        })

    alerts = [
        {
            "id": a.pk, "rule": a.rule, "period": a.period, "level": a.level, "quantity": a.quantity,
            "value_msv": round(a.value_msv, 6), "threshold_msv": a.threshold_msv, "status": a.status,
            "setting": a.setting, "created_at": a.created_at.isoformat(),
            "study_instance_uid": a.study.study_instance_uid if a.study is not None else None,
            "investigation": (
                {"cause": a.investigation.cause, "corrective_action": a.investigation.corrective_action,
                 "completed_at": a.investigation.completed_at.isoformat() if a.investigation.completed_at else None}
                if hasattr(a, "investigation") else None
            ),
        }
        for a in StaffAlert.objects.filter(staff=staff).select_related("study").order_by("created_at", "pk")
    ]
    return {
        "staff": {
            "id": staff.pk, "employee_id": staff.employee_id, "name": staff.name, "role": staff.role,
            "department": staff.department, "email": staff.contact_email, "active": staff.active,
            "aliases": sorted(staff.aliases.values_list("alias", flat=True)),
            "badges": [
                {"badge_id": wp.badge.badge_id, "kind": wp.badge.kind, "position": wp.badge.position,
                 "start": wp.start.isoformat(), "end": wp.end.isoformat() if wp.end else None}
                for wp in staff.wear_periods.select_related("badge").order_by("start")
            ],
            "pregnancies": [
                {"declared_on": p.declared_on.isoformat(), "expected_due_date": p.expected_due_date.isoformat() if p.expected_due_date else None,
                 "withdrawn_on": p.withdrawn_on.isoformat() if p.withdrawn_on else None}
                for p in staff.pregnancies.order_by("declared_on")
            ],
        },
        "site": site.name,
        "limit_regime": site.limit_regime,
        "effective_dose_algorithm": staff_algorithm(staff),
        "as_of": as_of.isoformat(),
        "conventions": {
            "units": "mSv unless the key says usv",
            "dose_of_record": "from dosimetry-service badge reports; 'M' (censored) adds 0 to msv and the reporting threshold to upper_msv",
            "period_assignment": "a wear period counts in the month/quarter/year of its start date",
            "realtime": "real-time Hp(10) over the apron; not dose of record",
            "estimate": "KAP x scatter factor; only where no dosimeter reading covers the procedure date; never dose of record",
        },
        "wear_periods": [
            {"start": wp.start.isoformat(), "end": wp.end.isoformat(), "quantities": _accs(wp.values),
             "effective_algorithm": wp.algorithm or None, "effective_algorithm_version": wp.algorithm_version or None,
             "lens_source": wp.lens_source or None}
            for wp in wps
        ],
        "periods": {
            "month": period_block("month"),
            "quarter": period_block("quarter"),
            "year": period_block("year"),
            "rolling_5y": {"from_exclusive": five_years_before(as_of).isoformat(), "to": as_of.isoformat(), "dose_of_record": _accs(rolling)},
        },
        "totals": {
            "year_to_date": _accs(ytd),
            "rolling_5y": _accs(rolling),
            "lifetime": _accs(lifetime),
            "estimates_used": len(used_estimates),
        },
        "procedures": procedures,
        "alerts": alerts,
    }

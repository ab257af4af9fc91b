"""Staff dose alerts: ALARA investigation levels, annual limits, declared pregnancy, per-procedure dose.

One alert per (staff, rule, period, level), guaranteed by a unique constraint; an alert is created
(and e-mailed, through dosereg.notifications) only the first time its level is reached. Only the
highest level reached in a period is raised. Thresholds are versioned settings with citations.
"""
from __future__ import annotations

import logging
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from dosereg import formatting as fmt

from .config import setting, site_for
from .models import PregnancyDeclaration, ProcedureStaffDose, StaffAlert, StaffAlertTransition, StaffInvestigation, StaffMember
from .occupational import (
    Acc,
    WearPeriodDose,
    month_key,
    period_totals,
    wear_period_doses,
)

log = logging.getLogger(__name__)

QUANTITY_LABEL = {"effective": "effective dose (whole body)", "lens": "eye lens Hp(3)", "extremity": "extremity Hp(0.07)"}
RSO_GROUP = "rso"
HIGH_LEVELS = {"II", "exceeded"}


class AlertError(ValueError):
    pass


def _get(key: str, regime: str, site):
    return setting(key, regime=regime, site=site, default=None)


def staff_alerts_evaluate(*, staff_ids, as_of: date | None = None) -> list[StaffAlert]:
    created: list[StaffAlert] = []
    for staff in StaffMember.objects.filter(pk__in=list(staff_ids)).select_related("site", "user"):
        created += _evaluate_one(staff)
    return created


def _evaluate_one(staff: StaffMember) -> list[StaffAlert]:
    site = site_for(staff)
    regime = site.limit_regime
    wps = wear_period_doses(staff)
    totals = period_totals(wps)
    made: list[StaffAlert] = []

    # ALARA investigation levels per calendar quarter
    for quarter, bucket in totals["quarter"].items():
        for q in ("effective", "lens", "extremity"):
            acc = bucket.get(q)
            if acc is None:
                continue
            levels = [(lvl, _get(f"investigation.{q}.{lvl}", regime, site)) for lvl in ("I", "II")]
            made += _raise_highest(staff, f"investigation_level.{q}", quarter, q, acc.msv, levels)

    # annual limits: approaching / exceeded
    for year, bucket in totals["year"].items():
        for q in ("effective", "lens", "extremity"):
            acc = bucket.get(q)
            limit = _get(f"limit.{q}.annual", regime, site)
            if acc is None or limit is None:
                continue
            fraction = _get("limit.approach_fraction", regime, site)
            levels = []
            if fraction is not None:
                approach = _scaled(limit, float(fraction.value), f"{fraction.key} v{fraction.version}")
                levels.append(("approaching", approach))
            levels.append(("exceeded", limit))
            made += _raise_highest(staff, f"annual_limit.{q}", year, q, acc.msv, levels, strict_last=True)

    # ICRP: the annual limit is an average over 5 years, and no single year may exceed 50 mSv (effective dose,
    # eye lens): exceeding it is a breach of the limit itself, raised apart from the averaged annual limit
    for year, bucket in totals["year"].items():
        for q in ("effective", "lens"):
            acc = bucket.get(q)
            limit = _get(f"limit.{q}.single_year_max", regime, site)
            if acc is None or limit is None:
                continue
            made += _raise_highest(staff, f"single_year_limit.{q}", year, q, acc.msv, [("exceeded", limit)], strict_last=True)

    # five-year limits (ICRP: 100 mSv in 5 years), over the five calendar years ending in each year with data
    years = sorted(int(y) for y in totals["year"])
    for q in ("effective", "lens"):
        limit = _get(f"limit.{q}.five_year", regime, site)
        if limit is None:
            continue
        for y in years:
            value = sum(totals["year"].get(str(yy), {}).get(q, Acc()).msv for yy in range(y - 4, y + 1))
            made += _raise_highest(staff, f"five_year_limit.{q}", f"{y - 4}-{y}", q, value, [("exceeded", limit)], strict_last=True)

    # declared pregnant worker
    decls = list(PregnancyDeclaration.objects.filter(staff=staff))
    if decls:
        monthly = _get("pregnancy.monthly", regime, site)
        total_limit = _get("pregnancy.declared_total", regime, site)
        for decl in decls:
            months: dict[str, Acc] = {}
            whole = Acc()
            for wp in wps:
                if not _overlaps_declaration(wp, decl):
                    continue
                acc = wp.fetal_surrogate()
                if acc is None:
                    continue
                months.setdefault(month_key(wp.start), Acc()).merge(acc)
                whole.merge(acc)
            if monthly is not None:
                for m, acc in months.items():
                    made += _raise_highest(staff, "pregnancy.monthly", m, "fetal_surrogate", acc.msv, [("level", monthly)])
            if total_limit is not None:
                fraction = _get("limit.approach_fraction", regime, site)
                levels = []
                if fraction is not None:
                    levels.append(("approaching", _scaled(total_limit, float(fraction.value), f"{fraction.key} v{fraction.version}")))
                levels.append(("exceeded", total_limit))
                made += _raise_highest(
                    staff, "pregnancy.declared_total", f"declared:{decl.declared_on.isoformat()}", "fetal_surrogate", whole.msv,
                    levels, strict_last=True,
                )

    # unusually high dose in one procedure (real-time measurement)
    high = _get("procedure.high_dose_hp10", regime, site)
    if high is not None:
        for psd in ProcedureStaffDose.objects.filter(staff=staff, kind=ProcedureStaffDose.KIND_REALTIME).select_related("study"):
            made += _raise_highest(
                staff, "procedure.high_dose", f"study:{psd.study.study_instance_uid}"[:64], "hp10_realtime",
                psd.dose_usv / 1000.0, [("level", high)], study=psd.study,
            )
    return made


def _overlaps_declaration(wp: WearPeriodDose, decl: PregnancyDeclaration) -> bool:
    """The wear period overlaps the declared pregnancy (declared_on .. day before withdrawal, or due date)."""
    last = decl.withdrawn_on - timedelta(days=1) if decl.withdrawn_on else decl.expected_due_date
    return wp.end >= decl.declared_on and (last is None or wp.start <= last)


class _Scaled:
    def __init__(self, base, factor: float, why: str):
        self.key, self.version, self.unit = base.key, base.version, base.unit
        self.value = float(base.value) * factor
        self.citation = f"{factor:g} × {base.key} v{base.version} ({why}); {base.citation}"
        self.verification = base.verification

    def as_dict(self) -> dict:
        return {"key": self.key, "version": self.version, "value": self.value, "unit": self.unit,
                "citation": self.citation, "verification": self.verification}


def _scaled(base, factor: float, why: str) -> _Scaled:
    return _Scaled(base, factor, why)


def _raise_highest(staff, rule, period, quantity, value, levels, *, strict_last: bool = False, study=None) -> list[StaffAlert]:
    """levels: [(level, SettingValue)] ascending. Raise the highest one reached (>=; > for a limit)."""
    reached = None
    for i, (lvl, sv) in enumerate(levels):
        if sv is None:
            continue
        threshold = float(sv.value)
        hit = value > threshold if (strict_last and i == len(levels) - 1) else value >= threshold
        if hit:
            reached = (lvl, sv, threshold)
    if reached is None:
        return []
    lvl, sv, threshold = reached
    alert = _alert_create(staff, rule=rule, period=period, level=lvl, quantity=quantity, value=value, threshold=threshold,
                          sv=sv, study=study)
    return [alert] if alert else []


def _alert_create(staff, *, rule, period, level, quantity, value, threshold, sv, study=None) -> StaffAlert | None:
    if StaffAlert.objects.filter(staff=staff, rule=rule, period=period, level=level).exists():
        return None
    message = (
        f"{staff.name} ({staff.employee_id}): {rule} {level} for {period}: "
        f"{QUANTITY_LABEL.get(quantity, quantity)} {fmt.number(value)} mSv, threshold {fmt.number(threshold)} mSv "
        f"[{sv.key} v{sv.version}; {sv.citation}]"
    )
    try:
        with transaction.atomic():
            alert = StaffAlert.objects.create(
                staff=staff, rule=rule, period=period, level=level, quantity=quantity, value_msv=value,
                threshold_msv=threshold, setting=sv.as_dict(), study=study, message=message,
            )
            _notify(alert)
            from dosereg.cases.services import case_for_staff_alert  # in this transaction; named in .importlinter

            case_for_staff_alert(alert)  # the RSO's worklist
    except IntegrityError:  # raised concurrently by another evaluation: that one notified
        return None
    log.info("staff alert: %s", message)
    return alert


def rso_emails() -> list[str]:
    User = get_user_model()
    return sorted(
        set(User.objects.filter(groups__name=RSO_GROUP, is_active=True).exclude(email="").values_list("email", flat=True))
    )


RULE_TITLE = {
    "investigation_level": "ALARA investigation level",
    "annual_limit": "annual dose limit",
    "five_year_limit": "five-year dose limit",
    "pregnancy": "declared pregnant worker",
    "procedure": "high dose in one procedure",
}


def _notify(alert: StaffAlert) -> None:
    from dosereg.notifications.services import notification_enqueue

    staff = alert.staff
    recipients = [e for e in [staff.contact_email, *rso_emails()] if e]
    if not recipients:
        log.warning("staff alert %s has no recipient (no e-mail for %s and no active %r group member)", alert.pk, staff, RSO_GROUP)
        return
    title = RULE_TITLE.get(alert.rule.split(".", 1)[0], alert.rule)
    subject = f"[dosereg] Staff dose alert: {title} ({alert.level}) - {staff.name} - {alert.period}"
    body = "\n".join([
        f"Staff member: {staff.name} (employee ID {staff.employee_id}, {staff.department or 'no department'})",
        f"Rule: {alert.rule}  level: {alert.level}  period: {alert.period}",
        f"Quantity: {QUANTITY_LABEL.get(alert.quantity, alert.quantity)}",
        f"Value: {fmt.number(alert.value_msv)} mSv   threshold: {fmt.number(alert.threshold_msv)} mSv",
        f"Threshold source: {alert.setting.get('key')} v{alert.setting.get('version')} {alert.setting.get('verification', '')} - "
        f"{alert.setting.get('citation', '')}",
        "",
        "Level I: the radiation safety officer reviews. Level II / limit: investigate and record cause and corrective action.",
        f"Alert id {alert.pk}; status {alert.status}.",
    ])
    severity = "high" if alert.level in HIGH_LEVELS or alert.rule.startswith("pregnancy") else "normal"
    notification_enqueue(
        dedupe_key=f"staff-alert:{staff.pk}:{alert.rule}:{alert.period}:{alert.level}", recipients=recipients,
        subject=subject, body=body, severity=severity,
    )


# ---------------------------------------------------------------------------
# lifecycle and investigation
# ---------------------------------------------------------------------------
def alert_transition(*, alert: StaffAlert, to_status: str, user=None, note: str = "") -> StaffAlert:
    with transaction.atomic():
        a = StaffAlert.objects.select_for_update().get(pk=alert.pk)
        if to_status not in StaffAlert.TRANSITIONS.get(a.status, set()):
            raise AlertError(f"alert {a.pk}: cannot go from {a.status} to {to_status}")
        if to_status == StaffAlert.STATUS_CLOSED and a.level in HIGH_LEVELS:
            inv = StaffInvestigation.objects.filter(alert=a).first()
            if inv is None or not inv.cause.strip() or not inv.corrective_action.strip():
                raise AlertError(f"alert {a.pk} ({a.level}) needs an investigation with cause and corrective action before closing")
        StaffAlertTransition.objects.create(alert=a, from_status=a.status, to_status=to_status, user=user, note=note)
        a.status = to_status
        a.save(update_fields=["status", "updated_at"])
    return a


def investigation_record(*, alert: StaffAlert, cause: str = "", corrective_action: str = "", notes: str = "", investigator=None,
                         complete: bool = False) -> StaffInvestigation:
    with transaction.atomic():
        inv, _ = StaffInvestigation.objects.select_for_update().get_or_create(alert=alert)
        if cause:
            inv.cause = cause
        if corrective_action:
            inv.corrective_action = corrective_action
        if notes:
            inv.notes = notes
        if investigator is not None:
            inv.investigator = investigator
        if complete:
            if not inv.cause.strip() or not inv.corrective_action.strip():
                raise AlertError("an investigation is complete only with a cause and a corrective action")
            inv.completed_at = timezone.now()
        inv.save()
    return inv

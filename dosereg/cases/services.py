"""Writes of the cases app: folding alerts into cases, the case e-mail, and the RSO's actions.

* ``cases_absorb`` is called by ``dosereg.exposure.evaluation`` with the alerts one evaluation raised. Each joins
  the case of its procedure (or patient window, pregnancy, Dose Check); a case is e-mailed once when it opens and
  once more each time its level reaches a higher *class* (severity, then first < subsequent/alert < SRDL), never
  once per NCRP 168 step. Procedures older than ``ALERT_NOTIFY_MAX_AGE_DAYS`` open cases without e-mail.
* ``case_for_staff_alert`` is called by ``dosereg.staff.alerts`` for an occupational alert (the staff module
  e-mails those itself).
  These two calls are the only imports from exposure and staff up into cases; ``.importlinter`` names them.
* ``case_acknowledge`` / ``case_follow_up`` / ``case_close`` move a case and its member alerts; views audit them.
"""
from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import conf
from .formatting import level_line, public_text
from .models import (
    ACTIVE_STATUSES,
    KIND_CUMULATIVE,
    KIND_DOSE_CHECK,
    KIND_PREGNANCY,
    KIND_PROCEDURE,
    KIND_STAFF,
    STATUS_ACKNOWLEDGED,
    STATUS_CLOSED,
    STATUS_FOLLOW_UP,
    STATUS_OPEN,
    STATUS_WITHDRAWN,
    Case,
    CaseAlert,
    CaseEvent,
)

log = logging.getLogger(__name__)

SEV_RANK = {"low": 0, "normal": 1, "high": 2}
KIND_LABEL = {KIND_PROCEDURE: "Procedure", KIND_CUMULATIVE: "Patient cumulative", KIND_PREGNANCY: "Pregnancy",
              KIND_DOSE_CHECK: "CT Dose Check", KIND_STAFF: "Staff (occupational)"}

# closing outcomes (skin: NCI CTCAE v5.0 "Dermatitis radiation", grades 1–4; grade 5 is death)
SKIN_OUTCOMES = [("none", "No skin reaction observed"), ("observed", "Skin reaction observed"),
                 ("not_assessed", "Not assessed (patient not reachable / declined)"), ("not_applicable", "Not applicable")]
SKIN_GRADES = [("1", "Grade 1: faint erythema or dry desquamation"),
               ("2", "Grade 2: moderate to brisk erythema; patchy moist desquamation in folds"),
               ("3", "Grade 3: moist desquamation beyond folds; bleeding with minor trauma"),
               ("4", "Grade 4: life-threatening; skin necrosis or ulceration of full thickness dermis")]
SKIN_GRADE_SOURCE = "NCI Common Terminology Criteria for Adverse Events (CTCAE) v5.0, 'Dermatitis radiation'"
CONCEPTUS_METHODS = [("physicist_calculation", "Physicist calculation from the exam's dose data"),
                     ("monte_carlo", "Monte Carlo / dedicated software"), ("measurement", "Phantom measurement"),
                     ("published_estimate", "Published per-exam estimate"), ("other", "Other (see note)")]


class CaseError(ValueError):
    pass


def sort_rank(kind: str, severity: str) -> int:
    """Worklist order: severity (high 20, normal 10, low 0); a pregnancy case 5 above the others of its severity."""
    return SEV_RANK.get(severity, 1) * 10 + (5 if kind == KIND_PREGNANCY else 0)


def level_class(alert) -> int:
    """Escalation class of an exposure alert: severity × 10 + (1 first / notification, 2 subsequent / Dose Check
    alert, 3 SRDL). A case is e-mailed again only when a level of a higher class is reached."""
    lvl = alert.level or ""
    if lvl == "review":  # an institutional review level above the SRDL (15 Gy peak skin dose)
        c = 4
    elif lvl == "srdl":
        c = 3
    elif lvl.startswith("subsequent") or lvl == "alert" or (alert.detail or {}).get("dose_check_kind") == "alert":
        c = 2
    else:
        c = 1
    return SEV_RANK.get(alert.severity, 1) * 10 + c


# within one class, the level that names a procedure case: peak skin dose, then Ka,r (its surrogate) first, fluoroscopy time last
QUANTITY_PRIORITY = {"pregnancy": 9, "dose_check": 8, "psd_gy": 7.5, "kar_gy": 7, "kap_gy_cm2": 6, "ctdivol_mgy": 5, "dlp_mgy_cm": 4,
                     "procedure_count": 3, "fluoro_time_s": 2}


def top_key(alert) -> tuple:
    """Order of the levels of a case: class, then quantity, then how far the value is above its level."""
    ratio = (alert.value / alert.threshold) if alert.value is not None and alert.threshold else 0.0
    return (level_class(alert), QUANTITY_PRIORITY.get(alert.quantity, 0), alert.threshold or 0.0, ratio)


def case_identity(alert) -> tuple[str, str]:
    """(kind, key) of the case an exposure alert belongs to."""
    uid = alert.study_uid or alert.subject
    if alert.quantity == "pregnancy":
        return KIND_PREGNANCY, f"pregnancy:{uid}"[:255]
    if alert.quantity == "dose_check":
        return KIND_DOSE_CHECK, f"dose_check:{uid}"[:255]
    if alert.subject.startswith("episode:"):
        return KIND_CUMULATIVE, f"cumulative:{alert.patient_id}:{alert.window_days}:{alert.subject}"[:255]
    return KIND_PROCEDURE, f"procedure:{uid}"[:255]


def _site(institution: str | None) -> str:
    from dosereg.access.scope import normalise

    return normalise(institution)


def _case_title(kind: str, top_alert) -> str:
    """E.g. "Procedure: Ka,r substantial radiation dose level: 7.4 Gy ≥ 5 Gy" (values in the quantity's one unit)."""
    from .formatting import fmt_value

    if top_alert.value is None or top_alert.threshold is None or kind in (KIND_PREGNANCY, KIND_DOSE_CHECK):
        return f"{KIND_LABEL[kind]}: {top_alert.title}"[:255]
    name = (top_alert.detail or {}).get("rule_title") or top_alert.rule_key
    if top_alert.level.startswith("subsequent+"):
        name += f" (+{top_alert.level.split('+', 1)[1]})"
    win = f" in {top_alert.window_days} days" if top_alert.window_days else ""
    return (f"{KIND_LABEL[kind]}: {name}: {fmt_value(top_alert.quantity, top_alert.value)}{win} ≥ "
            f"{fmt_value(top_alert.quantity, top_alert.threshold)}")[:255]


def _suggested_due(alert) -> date | None:
    s = (alert.detail or {}).get("follow_up_suggested_due")
    return date.fromisoformat(s) if s else None


# ---------------------------------------------------------------------------
# folding exposure alerts into cases (called inside the recompute's transaction)
# ---------------------------------------------------------------------------
def cases_absorb(created: list, *, now: datetime, notify: bool = True, res=None) -> list[Case]:
    """``created``: [(Alert, Expected)] raised by one evaluation. Opens / escalates cases, queues one e-mail per
    case whose level class rose, records the timeline, and sets each alert's ``notified`` state
    (queued / historical / no_recipients / suppressed on the alert that carried the e-mail, collapsed on the rest)."""
    from dosereg.exposure.models import Alert, AlertEvent
    from dosereg.exposure.routing import Router
    from dosereg.notifications.services import notification_enqueue_many

    if not created:
        return []
    groups: dict[str, list] = {}
    kinds: dict[str, str] = {}
    for alert, e in created:
        kind, key = case_identity(alert)
        groups.setdefault(key, []).append((alert, e))
        kinds[key] = kind
    cases = {c.key: c for c in Case.objects.select_for_update(no_key=True).filter(key__in=list(groups))}
    # a cumulative episode joins the active case of the same patient and window length whose window overlaps
    loose = [k for k in groups if kinds[k] == KIND_CUMULATIVE and k not in cases]
    if loose:
        cands = list(Case.objects.select_for_update(no_key=True).filter(
            kind=KIND_CUMULATIVE, status__in=ACTIVE_STATUSES, patient_id__in={groups[k][0][0].patient_id for k in loose}))
        for k in loose:
            a = groups[k][0][0]
            for c in cands:
                if (c.patient_id == a.patient_id and c.window_days == a.window_days and c.window_end and a.window_start
                        and c.window_end >= a.window_start and (a.window_end is None or c.window_start is None or c.window_start <= a.window_end)):
                    cases[k] = c
                    break
    router = Router()
    members: list[CaseAlert] = []
    events: list[CaseEvent] = []
    alert_events: list = []
    requests: list[dict] = []
    touched: list[Case] = []
    for key, items in groups.items():
        kind = kinds[key]
        top_alert, top_e = max(items, key=lambda it: top_key(it[0]))
        new_class = level_class(top_alert)
        row = top_e.study.row if top_e is not None and top_e.study else {}
        found = cases.get(key)
        opened = found is None
        if found is None:
            case = _case_open(kind, key, top_alert, row, now)
            if case.pk is None:  # lost a race: the other evaluation's case stands, join it
                case = Case.objects.select_for_update(no_key=True).get(key=key)
                opened = False
        else:
            case = found
        levels_note = "; ".join(a.title for a, _ in sorted(items, key=lambda it: top_key(it[0]), reverse=True)[:6])
        if len(items) > 6:
            levels_note += f"; … {len(items) - 6} more"
        level_detail = {"levels": [{"alert": a.pk, "rule": a.rule_key, "level": a.level} for a, _ in items]}
        escalated = opened or new_class > case.top_class
        if opened:
            events.append(CaseEvent(case=case, at=now, action="raised", note=levels_note, detail=level_detail))
        else:
            if case.status in (STATUS_CLOSED, STATUS_WITHDRAWN):
                events.append(CaseEvent(case=case, at=now, action="reopened",
                                        note=f"a new level was reached after the case was {case.status}"))
                case.status = STATUS_OPEN
            events.append(CaseEvent(case=case, at=now, action="escalated" if escalated else "level_added",
                                    note=levels_note, detail=level_detail))
        # the case's highest level, severity, rules
        if escalated or opened:
            case.top_class = new_class
            case.top_rule_key = top_alert.rule_key
            case.top_level = top_alert.level
            case.title = _case_title(kind, top_alert)
            if not opened:
                case.escalated_at = now
        sev = max([case.severity] + [a.severity for a, _ in items] + (["high"] if kind == KIND_PREGNANCY else []),
                  key=lambda s: SEV_RANK.get(s, 1))
        case.severity = sev
        case.sort_rank = sort_rank(kind, sev)
        keys = set(filter(None, case.rule_keys.split(","))) | {a.rule_key for a, _ in items}
        case.rule_keys = ("," + ",".join(sorted(keys)) + ",")[:1024]
        case.level_count += len(items)
        for a, _ in items:
            s = _suggested_due(a)
            if s and (case.follow_up_suggested is None or s < case.follow_up_suggested):
                case.follow_up_suggested = s
            if kind == KIND_CUMULATIVE and a.window_end and (case.window_end is None or a.window_end > case.window_end):
                case.window_end = a.window_end
            members.append(CaseAlert(case=case, alert=a, added_at=now))
            a.notified = "collapsed"
        # the e-mail
        if escalated:
            if not notify:
                state, note = "suppressed", "recorded without e-mail (evaluation run without notification)"
            elif (days := conf.too_old_to_notify(case.exam_date, now)) is not None:
                state = "historical"
                note = (f"no e-mail: the exam ({case.exam_date:%Y-%m-%d}) is older than {days} days "
                        f"(ALERT_NOTIFY_MAX_AGE_DAYS) — a back-fill or re-processing, not a new procedure")
            else:
                # everyone a route (or the site's RSOs) would tell about any of the new levels, once
                recipients = sorted({r for a, e in items for r in router.recipients(a, e)})
                if not recipients:
                    state, note = "no_recipients", "no e-mail: no alert route and no RSO with an e-mail address for this site"
                    log.warning("case %s: no recipients", case.pk)
                else:
                    state, note = "queued", ", ".join(recipients)
                    requests.append(dict(
                        dedupe_key=f"case:{case.pk}:class:{new_class}", recipients=recipients,
                        subject=case_email_subject(case, escalated=not opened),
                        body=case_email_body(case, [a for a, _ in items], row, escalated=not opened),
                        severity=case.severity if case.severity in SEV_RANK else "normal",
                        digest=bool(top_e is not None and top_e.rule.digest and case.severity == "low"),
                    ))
                    alert_events.append(AlertEvent(alert=top_alert, action="notified", note=note))
                    case.notify_count += 1
            top_alert.notified = state
            case.notify_state, case.notify_note = state, note[:255]
            events.append(CaseEvent(case=case, at=now, action="notified" if state == "queued" else "not_notified", note=note,
                                    detail={"state": state}))
        touched.append(case)
    for case in touched:
        case.save()
    CaseAlert.objects.bulk_create(members)
    CaseEvent.objects.bulk_create(events)
    if requests:
        n = len(notification_enqueue_many(requests))
        if res is not None:
            res.notifications += n
    if alert_events:
        AlertEvent.objects.bulk_create(alert_events)
    Alert.objects.bulk_update([a for a, _ in created], ["notified"])
    return touched


def _case_open(kind: str, key: str, top_alert, row: dict, now: datetime) -> Case:
    exam = row.get("study_datetime")
    if exam is None and top_alert.study_id:
        exam = top_alert.study.study_datetime if top_alert.study else None
    case = Case(
        key=key, kind=kind, status=STATUS_OPEN, severity=top_alert.severity, sort_rank=sort_rank(kind, top_alert.severity),
        patient_id=top_alert.patient_id, study_id=top_alert.study_id if kind != KIND_CUMULATIVE else top_alert.study_id,
        study_uid=top_alert.study_uid, device_id=row.get("device_id"), site=_site(row.get("device__institution")),
        modality=(row.get("procedure_modality") or "")[:8], exam_date=exam or top_alert.window_end,
        window_days=top_alert.window_days, window_start=top_alert.window_start, window_end=top_alert.window_end,
        title=_case_title(kind, top_alert), top_rule_key=top_alert.rule_key, top_level=top_alert.level,
        top_class=level_class(top_alert), opened_at=now,
    )
    try:
        with transaction.atomic():
            case.save(force_insert=True)
    except IntegrityError:
        case.pk = None
    return case


def cases_on_withdrawn(alert_ids: list[int], *, now: datetime) -> int:
    """Alerts withdrawn by a recompute (study replaced, deleted, unmerged): an active case none of whose alerts
    still holds is withdrawn too, kept with its timeline. Two statements (UPDATE ... RETURNING, one INSERT)."""
    from django.db import connection

    from dosereg.exposure.models import Alert

    if not alert_ids:
        return 0
    ids = [int(i) for i in alert_ids]
    active = list(ACTIVE_STATUSES)
    sql = (f"UPDATE {Case._meta.db_table} SET status = %s, updated_at = %s "
           f"WHERE status IN ({', '.join(['%s'] * len(active))}) "
           f"AND id IN (SELECT case_id FROM {CaseAlert._meta.db_table} WHERE alert_id IN ({', '.join(['%s'] * len(ids))})) "
           f"AND NOT EXISTS (SELECT 1 FROM {CaseAlert._meta.db_table} m JOIN {Alert._meta.db_table} a ON a.id = m.alert_id "
           f"WHERE m.case_id = {Case._meta.db_table}.id AND a.status <> %s) RETURNING id")
    with connection.cursor() as cur:
        cur.execute(sql, [STATUS_WITHDRAWN, now, *active, *ids, Alert.STATUS_WITHDRAWN])
        withdrawn = [row[0] for row in cur.fetchall()]
    if withdrawn:
        CaseEvent.objects.bulk_create([CaseEvent(case_id=pk, at=now, action="withdrawn",
                                                 note="every level of the case no longer holds (study replaced, deleted or re-assigned)")
                                       for pk in withdrawn])
    return len(withdrawn)


def cases_on_reraised(alert_ids: list[int], *, now: datetime) -> int:
    """Withdrawn alerts whose condition holds again (e.g. a merge undone twice): their withdrawn case is active
    again, acknowledged if it had been. Not e-mailed again (the alerts were)."""
    if not alert_ids:
        return 0
    cases = list(Case.objects.select_for_update(no_key=True).filter(
        status=STATUS_WITHDRAWN, pk__in=CaseAlert.objects.filter(alert_id__in=alert_ids).values("case_id")))
    for case in cases:
        case.status = STATUS_ACKNOWLEDGED if case.acknowledged_at else STATUS_OPEN
        case.save(update_fields=["status", "updated_at"])
    CaseEvent.objects.bulk_create([CaseEvent(case=c, at=now, action="reopened",
                                             note="a level holds again after a recompute; not e-mailed again") for c in cases])
    return len(cases)


# ---------------------------------------------------------------------------
# the e-mail: plain text, absolute link, exam date, device, values in the rule's units
# ---------------------------------------------------------------------------
def case_url(case: Case) -> str:
    from django.urls import reverse

    return conf.site_url() + reverse("cases:detail", kwargs={"case_id": case.pk})


def case_email_subject(case: Case, *, escalated: bool) -> str:
    when = f"{case.exam_date:%Y-%m-%d}" if case.exam_date else "date unknown"
    prefix = "[dosereg] " + ("HIGH " if case.severity == "high" else "") + ("escalated: " if escalated else "")
    return f"{prefix}{case.title} — exam {when}"[:255]


def case_email_body(case: Case, new_alerts: list, row: dict, *, escalated: bool) -> str:
    lines = [("The case has reached a higher level." if escalated else "A new case was opened for the radiation safety officer."), ""]
    lines.append(f"Case: {KIND_LABEL[case.kind]} — {case.title.split(': ', 1)[-1]}")
    if row:
        exam = row.get("study_datetime")
        lines.append(f"Exam date: {timezone.localtime(exam):%Y-%m-%d %H:%M}" if exam else "Exam date: unknown")
        desc = " ".join(x for x in (row.get("procedure_modality") or "", row.get("study_description") or "") if x)
        if desc:
            lines.append(f"Exam: {desc}" + (f", accession {row['accession_number']}" if row.get("accession_number") else ""))
        lines.append(f"Device: {row.get('device__display_name') or 'unknown device'}"
                     + (f" ({row['device__institution']})" if row.get("device__institution") else ""))
    if case.patient_id:
        p = case.patient  # the ID only where it is not a pseudonym (as the alert messages)
        lines.append(f"Patient: registry record {case.patient_id}" + ("" if p is None or p.pseudonymised else f" (ID {p.patient_id})"))
    if case.kind == KIND_CUMULATIVE and case.window_start and case.window_end:
        lines.append(f"Window: {case.window_start:%Y-%m-%d} to {case.window_end:%Y-%m-%d} ({case.window_days} days)")
    lines += ["", "Levels reached:" if not escalated else "New levels reached:"]
    shown = sorted(new_alerts, key=top_key, reverse=True)
    for a in shown[:12]:
        lines.append(f"  - {level_line(a)}")
    if len(shown) > 12:
        lines.append(f"  - … and {len(shown) - 12} more (see the case page)")
    top = shown[0] if shown else None
    d = (top.detail or {}) if top is not None else {}
    if d.get("reason_for_proceeding"):
        lines += ["", "Reason for proceeding given at the console:", f"  {d['reason_for_proceeding']}"]
    if d.get("priority_reasons"):
        lines.append("High priority because: " + "; ".join(d["priority_reasons"]))
    if d.get("srdl_wording"):
        lines += ["", public_text(d["srdl_wording"])]
    if top is not None and top.quantity == "pregnancy":
        lines += ["", "Conceptus dose bands:", *("  " + public_text(x) for x in (d.get("conceptus_dose_bands") or "").splitlines()),
                  "", "A medical physicist's conceptus-dose estimate is requested; record it on the case page when closing."]
    if case.follow_up_suggested:
        lines += ["", f"Suggested follow-up by {case.follow_up_suggested:%Y-%m-%d}: clinical skin check 2 to 4 weeks after "
                      "the procedure; physicist peak skin dose estimate."]
    if top is not None:
        lines += ["", "Rule and source:"]
        for a in shown[:1] + [x for x in shown[1:] if x.rule_key != shown[0].rule_key][:3]:
            src = public_text((a.detail or {}).get("source") or (a.rule.source if a.rule_id else ""))
            lines.append(f"  {(a.detail or {}).get('rule_title') or a.rule_key}: {src}")
    lines += ["", f"Open the case: {case_url(case)}", "",
              "These levels are configurable triggers for review and follow-up, not limits on patient exposure."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# staff (occupational) alerts
# ---------------------------------------------------------------------------
STAFF_LEVEL_CLASS = {"I": 1, "approaching": 2, "level": 2, "II": 3, "exceeded": 4}


def staff_case_key(alert) -> str:
    """One case per person, quantity and year: the quarter's investigation levels and the year's limit of the same
    dose are one matter for the RSO (periods "2026-Q1", "2026-03", "2026", "5y:2022-2026"; "study:<uid>" stays apart)."""
    period = alert.period or ""
    m = re.match(r"^(?:5y:\d{4}-)?(\d{4})", period)
    year = m.group(1) if m else period
    return f"staff:{alert.staff_id}:{alert.quantity or alert.rule}:{year}"[:255]


def case_for_staff_alert(alert, *, now: datetime | None = None) -> Case:
    """Open (or escalate) the staff case of an occupational alert. E-mail stays with the staff module."""
    from dosereg.staff.alerts import HIGH_LEVELS, QUANTITY_LABEL, RULE_TITLE

    now = now or timezone.now()
    staff = alert.staff
    key = staff_case_key(alert)
    sev = "high" if alert.level in HIGH_LEVELS else "normal"
    family = alert.rule.split(".")[0]
    title = (f"{KIND_LABEL[KIND_STAFF]}: {RULE_TITLE.get(family, family)} ({alert.level}), "
             f"{QUANTITY_LABEL.get(alert.quantity, alert.quantity)} {alert.value_msv:.3g} mSv ≥ {alert.threshold_msv:g} mSv, "
             f"{alert.period}")[:255]
    cls = SEV_RANK[sev] * 10 + STAFF_LEVEL_CLASS.get(alert.level, 1)
    with transaction.atomic():
        case = Case.objects.select_for_update(no_key=True).filter(key=key).first()
        if case is None:
            case = Case(key=key, kind=KIND_STAFF, severity=sev, sort_rank=sort_rank(KIND_STAFF, sev), staff=staff,
                        site=_site(staff.site.name if staff.site_id else ""), exam_date=alert.created_at or now, title=title,
                        top_rule_key=alert.rule, top_level=alert.level, top_class=cls, rule_keys=f",{alert.rule},",
                        level_count=1, opened_at=now, notify_state="staff",
                        notify_note="e-mailed to the staff member and the RSOs by the staff dose service",
                        study_id=alert.study_id)
            case.save()
            CaseEvent.objects.create(case=case, at=now, action="raised", note=title)
        else:
            if cls > case.top_class or SEV_RANK[sev] > SEV_RANK.get(case.severity, 1):
                case.top_class, case.top_level, case.title, case.escalated_at = cls, alert.level, title, now
                case.severity, case.sort_rank = sev, sort_rank(KIND_STAFF, sev)
            if case.status in (STATUS_CLOSED, STATUS_WITHDRAWN):
                case.status = STATUS_OPEN
                CaseEvent.objects.create(case=case, at=now, action="reopened", note="a new level was reached")
            case.level_count += 1
            case.save()
            CaseEvent.objects.create(case=case, at=now, action="escalated", note=title)
        CaseAlert.objects.get_or_create(staff_alert=alert, defaults={"case": case, "added_at": now})
    return case


# ---------------------------------------------------------------------------
# the RSO's actions
# ---------------------------------------------------------------------------
def _locked(case_id: int) -> Case:
    return Case.objects.select_for_update(no_key=True).get(pk=case_id)


def _sync_alerts(case: Case, *, user, action: str, note: str, to_status: str, now: datetime) -> None:
    """Move the case's member alerts along (they are what the API and patient history list)."""
    from dosereg.exposure.models import Alert, AlertEvent
    from dosereg.staff.models import StaffAlert, StaffAlertTransition

    if to_status == STATUS_ACKNOWLEDGED:
        ids = list(Alert.objects.filter(case_link__case=case, status=Alert.STATUS_OPEN).values_list("pk", flat=True))
        Alert.objects.filter(pk__in=ids).update(status=Alert.STATUS_ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=now,
                                                acknowledge_note=note)
        s_from = [StaffAlert.STATUS_OPEN]
        s_to = StaffAlert.STATUS_ACKNOWLEDGED
    else:  # closed
        ids = list(Alert.objects.filter(case_link__case=case).exclude(status__in=[Alert.STATUS_CLOSED, Alert.STATUS_WITHDRAWN])
                   .values_list("pk", flat=True))
        Alert.objects.filter(pk__in=ids, acknowledged_at__isnull=True).update(acknowledged_by=user, acknowledged_at=now)
        Alert.objects.filter(pk__in=ids).update(status=Alert.STATUS_CLOSED, closed_by=user, closed_at=now, close_note=note)
        s_from = [StaffAlert.STATUS_OPEN, StaffAlert.STATUS_ACKNOWLEDGED, StaffAlert.STATUS_FOLLOW_UP]
        s_to = StaffAlert.STATUS_CLOSED
    AlertEvent.objects.bulk_create([AlertEvent(alert_id=i, actor=user, action=action, note=f"case {case.pk}: {note}".strip())
                                    for i in ids])
    staff = list(StaffAlert.objects.filter(case_link__case=case, status__in=s_from))
    if staff:
        StaffAlertTransition.objects.bulk_create([StaffAlertTransition(alert=s, from_status=s.status, to_status=s_to, user=user,
                                                                       note=f"case {case.pk}: {note}".strip()) for s in staff])
        StaffAlert.objects.filter(pk__in=[s.pk for s in staff]).update(status=s_to, updated_at=now)


def case_acknowledge(*, case_id: int, user, note: str = "") -> Case:
    now = timezone.now()
    with transaction.atomic():
        case = _locked(case_id)
        if case.status != STATUS_OPEN:
            raise CaseError(f"only an open case can be acknowledged (this one is {case.get_status_display().lower()})")
        case.status = STATUS_ACKNOWLEDGED
        case.acknowledged_by, case.acknowledged_at, case.acknowledge_note = user, now, note
        case.save()
        CaseEvent.objects.create(case=case, at=now, actor=user, action="acknowledged", note=note)
        _sync_alerts(case, user=user, action="acknowledged", note=note, to_status=STATUS_ACKNOWLEDGED, now=now)
    return case


def cases_bulk_acknowledge(*, case_ids: list[int], user, note: str = "") -> list[int]:
    """Acknowledge the open cases among ``case_ids`` (the caller has restricted them to the user's scope)."""
    done = []
    for pk in Case.objects.filter(pk__in=case_ids, status=STATUS_OPEN).order_by("pk").values_list("pk", flat=True):
        try:
            case_acknowledge(case_id=pk, user=user, note=note)
        except CaseError:
            continue  # acknowledged concurrently
        done.append(pk)
    return done


def follow_up_default(case: Case, today: date | None = None) -> date:
    """The rule's suggested date; when there is none or it has passed, today + CASE_FOLLOW_UP_DEFAULT_DAYS."""
    today = today or timezone.localdate()
    if case.follow_up_suggested and case.follow_up_suggested >= today:
        return case.follow_up_suggested
    return today + timedelta(days=conf.follow_up_default_days())


def case_follow_up(*, case_id: int, user, due: date | None = None, note: str = "") -> Case:
    now = timezone.now()
    with transaction.atomic():
        case = _locked(case_id)
        if case.status not in ACTIVE_STATUSES:
            raise CaseError(f"a {case.get_status_display().lower()} case takes no follow-up")
        due = due or follow_up_default(case)
        if due < timezone.localdate():
            raise CaseError("the follow-up date is in the past")
        if case.status == STATUS_OPEN:  # scheduling a follow-up acknowledges the case
            case.acknowledged_by, case.acknowledged_at, case.acknowledge_note = user, now, note
            CaseEvent.objects.create(case=case, at=now, actor=user, action="acknowledged", note=note or "with the follow-up")
            _sync_alerts(case, user=user, action="acknowledged", note=note, to_status=STATUS_ACKNOWLEDGED, now=now)
        case.status = STATUS_FOLLOW_UP
        case.follow_up_due, case.follow_up_note = due, note
        case.save()
        CaseEvent.objects.create(case=case, at=now, actor=user, action="follow_up", note=note, detail={"due": due.isoformat()})
    return case


def _parse_float(v, what: str) -> float:
    try:
        f = float(str(v).replace(",", "."))
    except (TypeError, ValueError):
        raise CaseError(f"{what}: a number is required")
    if not (f >= 0 and f < 1e6):
        raise CaseError(f"{what}: out of range")
    return f


def clean_outcome(case: Case, data: dict) -> dict:
    """The closing outcome a case of this kind records; CaseError names what is missing."""
    out: dict = {}
    if case.kind in (KIND_PROCEDURE, KIND_CUMULATIVE):
        skin = (data.get("skin_reaction") or "").strip()
        if skin not in dict(SKIN_OUTCOMES):
            raise CaseError("skin reaction: choose one of " + ", ".join(k for k, _ in SKIN_OUTCOMES))
        out["skin_reaction"] = skin
        if skin == "observed":
            grade = (data.get("skin_grade") or "").strip()
            if grade not in dict(SKIN_GRADES):
                raise CaseError("skin reaction observed: choose its grade (1 to 4)")
            out["skin_grade"] = grade
            out["skin_grade_source"] = SKIN_GRADE_SOURCE
        if data.get("psd_gy") not in (None, ""):
            out["psd_gy"] = _parse_float(data.get("psd_gy"), "peak skin dose estimate")
    elif case.kind == KIND_PREGNANCY:
        out["conceptus_dose_mgy"] = _parse_float(data.get("conceptus_dose_mgy"), "conceptus-dose estimate (mGy)")
        method = (data.get("conceptus_method") or "").strip()
        if method not in dict(CONCEPTUS_METHODS):
            raise CaseError("conceptus-dose estimate: choose the method")
        out["conceptus_method"] = method
        from dosereg.exposure.constants import conceptus_band

        out["conceptus_band"] = public_text(conceptus_band(out["conceptus_dose_mgy"]))
    elif case.kind == KIND_DOSE_CHECK:
        review = (data.get("dose_check_review") or "").strip()
        if review not in ("justified", "not_justified", "protocol_review"):
            raise CaseError("Dose Check: say whether proceeding was justified")
        out["dose_check_review"] = review
    elif case.kind == KIND_STAFF:
        finding = (data.get("staff_finding") or "").strip()
        if not finding:
            raise CaseError("staff case: record the finding of the investigation")
        out["staff_finding"] = finding[:2000]
    return out


def case_close(*, case_id: int, user, data: dict | None = None, note: str = "") -> Case:
    from dosereg.exposure.models import Alert
    from dosereg.exposure.lifecycle import alert_record_conceptus_estimate

    now = timezone.now()
    with transaction.atomic():
        case = _locked(case_id)
        if case.status not in ACTIVE_STATUSES:
            raise CaseError(f"the case is already {case.get_status_display().lower()}")
        outcome = clean_outcome(case, data or {})
        if case.status == STATUS_OPEN:
            case.acknowledged_by, case.acknowledged_at = user, now
            CaseEvent.objects.create(case=case, at=now, actor=user, action="acknowledged", note="on closing")
        case.status = STATUS_CLOSED
        case.closed_by, case.closed_at, case.close_note, case.outcome = user, now, note, outcome
        case.save()
        CaseEvent.objects.create(case=case, at=now, actor=user, action="closed", note=note, detail={"outcome": outcome})
        if case.kind == KIND_PREGNANCY:
            for pk in Alert.objects.filter(case_link__case=case, quantity="pregnancy").values_list("pk", flat=True):
                alert_record_conceptus_estimate(alert_id=pk, user=user, estimate_mgy=outcome["conceptus_dose_mgy"],
                                                note=f"method: {outcome['conceptus_method']}")
        _sync_alerts(case, user=user, action="closed", note=note, to_status=STATUS_CLOSED, now=now)
    return case


def case_follow_up_reminders_send(*, today: date | None = None) -> int:
    """Remind once per due date: the RSO who scheduled the follow-up and the site's RSOs (as for a new case)."""
    from dosereg.exposure.routing import Router
    from dosereg.notifications.services import notification_enqueue

    today = today or timezone.localdate()
    due = list(Case.objects.filter(status=STATUS_FOLLOW_UP, follow_up_due__lte=today)
               .exclude(follow_up_reminded_for=F("follow_up_due")).select_related("acknowledged_by", "device")[:500])
    router = Router()
    n = 0
    for case in due:
        recipients = set(router.default_recipients(case.device.institution if case.device_id and case.device else None))
        if case.acknowledged_by_id and case.acknowledged_by and case.acknowledged_by.email:
            recipients.add(case.acknowledged_by.email)
        with transaction.atomic():
            notification_enqueue(
                dedupe_key=f"case:{case.pk}:follow-up-due:{case.follow_up_due}", recipients=sorted(recipients),
                subject=f"[dosereg] follow-up due {case.follow_up_due:%Y-%m-%d}: {case.title}"[:255],
                body="\n".join([f"The follow-up of this case is due on {case.follow_up_due:%Y-%m-%d}.",
                                 f"Note: {case.follow_up_note}" if case.follow_up_note else "",
                                 f"Exam date: {case.exam_date:%Y-%m-%d}" if case.exam_date else "", "",
                                 f"Open the case: {case_url(case)}"]),
                severity="normal")
            Case.objects.filter(pk=case.pk).update(follow_up_reminded_for=case.follow_up_due)
            CaseEvent.objects.create(case=case, at=timezone.now(), action="follow_up_reminder", note=", ".join(sorted(recipients)))
        n += 1
    return n


def parse_due(text: str) -> date | None:
    text = (text or "").strip()
    if not text:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise CaseError("the due date must be a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CaseError("the due date is not a valid date")


__all__ = ["cases_absorb", "case_for_staff_alert", "case_acknowledge", "cases_bulk_acknowledge", "case_follow_up",
           "case_close", "CaseError"]

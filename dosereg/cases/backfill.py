"""Build cases from the alerts raised before cases existed (data migration 0002, and ``manage.py cases_backfill``).

Works on the model classes it is given (a migration's historical models or the live ones); alerts already in a
case are skipped, so it can run again after a partial run. No e-mail is sent: the alerts were e-mailed (or not)
when they were raised, and the case says which.
"""
from __future__ import annotations

from collections import defaultdict

from django.utils import timezone

from .services import KIND_LABEL, SEV_RANK, _case_title, case_identity, level_class, sort_rank, staff_case_key, top_key

ACTIVE = ("open", "acknowledged", "follow_up")


def _status(alerts) -> str:
    st = {a.status for a in alerts}
    if st <= {"withdrawn"}:
        return "withdrawn"
    for s in ("open", "follow_up", "acknowledged"):
        if s in st:
            return s
    return "closed"


def backfill(Case, CaseAlert, CaseEvent, Alert, StaffAlert=None, *, batch: int = 2000) -> int:
    from dosereg.access.scope import normalise

    now = timezone.now()
    linked = set(CaseAlert.objects.filter(alert__isnull=False).values_list("alert_id", flat=True))
    groups: dict[str, list] = defaultdict(list)
    kinds: dict[str, str] = {}
    for a in (Alert.objects.select_related("study__device", "rule").order_by("raised_at", "id").iterator(chunk_size=batch)):
        if a.pk in linked:
            continue
        kind, key = case_identity(a)
        groups[key].append(a)
        kinds[key] = kind
    existing = {c.key: c for c in Case.objects.filter(key__in=list(groups))} if groups else {}
    n = 0
    keys = list(groups)
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        new_cases = []
        for key in chunk:
            if key in existing:
                continue
            alerts = groups[key]
            kind = kinds[key]
            top = max(alerts, key=top_key)
            study = next((a.study for a in alerts if a.study_id), None)
            sev = max([a.severity for a in alerts] + (["high"] if kind == "pregnancy" else []), key=lambda s: SEV_RANK.get(s, 1))
            status = _status(alerts)
            acked = sorted((a for a in alerts if a.acknowledged_at), key=lambda a: a.acknowledged_at)
            closed = sorted((a for a in alerts if a.closed_at), key=lambda a: a.closed_at)
            dues = sorted(a.follow_up_due for a in alerts if a.follow_up_due)
            sugg = sorted(a.detail.get("follow_up_suggested_due") for a in alerts if (a.detail or {}).get("follow_up_suggested_due"))
            notified = {a.notified for a in alerts}
            if "queued" in notified:
                nstate, nnote = "queued", "e-mailed per alert before cases existed"
            elif "historical" in notified:
                nstate, nnote = "historical", "no e-mail: the exam was older than the notification age limit (back-fill)"
            elif "no_recipients" in notified:
                nstate, nnote = "no_recipients", "no e-mail: no recipient for this site"
            else:
                nstate, nnote = (sorted(notified - {""})[:1] or [""])[0], ""
            new_cases.append(Case(
                key=key, kind=kind, status=status, severity=sev, sort_rank=sort_rank(kind, sev), patient_id=top.patient_id,
                study_id=study.pk if study else None, study_uid=top.study_uid, device_id=study.device_id if study else None,
                site=normalise(study.device.institution if study and study.device_id else ""),
                modality=(study.procedure_modality if study else "")[:8],
                exam_date=(study.study_datetime if study else None) or top.window_end or top.raised_at,
                window_days=top.window_days, window_start=min((a.window_start for a in alerts if a.window_start), default=None),
                window_end=max((a.window_end for a in alerts if a.window_end), default=None),
                title=_case_title(kind, top), top_rule_key=top.rule_key, top_level=top.level,
                top_class=level_class(top), rule_keys=("," + ",".join(sorted({a.rule_key for a in alerts})) + ",")[:1024],
                level_count=len(alerts), notify_state=nstate, notify_note=nnote, notify_count=1 if nstate == "queued" else 0,
                opened_at=alerts[0].raised_at or now,
                acknowledged_by_id=acked[0].acknowledged_by_id if acked else None,
                acknowledged_at=acked[0].acknowledged_at if acked else None,
                acknowledge_note=acked[0].acknowledge_note if acked else "",
                follow_up_suggested=sugg[0] if sugg else None, follow_up_due=dues[0] if dues else None,
                follow_up_note=next((a.follow_up_note for a in alerts if a.follow_up_note), ""),
                closed_by_id=closed[-1].closed_by_id if closed and status == "closed" else None,
                closed_at=closed[-1].closed_at if closed and status == "closed" else None,
                close_note=closed[-1].close_note if closed and status == "closed" else "",
            ))
        Case.objects.bulk_create(new_cases)
        for c in new_cases:
            existing[c.key] = c
        members, events = [], []
        for key in chunk:
            case = existing[key]
            alerts = groups[key]
            members += [CaseAlert(case=case, alert=a, added_at=a.raised_at or now) for a in alerts]
            events.append(CaseEvent(case=case, at=alerts[0].raised_at or now, action="raised",
                                    note="; ".join(a.title for a in alerts[:6]) + (f"; … {len(alerts) - 6} more" if len(alerts) > 6 else "")))
            if case.notify_state:
                events.append(CaseEvent(case=case, at=alerts[0].raised_at or now,
                                        action="notified" if case.notify_state == "queued" else "not_notified", note=case.notify_note))
            if case.acknowledged_at:
                events.append(CaseEvent(case=case, at=case.acknowledged_at, actor_id=case.acknowledged_by_id, action="acknowledged",
                                        note=case.acknowledge_note))
            if case.follow_up_due:
                events.append(CaseEvent(case=case, at=case.acknowledged_at or now, actor_id=case.acknowledged_by_id, action="follow_up",
                                        note=case.follow_up_note, detail={"due": case.follow_up_due.isoformat()}))
            if case.closed_at:
                events.append(CaseEvent(case=case, at=case.closed_at, actor_id=case.closed_by_id, action="closed", note=case.close_note))
            events.append(CaseEvent(case=case, at=now, action="backfilled",
                                    note=f"case built from {len(alerts)} alert(s) raised before cases existed"))
            n += 1
        CaseAlert.objects.bulk_create(members)
        CaseEvent.objects.bulk_create(events)
    if StaffAlert is not None:
        n += _backfill_staff(Case, CaseAlert, CaseEvent, StaffAlert, now)
    return n


def _backfill_staff(Case, CaseAlert, CaseEvent, StaffAlert, now) -> int:
    from dosereg.access.scope import normalise

    linked = set(CaseAlert.objects.filter(staff_alert__isnull=False).values_list("staff_alert_id", flat=True))
    groups: dict[str, list] = defaultdict(list)
    for s in StaffAlert.objects.select_related("staff__site").order_by("created_at", "id"):
        if s.pk not in linked:
            groups[staff_case_key(s)].append(s)
    n = 0
    for key, alerts in groups.items():
        if Case.objects.filter(key=key).exists():
            continue
        high = {"II", "exceeded"}
        top = max(alerts, key=lambda s: (s.level in high, s.threshold_msv))
        sev = "high" if top.level in high else "normal"
        st = {s.status for s in alerts}
        status = next((x for x in ("open", "follow_up", "acknowledged") if x in st), "closed")
        case = Case.objects.create(
            key=key, kind="staff", status=status, severity=sev, sort_rank=sort_rank("staff", sev), staff_id=top.staff_id,
            study_id=top.study_id, site=normalise(top.staff.site.name if top.staff.site_id else ""), exam_date=top.created_at,
            title=f"{KIND_LABEL['staff']}: {top.rule} ({top.level}) {top.value_msv:.3g} mSv ≥ {top.threshold_msv:g} mSv, {top.period}"[:255],
            top_rule_key=top.rule, top_level=top.level, top_class=SEV_RANK[sev] * 10 + (3 if top.level in high else 1),
            rule_keys=f",{top.rule},", level_count=len(alerts), notify_state="staff",
            notify_note="e-mailed to the staff member and the RSOs by the staff dose service", opened_at=alerts[0].created_at or now)
        CaseAlert.objects.bulk_create([CaseAlert(case=case, staff_alert=s, added_at=s.created_at or now) for s in alerts])
        CaseEvent.objects.bulk_create([CaseEvent(case=case, at=alerts[0].created_at or now, action="raised", note=case.title),
                                       CaseEvent(case=case, at=now, action="backfilled", note=f"case built from {len(alerts)} staff alert(s)")])
        n += 1
    return n

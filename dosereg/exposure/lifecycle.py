"""Alert lifecycle after an alert is raised: acknowledge, schedule a follow-up, close, record a conceptus-dose
estimate (each an ``AlertEvent``), and the follow-up reminders that are due."""
from __future__ import annotations

from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from dosereg.notifications.services import notification_enqueue

from .constants import Q_PREGNANCY, conceptus_band
from .evaluation import Expected
from .models import Alert, AlertEvent
from .routing import Router
from .study_facts import StudyInfo


class AlertTransitionError(ValueError):
    pass


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

"""Exposure tasks."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(name="dosereg.recompute_patient_exposure", autoretry_for=(OperationalError, InterfaceError),
             retry_backoff=2, retry_backoff_max=60, max_retries=10, acks_late=True)
def recompute_patient_exposure_task(patient_id: int) -> dict:
    from .recompute import patient_exposure_recompute

    r = patient_exposure_recompute(patient_id=patient_id)
    return {"patient_id": r.patient_id, "studies": r.studies, "windows_written": r.windows_written,
            "alerts_created": len(r.alerts_created), "alerts_withdrawn": len(r.alerts_withdrawn), "notifications": r.notifications}


@shared_task(name="dosereg.exposure_follow_up_reminders", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def follow_up_reminders_task() -> int:
    from .lifecycle import follow_up_reminders_send

    return follow_up_reminders_send()


@shared_task(name="dosereg.exposure_refresh_now_windows", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def refresh_now_windows_task() -> int:
    """Daily: the windows "ending now" of patients with a study in the longest window (studies age out)."""
    from datetime import timedelta

    from django.utils import timezone

    from dosereg.registry.models import Study

    from .conf import windows_days
    from .recompute import enqueue_recompute

    since = timezone.now() - timedelta(days=max(windows_days()) + 1)
    ids = set(Study.objects.filter(study_datetime__gte=since, patient__isnull=False).values_list("patient_id", flat=True))
    for pk in ids:
        enqueue_recompute(pk)
    return len(ids)

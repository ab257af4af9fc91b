"""Case tasks."""
from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(name="dosereg.case_follow_up_reminders", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def case_follow_up_reminders_task() -> int:
    from .services import case_follow_up_reminders_send

    return case_follow_up_reminders_send()


@shared_task(name="dosereg.case_counts_compact", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def case_counts_compact_task() -> int:
    """Every minute (beat): fold the worklist's count deltas (``case_counts``)."""
    from .case_counts import compact

    return compact()

"""Staff tasks: thin, named, retrying only named transient (database connection) errors."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(name="dosereg.staff_sync_studies", autoretry_for=(OperationalError, InterfaceError),
             retry_backoff=2, retry_backoff_max=60, max_retries=10, acks_late=True)
def staff_sync_studies_task(study_ids: list[int]) -> dict:
    """After studies changed (ingest, replacement, merge): link their participants to staff, recompute doses."""
    from .services import staff_studies_sync

    return staff_studies_sync(study_ids=study_ids)

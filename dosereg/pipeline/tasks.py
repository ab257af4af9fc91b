"""The pipeline's Celery entry point: thin, named, retrying only named transient errors.

The follow-up steps queue their own tasks where their apps define them: ``dosereg.recompute_patient_exposure``
(exposure), ``dosereg.staff_sync_studies`` (staff), ``dosereg.protocols_mark_studies_dirty`` (protocols)."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from dosereg.registry.services import INGEST_TASK


@shared_task(
    name=INGEST_TASK,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
    acks_late=True,
)
def ingest_object_task(dose_object_id: int) -> str:
    from . import flow

    return flow.ingest_object(dose_object_id, count_delivery=True).status

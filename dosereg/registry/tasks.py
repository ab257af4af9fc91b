"""Celery tasks: thin, named, retrying only named transient errors."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(
    name="dosereg.ingest_object",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
    acks_late=True,
)
def ingest_object_task(dose_object_id: int) -> str:
    from django.conf import settings

    from .services import dose_object_ingest
    from .signals import derived_work_inline

    token = derived_work_inline.set(bool(getattr(settings, "INGEST_DERIVED_INLINE", True)))
    try:
        # resend_changes: a task delivered again after its worker died between the ingest's commit and
        # the follow-up work re-announces the object's studies, so no recompute is lost
        return dose_object_ingest(dose_object_id=dose_object_id, resend_changes=True).status
    finally:
        derived_work_inline.reset(token)


@shared_task(name="dosereg.sweep_spool", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def sweep_spool_task() -> dict:
    from django.conf import settings

    from dicom_listener.spool import Spool

    from .services import dose_objects_sweep

    return dose_objects_sweep(spool=Spool(settings.SPOOL_DIR))

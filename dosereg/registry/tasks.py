"""Celery tasks: thin, named, retrying only named transient errors.

The ingest task itself (``dosereg.ingest_object``) is ``dosereg.pipeline.tasks.ingest_object_task``: an ingest is
followed by the pipeline's steps, which sit above this app."""
from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(name="dosereg.sweep_spool", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def sweep_spool_task() -> dict:
    from django.conf import settings

    from dicom_listener.spool import Spool

    from .receiving import dose_objects_sweep

    return dose_objects_sweep(spool=Spool(settings.SPOOL_DIR))

"""Skin-dose tasks: on their own queue ("skin"), so a long procedure never holds up ingest or alert e-mails."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services

SKIN_QUEUE = "skin"


@shared_task(name="dosereg.skin_dose_studies", autoretry_for=(OperationalError, InterfaceError),
             retry_backoff=True, max_retries=5, acks_late=True)
def skin_dose_studies_task(study_ids: list[int]) -> int:
    return services.studies_skin_dose_compute(study_ids=study_ids)

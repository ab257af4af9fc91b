"""Protocol summary tasks."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError


@shared_task(name="dosereg.refresh_protocol_summaries", autoretry_for=(OperationalError, InterfaceError),
             max_retries=3, retry_backoff=5, acks_late=True)
def refresh_protocol_summaries_task(max_buckets: int = 500) -> dict:
    """Every minute (beat): take new studies and rebuild dirty buckets (bounded per run)."""
    from .services import summaries_refresh

    return summaries_refresh(max_buckets=max_buckets)


@shared_task(name="dosereg.protocols_mark_studies_dirty", autoretry_for=(OperationalError, InterfaceError),
             retry_backoff=2, retry_backoff_max=60, max_retries=10, acks_late=True)
def mark_studies_dirty_task(study_ids: list[int], new_study_ids: list[int] | None = None) -> int:
    """The pipeline's protocols step, queued: mark the summary buckets of changed studies dirty."""
    from .services import studies_mark_dirty

    return studies_mark_dirty(study_ids, new_study_ids=new_study_ids or ())

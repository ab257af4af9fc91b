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

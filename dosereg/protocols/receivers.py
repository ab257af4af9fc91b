"""Receivers of Django's own events: a deleted study marks its summary bucket dirty. A changed study is marked by
the pipeline's protocols step (``dosereg.pipeline.flow.follow_up`` → ``services.studies_mark_dirty``)."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def on_study_deleted(sender, instance, **kwargs) -> None:
    from .services import bucket_key, buckets_mark_dirty

    key = bucket_key(instance.device_id, instance.study_datetime)
    if key:
        transaction.on_commit(lambda: buckets_mark_dirty([key]))

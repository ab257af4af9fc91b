"""Signal receivers: a changed or deleted study marks its summary buckets dirty (cheap: 2 reads, 1 upsert)."""
from __future__ import annotations

import logging

from django.db import DatabaseError, transaction

log = logging.getLogger(__name__)


def on_studies_changed(sender, study_ids=(), new_study_ids=(), **kwargs) -> None:
    """``dosereg.registry.signals.studies_changed`` (sent after commit)."""
    from .services import studies_mark_dirty

    if not study_ids:
        return
    try:
        studies_mark_dirty(study_ids, new_study_ids=new_study_ids)
    except DatabaseError:  # never fail the ingest that sent it; the page reads new studies exactly anyway
        log.exception("could not mark the protocol summaries of studies %s dirty", list(study_ids)[:20])


def on_study_deleted(sender, instance, **kwargs) -> None:
    from .services import bucket_key, buckets_mark_dirty

    key = bucket_key(instance.device_id, instance.study_datetime)
    if key:
        transaction.on_commit(lambda: buckets_mark_dirty([key]))

"""Reprocess: set stored originals back to "received" so the ingest extracts them again (after a parser or
configuration change)."""
from __future__ import annotations

from django.utils import timezone

from .models import DoseObject
from .receiving import enqueue_ingest


def dose_objects_mark_for_reprocess(*, queryset=None) -> list[int]:
    """Set stored originals back to "received" (after a parser or configuration change); returns their ids.
    The caller ingests them: ``dosereg.pipeline.flow.objects_reprocess`` (inline, with the follow-up) or the queue."""
    qs = queryset if queryset is not None else DoseObject.objects.all()
    # in the order they were received (originals removed by retention cannot be re-read): a reprocess replays the
    # registry's history in one fixed order, so reports that replace or re-file one another end the same way
    # every time (the database's row order changes with every update)
    ids = list(qs.exclude(path="").order_by("pk").values_list("pk", flat=True))
    DoseObject.objects.filter(pk__in=ids).update(status=DoseObject.STATUS_RECEIVED, enqueued_at=timezone.now(), deliveries=0)
    return ids


def dose_objects_reprocess(*, queryset=None) -> int:
    """Re-extract stored originals through the ingest task (queued; each is followed by the pipeline's steps)."""
    ids = dose_objects_mark_for_reprocess(queryset=queryset)
    for pk in ids:
        enqueue_ingest(pk)
    return len(ids)
